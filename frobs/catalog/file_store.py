"""The file store: the catalog as JSON files, one per location key, and a log.

Layout under ``catalog.store.path``::

    entities/<key>.<generation>.json   a location key's entities, as of the last
                                       compaction
    log/<segment>.jsonl                every commit since, one JSON line each
    catalog.lock                       held by whoever writes, across processes

A commit appends to the log segment a line per change, ``{"put": record}`` or
``{"delete": ref}``, then ``{"commit": n}``, and fsyncs, so a commit costs what
it changed, whatever the size of the catalog.  Readers install only whole
commits, so a commit touching several location keys is still all or nothing;
what follows the last commit line was cut short by a crash, and the next
writer truncates it.  Key files and log lines hold one record per line, so
neither is ever parsed whole.

When the segment outgrows its threshold, the writer compacts: it writes the
next generation of every key file the segment touched (temporary file, fsync,
rename, folder fsync, old generation unlinked), then a new segment whose first
line names the segment it follows and that segment's final length, then
removes the old segment.  Replaying a segment over key files that already hold
its changes gives the same catalog, so a crash anywhere in a compaction loses
nothing: the newest segment is the truth, over the key files as they are.

``<key>`` is the percent-encoded location key (or its SHA-256 when too long), so
no key can name a path, and the service never writes outside the store folder.
Generations and segment names are new at every write and never reused, so a
reader knows what changed by names and sizes alone.

Writers take ``catalog.lock`` (a ``ProcessLock``: a thread lock, then an
``flock``, released by the kernel if the holder dies).  Readers take
no cross-process lock: a snapshot reads only the log bytes added since the last
one, and a reader that had read a segment to its end moves to the next segment
without reading any key file again.  Only a reader that missed part of a
segment now removed reloads everything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import quote

from .. import jsoncodec
from ..bulk import BULK, collection_paused, settle
from ..durable_files import (
    TMP_MARK,
    ProcessLock,
    atomic_write,
    fsync_dir,
    remove_temporary_files,
)
from ..metrics import STORE_WRITE_SECONDS
from .memory import MemoryCatalog, StagedTransaction
from .store import (
    CatalogSnapshot,
    CatalogStore,
    StoreCorrupted,
    StoredEntity,
    StoreTransaction,
)

logger = logging.getLogger(__name__)

_UNKEYED = "_unkeyed"
_STAMP = r"\d{20}[0-9a-f]{8}"
_GENERATION = re.compile(rf"^(?P<base>.+)\.(?P<generation>{_STAMP})\.json$")
_SEGMENT = re.compile(rf"^(?P<segment>{_STAMP})\.jsonl$")

#: A segment is compacted once it is larger than this, or than half the key
#: files, whichever is larger: compaction's cost is spread over many commits.
COMPACT_MIN_BYTES = 16 * 1024 * 1024


@functools.lru_cache(maxsize=4096)  # a few keys, named at every install
def file_name_for(location_key: str | None) -> str:
    """The base name of a location key's files; never a path."""
    if location_key is None:
        return _UNKEYED
    encoded = quote(location_key, safe="-_.~")
    if len(encoded) > 200:
        return "h-" + hashlib.sha256(location_key.encode()).hexdigest()
    return "k-" + encoded


def _next_stamp(previous: str | None) -> str:
    """Later than ``previous`` and, by its random tail, never used before."""
    stamp = time.time_ns()
    if previous is not None:
        stamp = max(stamp, int(previous[:20]) + 1)
    return f"{stamp:020d}{secrets.token_hex(4)}"


