"""The file store under concurrency and crashes: whole files, whole commits.

Small compaction thresholds make the tests compact often."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from catalog_entities import component

from frobs.catalog.apply import apply_mutation
from frobs.catalog.file_store import FileStore, file_name_for
from frobs.catalog.mutation import DeferredEntity, DeltaMutation, FullMutation
from frobs.catalog.store import StoreCorrupted


def all_files_parse(root) -> list:
    """Every key file and every log line, parsed: none is partial."""
    documents = []
    for path in (root / "entities").iterdir():
        documents.append(json.loads(path.read_bytes()))
    for path in (root / "log").iterdir():
        documents.extend(map(json.loads, path.read_bytes().splitlines()))
    return documents


def compacted(path) -> FileStore:
    store = FileStore(path)
    store.compact()
    return store


@pytest.mark.parametrize(
    "key",
    [
        "frobs-provider:dev",
        "../../etc/passwd",
        "/absolute",
        "url:https://x/y?z=1",
        "a" * 500,
        "..",
        ".",
        "with space and ünïcode",
    ],
)
def test_location_keys_never_name_a_path(tmp_path, key):
    name = file_name_for(key)
    assert "/" not in name and name not in (".", "..") and len(name) < 220
    store = FileStore(tmp_path / "store")
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), key)]))
    store.compact()
    (written,) = (tmp_path / "store" / "entities").iterdir()
    assert written.name.startswith(name + ".") and written.name.endswith(".json")
    assert (
        FileStore(tmp_path / "store").snapshot().get("component:default/x").location_key
        == key
    )


def test_a_commit_by_one_store_is_seen_by_another_on_the_next_snapshot(tmp_path):
    writer, reader = FileStore(tmp_path), FileStore(tmp_path)
    assert len(reader.snapshot()) == 0
    apply_mutation(writer, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    assert reader.snapshot().get("component:default/x") is not None
    apply_mutation(writer, "a", FullMutation([], allow_empty_source=True))
    assert len(reader.snapshot()) == 0


def test_a_commit_is_appended_to_the_log_whatever_keys_it_touches(tmp_path):
    store = FileStore(tmp_path)
    entities = [DeferredEntity(component(f"x{i}"), f"k{i}") for i in range(5)]
    apply_mutation(store, "a", FullMutation(entities))
    (segment,) = (tmp_path / "log").iterdir()
    header, *changes, commit = map(json.loads, segment.read_bytes().splitlines())
    assert header["segment"] == segment.name.removesuffix(".jsonl")
    assert sorted(c["put"]["ref"] for c in changes) == [
        f"component:default/x{i}" for i in range(5)
    ]
    assert commit == {"commit": 5}
    assert not list((tmp_path / "entities").iterdir())


def test_a_commit_without_its_commit_line_is_never_installed(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    (segment,) = (tmp_path / "log").iterdir()
    whole = segment.read_bytes()
    # A crash after the first of two changes was written, before the commit line.
    segment.write_bytes(whole + whole.splitlines(keepends=True)[1])
    refs = [r.ref for r in FileStore(tmp_path).snapshot().records()]
    assert refs == ["component:default/x"]
    assert segment.read_bytes() == whole


def test_superseded_generations_are_ignored_and_cleaned_up(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(
        store, "a", FullMutation([DeferredEntity(component("x", "old"), "k")])
    )
    store.compact()
    (old,) = (tmp_path / "entities").iterdir()
    saved = old.read_bytes()
    apply_mutation(
        store, "a", FullMutation([DeferredEntity(component("x", "new"), "k")])
    )
    store.compact()
    old.write_bytes(saved)  # as if a crash came between the rename and the unlink

    reopened = FileStore(tmp_path)

    assert (
        reopened.snapshot().get("component:default/x").entity["metadata"]["description"]
        == "new"
    )
    assert len(list((tmp_path / "entities").iterdir())) == 1


def test_a_snapshot_installs_only_what_changed(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "ka")]))
    apply_mutation(store, "b", FullMutation([DeferredEntity(component("y"), "kb")]))
    reader = FileStore(tmp_path)
    first = reader.snapshot()
    apply_mutation(
        store, "b", FullMutation([DeferredEntity(component("y", "v2"), "kb")])
    )
    second = reader.snapshot()
    assert second.get("component:default/x") is first.get("component:default/x")
    assert second.get("component:default/y") is not first.get("component:default/y")
    assert reader.changes_since(first.version) == {"component:default/y"}
    assert reader.snapshot() is second


def test_a_reader_moves_past_a_compaction_without_reading_key_files(tmp_path):
    writer = FileStore(tmp_path)
    apply_mutation(writer, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    reader = FileStore(tmp_path)
    before = reader.snapshot()
    writer.compact()
    apply_mutation(
        writer, "b", DeltaMutation(added=[DeferredEntity(component("y"), "kb")])
    )
    after = reader.snapshot()
    assert after.get("component:default/x") is before.get("component:default/x")
    assert after.get("component:default/y") is not None
    changed = reader.changes_since(before.version)
    assert "component:default/y" in changed and "component:default/x" not in changed


def test_a_reader_that_missed_a_compacted_segment_reloads(tmp_path):
    writer = FileStore(tmp_path)
    apply_mutation(writer, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    reader = FileStore(tmp_path)
    before = reader.snapshot()
    apply_mutation(
        writer, "a", FullMutation([DeferredEntity(component("x", "v2"), "k")])
    )
    writer.compact()  # the reader never read the second commit's segment
    after = reader.snapshot()
    assert after.get("component:default/x").entity["metadata"]["description"] == "v2"
    assert reader.changes_since(before.version) is None  # everything may have changed


def test_a_crash_during_compaction_loses_nothing(tmp_path, monkeypatch):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "ka")]))
    store.compact()
    apply_mutation(
        store,
        "a",
        FullMutation([DeferredEntity(component("y"), "kb")], max_deletion_ratio=None),
    )
    # The key files are rewritten, then the process dies before the new segment.
    monkeypatch.setattr(FileStore, "_start_segment", _die)
    with pytest.raises(SystemExit):
        store.compact()
    monkeypatch.undo()

    refs = sorted(r.ref for r in FileStore(tmp_path).snapshot().records())
    assert refs == ["component:default/y"]


def _die(*args, **kwargs):
    raise SystemExit("killed")


def test_a_commit_cut_short_is_ignored_then_removed_by_the_next_writer(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    (segment,) = (tmp_path / "log").iterdir()
    whole = segment.read_bytes()
    segment.write_bytes(whole + b'{"put": {"ref": "component:default/y", "loc')

    reader = FileStore(tmp_path)
    assert [r.ref for r in reader.snapshot().records()] == ["component:default/x"]
    assert segment.read_bytes() == whole  # opening the store cut it off
    apply_mutation(
        reader, "a", DeltaMutation(added=[DeferredEntity(component("z"), "k")])
    )
    assert len(FileStore(tmp_path).snapshot()) == 2


def _add_many(path, worker: int, count: int) -> None:
    store = FileStore(path, compact_min_bytes=2000)
    for i in range(count):
        apply_mutation(
            store,
            "events",
            DeltaMutation(added=[DeferredEntity(component(f"w{worker}-{i}"), "k")]),
        )


def test_several_processes_writing_and_compacting_at_once_lose_nothing(tmp_path):
    FileStore(tmp_path)
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_add_many, args=(tmp_path, w, 25)) for w in range(4)
    ]
    reader = FileStore(tmp_path)
    for process in processes:
        process.start()
    seen = 0
    while any(p.is_alive() for p in processes):
        count = len(reader.snapshot())
        assert count >= seen, "a reader saw the catalog shrink"
        seen = count
    for process in processes:
        process.join(60)
        assert process.exitcode == 0

    assert len(FileStore(tmp_path).snapshot()) == 100
    assert len(reader.snapshot()) == 100
    all_files_parse(tmp_path)


def test_leftover_temporary_files_are_removed_when_the_store_opens(tmp_path):
    FileStore(tmp_path)
    leftovers = [
        tmp_path / "entities" / "k-x.00000000000000000001deadbeef.json.tmp-1",
        tmp_path / "log" / "00000000000000000001deadbeef.jsonl.tmp-1",
    ]
    for leftover in leftovers:
        leftover.write_text('{"torn')
    store = FileStore(tmp_path)
    assert not any(leftover.exists() for leftover in leftovers)
    assert len(store.snapshot()) == 0


def test_a_multi_file_commit_left_by_an_older_version_is_finished(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(
        store, "b", DeltaMutation(added=[DeferredEntity(component("x"), None)])
    )
    store.compact()
    # Versions before the log moved x from the unkeyed file to key "ka" through
    # a journal; one crashed after writing it, before any file moved.
    (unkeyed,) = (tmp_path / "entities").glob("_unkeyed.*.json")
    moved = json.loads(unkeyed.read_bytes())
    record = dict(moved["entities"][0], locationKey="ka", source="a")
    journal = {
        "files": {
            "_unkeyed": None,
            file_name_for("ka"): {"locationKey": "ka", "entities": [record]},
        }
    }
    (tmp_path / "journal.json").write_text(json.dumps(journal))
    for segment in (tmp_path / "log").iterdir():
        segment.unlink()  # older versions had no log

    recovered = FileStore(tmp_path)

    assert not (tmp_path / "journal.json").exists()
    stored = recovered.snapshot().get("component:default/x")
    assert (stored.source, stored.location_key) == ("a", "ka")
    assert not list((tmp_path / "entities").glob("_unkeyed.*"))


WRITER = textwrap.dedent("""
    import sys
    from frobs.catalog.apply import apply_mutation
    from frobs.catalog.file_store import FileStore
    from frobs.catalog.mutation import DeferredEntity, FullMutation
    store = FileStore(sys.argv[1], compact_min_bytes=100_000)
    print("ready", flush=True)
    round = 0
    while True:
        round += 1
        entities = [
            DeferredEntity({
                "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                "metadata": {
                    "name": f"e{i}", "description": "x" * 200 + str(round),
                    "annotations": {
                        "backstage.io/managed-by-location": "url:x",
                        "backstage.io/managed-by-origin-location": "url:x",
                    },
                },
                "spec": {"type": "service", "lifecycle": "production", "owner": "a"},
            }, "k" if i % 2 else None)
            for i in range(300)
        ]
        apply_mutation(store, "crashy", FullMutation(entities))
