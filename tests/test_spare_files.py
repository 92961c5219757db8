"""Spare files: a folder whose files come and go writes into retired files
instead of creating and deleting them, every file it shows is whole, a spare
removed as a leftover, or one of a parent process, is never written, and the
inbox, which reuses its files so, lists only whole entries under their names."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from frobs.durable_files import TMP_MARK, SpareFiles
from frobs.events.inbox import FileInbox, InboxEntry
from frobs.events.params import EventParams


def shown(folder) -> dict[str, bytes]:
    """The files a reader takes for content: every name without ``TMP_MARK``."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if TMP_MARK not in p.name}


def test_files_that_come_and_go_reuse_the_same_inodes(tmp_path):
    spares = SpareFiles(tmp_path, keep=2)
    inodes = set()
    for n in range(50):
        path = tmp_path / f"{n}.json"
        spares.write(path, b"entry %d" % n, durable=False)
        assert shown(tmp_path) == {f"{n}.json": b"entry %d" % n}
        inodes.add(path.stat().st_ino)
        spares.retire(path)
        assert shown(tmp_path) == {}
    assert len(inodes) == 1


def test_no_more_than_keep_spares_stay(tmp_path):
    spares = SpareFiles(tmp_path, keep=3)
    paths = [tmp_path / f"{n}.json" for n in range(6)]
    for path in paths:
        spares.write(path, b"x" * 100)
    for path in paths:
        spares.retire(path)
    assert len(list(tmp_path.iterdir())) == 3
    assert shown(tmp_path) == {}


def test_a_shorter_entry_in_a_spare_keeps_nothing_of_the_longer_one(tmp_path):
    spares = SpareFiles(tmp_path)
    spares.write(tmp_path / "a.json", b"a long first entry, longer than the next")
    spares.retire(tmp_path / "a.json")
    spares.write(tmp_path / "b.json", b"short")
    assert shown(tmp_path) == {"b.json": b"short"}


def test_a_spare_removed_as_a_leftover_is_not_missed(tmp_path):
    spares = SpareFiles(tmp_path)
    spares.write(tmp_path / "a.json", b"a")
    spares.retire(tmp_path / "a.json")
    for leftover in tmp_path.iterdir():
        leftover.unlink()  # what a recovery does to an old temporary file
    spares.write(tmp_path / "b.json", b"b")
    assert shown(tmp_path) == {"b.json": b"b"}


def test_retiring_a_file_already_gone_changes_nothing(tmp_path):
    spares = SpareFiles(tmp_path)
    spares.retire(tmp_path / "never.json")
    spares.write(tmp_path / "a.json", b"a")
    assert shown(tmp_path) == {"a.json": b"a"}


def test_threads_each_write_a_spare_of_their_own(tmp_path):
    spares = SpareFiles(tmp_path, keep=8)

    def cycle(n: int) -> bytes:
        path = tmp_path / f"{n}.json"
        data = b"%d " % n * 50
        spares.write(path, data, durable=False)
        seen = path.read_bytes()
        spares.retire(path)
        return seen == data

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(cycle, range(2000)))
    assert shown(tmp_path) == {}
    assert len(list(tmp_path.iterdir())) <= 8


def test_a_forked_child_leaves_its_parents_spares_alone(tmp_path):
    spares = SpareFiles(tmp_path)
    spares.write(tmp_path / "a.json", b"parent")
    spares.retire(tmp_path / "a.json")
    (parent_spare,) = tmp_path.iterdir()
    inode = parent_spare.stat().st_ino
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        spares.write(tmp_path / "c.json", b"child")
        os._exit(0)
    os.waitpid(child, 0)
    assert parent_spare.stat().st_ino == inode
    assert (tmp_path / "c.json").stat().st_ino != inode
    assert shown(tmp_path) == {"c.json": b"child"}


def test_an_inbox_listed_while_entries_come_and_go_shows_only_whole_entries(
    tmp_path,
):
    """A listing reads entries without their locks, while delivered entries'
    files are retired and written again for others: it never shows an entry
    under another's name, nor fails on one half written."""
    inbox = FileInbox(tmp_path)
    stop = threading.Event()
    problems: list[str] = []

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            params = EventParams("frobs.add", {"id": f"f{n}", "pad": "x" * n})
            entry = InboxEntry.accepted(params, f"key{n}", None)
            with inbox.lock(entry.id, blocking=True):
                inbox.record(entry, durable=False)
                inbox.remove(entry)

    def scan() -> None:
        while not stop.is_set():
            try:
                for entry in inbox.entries():
                    if entry.payload["id"] != f"f{entry.dedup_key[3:]}":
                        problems.append(f"{entry.id} holds {entry.payload}")
            except Exception as exc:  # what the retry loop would have met
                problems.append(repr(exc))

    threads = [threading.Thread(target=churn) for _ in range(2)]
    threads.append(threading.Thread(target=scan))
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    assert list(inbox.entries()) == []


def test_an_inbox_file_that_is_not_its_entry_is_reported(tmp_path):
    inbox = FileInbox(tmp_path)
    entry = InboxEntry.accepted(EventParams("frobs.add", {"id": "a"}), "k", None)
    inbox.record(entry)
    (tmp_path / "inbox" / f"{entry.id}.json").write_bytes(b'{"id": "cut sh')
    with pytest.raises(ValueError, match="is not a whole entry"):
        list(inbox.entries())


def test_a_retired_file_keeps_nothing_of_what_it_held(tmp_path):
    spares = SpareFiles(tmp_path)
    spares.write(tmp_path / "a.json", b'{"secret": "payload"}')
    spares.retire(tmp_path / "a.json")
    (spare,) = tmp_path.iterdir()
    assert TMP_MARK in spare.name and spare.read_bytes() == b""