class FileStore(CatalogStore):
    def __init__(
        self, path: str | os.PathLike, compact_min_bytes: int = COMPACT_MIN_BYTES
    ) -> None:
        self.root = Path(path)
        self.entities_dir = self.root / "entities"
        self.log_dir = self.root / "log"
        self.journal_path = self.root / "journal.json"
        self.compact_min_bytes = compact_min_bytes
        self.entities_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)

        self._lock = ProcessLock(self.root / "catalog.lock")
        self._cache_lock = threading.Lock()
        # What this process has read: the segment, how far, the key files' total
        # size, and the keys the segment touched (rewritten at compaction).
        self._segment: str | None = None
        self._offset = 0
        self._base_bytes = 0
        self._dirty: set[str] = set()
        self._memory = MemoryCatalog()

        with self._lock.hold():
            self._recover()

    def check_writable(self) -> None:
        probe = self.root / f".probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    # Reading

    def snapshot(self) -> CatalogSnapshot:
        with self._cache_lock:
            self._refresh()
            return self._memory.snapshot

    def changes_since(self, version: int) -> set[str] | None:
        with self._cache_lock:
            return self._memory.changes_since(version)

    def _refresh(self) -> None:
        # A file can be removed between listing and reading it, when a writer
        # compacts: try again, a few times at most.
        for _ in range(10):
            try:
                self._catch_up()
                return
            except FileNotFoundError:
                continue
        raise StoreCorrupted(f"{self.root} keeps changing while being read")

    def _catch_up(self) -> None:
        if self._segment is not None:
            try:
                self._read_segment()
                return
            except FileNotFoundError:
                pass  # compacted: move on to the segment that follows
        latest = self._latest_segment()
        if latest is None:
            raise FileNotFoundError("no log segment yet")
        header, lines_at = self._header(latest)
        follows_ours = (
            self._segment is not None
            and header.get("follows") == self._segment
            and header.get("followsLength") == self._offset
        )
        if follows_ours:
            self._segment, self._offset = latest, lines_at
            self._base_bytes = header.get("baseBytes", self._base_bytes)
            self._dirty = set()
        else:
            self._reload(latest, header, lines_at)
        self._read_segment()

    def _reload(self, segment: str, header: dict, lines_at: int) -> None:
        """Read every key file again: this reader missed part of a removed segment."""
        with collection_paused():
            self._read_key_files(segment, lines_at)
        settle()

    def _read_key_files(self, segment: str, lines_at: int) -> None:
        records: list[StoredEntity] = []
        total = 0
        for base, generation in self._latest_generations().items():
            path = self.entities_dir / f"{base}.{generation}.json"
            records += _load(path)
            total += path.stat().st_size
        self._segment, self._offset, self._dirty = segment, lines_at, set()
        self._base_bytes = total
        self._memory.replace(records)

    def _read_segment(self) -> None:
        """Install the whole commits added to the current segment since last read.

        Read a line at a time, so that a large commit (a full sync's) is never
        in memory as text; the changes of a commit whose commit line is not
        there yet (being written, or cut short by a crash) are left for later.
        """
        path = self._segment_path()
        if os.stat(path).st_size <= self._offset:
            return  # what nearly every request finds: nothing new
        with open(path, "rb") as handle:
            handle.seek(self._offset)
            with collection_paused():
                installed = self._read_commits(handle, path)
            if installed >= BULK:
                settle()

    def _read_commits(self, handle: BinaryIO, path: str) -> int:
        """Install the whole commits there; return how many changes."""
        changes: list[tuple[str, StoredEntity | None]] = []
        pending: list[tuple[str, StoredEntity | None]] = []
        position = committed = self._offset
        for line in handle:
            if not line.endswith(b"\n"):
                break
            position += len(line)
            if line.startswith(_COMMIT_LINE):
                changes += pending
                pending, committed = [], position
                continue
            change = _decode_line(line, path)
            if change is not None:
                pending.append(change)
        if committed > self._offset:
            self._offset = committed
            self._install(changes)
        return len(changes)

    def _segment_path(self) -> str:
        return f"{self.log_dir}/{self._segment}.jsonl"

    def _install(self, changes: list[tuple[str, StoredEntity | None]]) -> None:
        """Make the next snapshot; readers keep whatever snapshot they hold."""
        removed, added = self._memory.install(changes)
        for record in removed + added:
            self._dirty.add(file_name_for(record.location_key))

    def _latest_generations(self) -> dict[str, str]:
        latest: dict[str, str] = {}
        for base, generation in self._generations():
            if generation > latest.get(base, ""):
                latest[base] = generation
        return latest

    def _generations(self) -> Iterator[tuple[str, str]]:
        for entry in os.scandir(self.entities_dir):
            match = _GENERATION.fullmatch(entry.name)
            if match and TMP_MARK not in entry.name:
                yield match["base"], match["generation"]

    def _segments(self) -> list[str]:
        names = []
        for entry in os.scandir(self.log_dir):
            match = _SEGMENT.fullmatch(entry.name)
            if match and TMP_MARK not in entry.name:
                names.append(match["segment"])
        return sorted(names)

    def _latest_segment(self) -> str | None:
        segments = self._segments()
        return segments[-1] if segments else None

    def _header(self, segment: str) -> tuple[dict, int]:
        path = self.log_dir / f"{segment}.jsonl"
        with open(path, "rb") as handle:
            line = handle.readline()
        try:
            header = json.loads(line)
            if not isinstance(header, dict) or "segment" not in header:
                raise ValueError("no segment header")
        except ValueError as exc:
            raise StoreCorrupted(
                f"log segment {path} does not start with its header ({exc}); "
                "this service never leaves it so: restore the store folder from a "
                "backup"
            ) from None
        return header, len(line)

    # Writing

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        written = None
        with self._lock.hold():
            with self._cache_lock:
                self._refresh()
                self._cut_torn_tail()
                snapshot = self._memory.snapshot
            transaction = StagedTransaction(snapshot)
            yield transaction
            if transaction.staged:
                with STORE_WRITE_SECONDS.time():
                    written = self._commit(transaction)
        if written is not None:
            # Made durable once the lock is free, so the next writer appends
            # meanwhile; one fsync then often covers several commits.
            try:
                os.fsync(written)
            finally:
                os.close(written)

    def _commit(self, transaction: StagedTransaction) -> int:
        """Append the commit; return the segment's descriptor, still to fsync."""
        staged = list(transaction.staged.items())
        before = self._offset
        descriptor = os.open(self._segment_path(), os.O_WRONLY | os.O_APPEND)
        try:
            size = 0
            # Encoded and written a thousand changes (a megabyte or so) at a time.
            for start in range(0, len(staged) + 1, 1024):
                lines = [
                    _delete_line(ref) if record is None else _put_line(record)
                    for ref, record in staged[start : start + 1024]
                ]
                if start + 1024 > len(staged):
                    lines.append(_COMMIT_LINE + f"{len(staged)}}}\n".encode())
                data = b"".join(lines)
                size += len(data)
                while data:
                    data = data[os.write(descriptor, data) :]
        except BaseException:
            os.close(descriptor)
            raise
        with self._cache_lock:
            # A reader thread of this process may have installed it already.
            if self._offset == before:
                self._offset += size
                self._install(staged)
        if self._offset > max(self.compact_min_bytes, self._base_bytes // 2):
            self._compact()
        return descriptor

    def compact(self) -> None:
        """Fold the log into the key files now, whatever its size."""
        with self._lock.hold():
            with self._cache_lock:
                self._refresh()
                self._cut_torn_tail()
            self._compact()

    def _cut_torn_tail(self) -> None:
        """Remove what a writer that died mid-commit left after the last line."""
        path = self._segment_path()
        if os.stat(path).st_size > self._offset:
            logger.warning("Removing a commit cut short in %s", path)
            os.truncate(path, self._offset)
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())

    def _compact(self) -> None:
        """Rewrite the keys this segment touched, then start the next segment.

        Runs under the write lock only: readers in this process go on reading the
        old segment, which holds nothing they have not installed.
        """
        started = time.monotonic()
        grouped: dict[str, list[StoredEntity]] = {base: [] for base in self._dirty}
        for record in self._memory.snapshot.records():
            base = file_name_for(record.location_key)
            if base in grouped:
                grouped[base].append(record)
        latest = self._latest_generations()
        for base, records in grouped.items():
            self._base_bytes -= self._key_size(base, latest.get(base))
            written = self._write_key(base, records)
            self._base_bytes += self._key_size(base, written)
        with self._cache_lock:
            self._start_segment(follows=self._segment, length=self._offset)
        logger.info(
            "Compacted the store log: %d location keys rewritten in %.2f s",
            len(grouped),
            time.monotonic() - started,
        )

    def _key_size(self, base: str, generation: str | None) -> int:
        if generation is None:
            return 0
        try:
            return (self.entities_dir / f"{base}.{generation}.json").stat().st_size
        except FileNotFoundError:
            return 0

    def _write_key(self, base: str, records: list[StoredEntity]) -> str | None:
        """Write the next generation of a key (or none, to empty it); drop the old."""
        old = [g for b, g in self._generations() if b == base]
        generation = None
        if records:
            generation = _next_stamp(max(old, default=None))
            atomic_write(
                self.entities_dir / f"{base}.{generation}.json", _encode(records)
            )
        for stale in old:
            (self.entities_dir / f"{base}.{stale}.json").unlink(missing_ok=True)
        fsync_dir(self.entities_dir)
        return generation

    def _start_segment(self, follows: str | None, length: int) -> None:
        segment = _next_stamp(follows)
        header = {
            "segment": segment,
            "follows": follows,
            "followsLength": length,
            "baseBytes": self._base_bytes,
        }
        line = json.dumps(header).encode() + b"\n"
        atomic_write(self.log_dir / f"{segment}.jsonl", line)
        for old in self._segments():
            if old != segment:
                (self.log_dir / f"{old}.jsonl").unlink(missing_ok=True)
        fsync_dir(self.log_dir)
        self._segment, self._offset, self._dirty = segment, len(line), set()

    # Recovery, always under the file lock

    def _recover(self) -> None:
        for folder in (self.root, self.entities_dir, self.log_dir):
            for path in remove_temporary_files(folder):
                logger.info("Removed leftover temporary file %s", path)
        self._finish_journal()
        latest = self._latest_generations()
        for base, generation in list(self._generations()):
            if generation != latest[base]:
                logger.info("Removing superseded file %s.%s.json", base, generation)
                (self.entities_dir / f"{base}.{generation}.json").unlink(
                    missing_ok=True
                )
        segments = self._segments()
        for old in segments[:-1]:
            logger.info("Removing log segment %s, already compacted", old)
            (self.log_dir / f"{old}.jsonl").unlink(missing_ok=True)
        with self._cache_lock:
            if not segments:
                self._base_bytes = sum(
                    self._key_size(base, generation)
                    for base, generation in latest.items()
                )
                self._start_segment(follows=None, length=0)
                self._segment = None  # read the key files as they are
            self._refresh()
            self._cut_torn_tail()

    def _finish_journal(self) -> None:
        """Finish a multi-key commit that a version before the log left halfway."""
        try:
            journal = json.loads(self.journal_path.read_bytes())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise StoreCorrupted(
                f"{self.journal_path} is not valid JSON ({exc}); this service never "
                "leaves it so: restore the store folder from a backup"
            ) from None
        logger.warning("Finishing a commit interrupted before it completed")
        for base, document in journal["files"].items():
            records = [
                StoredEntity.from_json(data)
                for data in (document or {}).get("entities", [])
            ]
            self._write_key(base, records)
        self.journal_path.unlink()
        fsync_dir(self.root)