""")


def test_kill_9_mid_write_leaves_whole_files_and_whole_commits(tmp_path):
    survived = 0
    for attempt in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(0.2 + attempt * 0.13)
        process.send_signal(signal.SIGKILL)
        process.wait()

        store = FileStore(tmp_path)
        all_files_parse(tmp_path)
        records = list(store.snapshot().records())
        if records:
            survived += 1
            assert len(records) == 300
            rounds = {r.entity["metadata"]["description"][200:] for r in records}
            assert len(rounds) == 1, "a commit was applied in part"
    assert survived, "no commit was ever made before the kill: the test proves nothing"


@pytest.mark.parametrize("content", [b'{"torn', b'{"entities": [{"ref": 1}]}', b"[]"])
def test_a_damaged_file_is_reported_and_never_written_over(tmp_path, content):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    store.compact()
    (damaged,) = (tmp_path / "entities").glob(file_name_for("k") + ".*.json")
    damaged.write_bytes(content)

    with pytest.raises(StoreCorrupted, match="restore it from a backup"):
        FileStore(tmp_path).snapshot()
    with pytest.raises(StoreCorrupted):
        apply_mutation(FileStore(tmp_path), "a", FullMutation([]))
    assert damaged.read_bytes() == content


def test_a_damaged_journal_is_reported_naming_the_file(tmp_path):
    FileStore(tmp_path)
    (tmp_path / "journal.json").write_text('{"files": ')
    with pytest.raises(StoreCorrupted, match="journal.json"):
        FileStore(tmp_path)


def test_a_damaged_log_line_is_reported_and_never_written_over(tmp_path):
    store = FileStore(tmp_path)
    apply_mutation(store, "a", FullMutation([DeferredEntity(component("x"), "k")]))
    (segment,) = (tmp_path / "log").iterdir()
    damaged = segment.read_bytes().replace(b'{"put"', b'{"p\xfft"')
    segment.write_bytes(damaged)

    with pytest.raises(StoreCorrupted, match="restore the store folder"):
        FileStore(tmp_path)
    assert segment.read_bytes() == damaged


def test_a_resync_writes_only_the_entities_that_changed(tmp_path):
    store = FileStore(tmp_path)
    entities = [DeferredEntity(component(f"x{i}"), "k") for i in range(50)]
    apply_mutation(store, "a", FullMutation(entities))
    (segment,) = (tmp_path / "log").iterdir()
    before = segment.read_bytes()

    apply_mutation(store, "a", FullMutation(entities))  # nothing changed
    assert segment.read_bytes() == before

    entities[7] = DeferredEntity(component("x7", "changed"), "k")
    apply_mutation(store, "a", FullMutation(entities))
    added = segment.read_bytes()[len(before) :].splitlines()
    assert [json.loads(line) for line in added][-1] == {"commit": 1}
    assert json.loads(added[0])["put"]["ref"] == "component:default/x7"