def _load(path: Path) -> list[StoredEntity]:
    """The records of a key file, read a line at a time (see ``_encode``)."""
    records = []
    try:
        with open(path, "rb") as handle:
            head = handle.readline()
            if not (head.startswith(b'{"locationKey": ') and head.endswith(b"[\n")):
                raise ValueError("it does not start as a key file")
            for line in handle:
                if line.rstrip() == b"]}":
                    break
                data = jsoncodec.decode(line.rstrip().removesuffix(b","))
                records.append(StoredEntity.from_json(data))
            else:
                raise ValueError("it was cut short")
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreCorrupted(
            f"store file {path} is not a whole catalog file ({exc}); "
            "restore it from a backup or remove it and run a full sync"
        ) from None
    return records


_COMMIT_LINE = b'{"commit": '


def _put_line(record: StoredEntity) -> bytes:
    return b'{"put":' + record.as_json_bytes() + b"}\n"


def _delete_line(ref: str) -> bytes:
    return (json.dumps({"delete": ref}, ensure_ascii=False) + "\n").encode()


def _decode_line(line: bytes, path: str) -> tuple[str, StoredEntity | None] | None:
    """A put or delete line's change; None for a header or commit line."""
    try:
        document = jsoncodec.decode(line)
        if "put" in document:
            record = StoredEntity.from_json(document["put"])
            return record.ref, record
        if "delete" in document:
            return document["delete"], None
        if "commit" in document or "segment" in document:
            return None
        raise ValueError("neither a change nor a commit")
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreCorrupted(
            f"log segment {path} holds a line that is not a commit ({exc}); "
            "this service never writes one: restore the store folder from a backup"
        ) from None


def _encode(records: list[StoredEntity]) -> Iterator[bytes]:
    """One entity per line, so a person can read and grep the file, and the
    store can read it back a line at a time; given a line at a time, so that a
    key of tens of thousands of entities is never held encoded whole."""
    records = sorted(records, key=lambda r: r.ref)
    head = jsoncodec.encode(records[0].location_key)
    yield b'{"locationKey": ' + head + b', "entities": [\n'
    for number, record in enumerate(records):
        yield (b",\n" if number else b"") + record.as_json_bytes()
    yield b"\n]}\n"
