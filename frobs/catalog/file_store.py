"""The file store: the catalog as JSON files, one per location key.

Layout under ``catalog.store.path``::

    entities/<location key>.json   every entity stored with that location key
    catalog.lock                   held by whoever writes, across processes
    journal.json                   present only while a multi-file commit runs

Each file is replaced whole and atomically: written to a temporary file in the
same folder, fsynced, renamed over the old one, and the folder fsynced.  A
commit that touches one file needs nothing more.  A commit that touches several
first writes all their new contents to ``journal.json`` (atomically, the same
way), then replaces the files, then removes the journal; whoever takes the lock
next finds a leftover journal and finishes it, so a commit is all or nothing even
after ``kill -9``.

Writers take a thread lock and then ``catalog.lock`` (an ``flock`` through the
``filelock`` library, released by the kernel if the holder dies).  Readers take
no cross-process lock: every file they open is whole, and a per-file cache keyed
by inode, size and mtime means a snapshot re-reads only the files that changed.

Never writes outside the store folder: file names are the percent-encoded
location key (or its SHA-256 when too long), so no key can name a path.

Limitation: a reader that scans while a multi-file commit is halfway can see the
files already replaced and not yet the others; after the commit it sees all.
Limitation: one location key's entities share one file, so a change to one
entity rewrites every entity of that key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from filelock import FileLock

from .store import (
    CatalogSnapshot,
    CatalogStore,
    StoreCorrupted,
    StoredEntity,
    StoreTransaction,
)

logger = logging.getLogger(__name__)

_UNKEYED = "_unkeyed.json"
_TMP_MARK = ".tmp-"


def file_name_for(location_key: str | None) -> str:
    """The file holding a location key's entities; never a path."""
    if location_key is None:
        return _UNKEYED
    encoded = quote(location_key, safe="-_.~")
    if len(encoded) > 200:
        return "h-" + hashlib.sha256(location_key.encode()).hexdigest() + ".json"
    return "k-" + encoded + ".json"


@dataclass(frozen=True)
class _FileState:
    stamp: tuple[int, int, int]
    records: dict[str, StoredEntity]


class FileStore(CatalogStore):
    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path)
        self.entities_dir = self.root / "entities"
        self.journal_path = self.root / "journal.json"
        self.entities_dir.mkdir(parents=True, exist_ok=True)

        self._write_lock = threading.Lock()
        self._file_lock = FileLock(self.root / "catalog.lock", thread_local=False)
        self._cache_lock = threading.Lock()
        self._files: dict[str, _FileState] = {}
        self._snapshot = CatalogSnapshot({})
        self._by_ref: dict[str, StoredEntity] = {}

        with self._write_lock, self._file_lock:
            self._recover()

    def check_writable(self) -> None:
        probe = self.root / f".probe{_TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    # Reading

    def snapshot(self) -> CatalogSnapshot:
        with self._cache_lock:
            self._refresh()
            return self._snapshot

    def _refresh(self) -> None:
        seen = set()
        changed: dict[str, _FileState | None] = {}
        for entry in os.scandir(self.entities_dir):
            if not entry.name.endswith(".json") or _TMP_MARK in entry.name:
                continue
            try:
                stamp = _stamp(entry.stat())
            except FileNotFoundError:
                continue
            seen.add(entry.name)
            cached = self._files.get(entry.name)
            if cached is None or cached.stamp != stamp:
                changed[entry.name] = self._load(entry.name)
        for name in set(self._files) - seen:
            changed[name] = None
        if changed:
            self._install(changed)

    def _load(self, name: str) -> _FileState | None:
        try:
            with open(self.entities_dir / name, "rb") as handle:
                stamp = _stamp(os.fstat(handle.fileno()))
                document = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise StoreCorrupted(
                f"store file {self.entities_dir / name} is not valid JSON ({exc}); "
                "restore it from a backup or remove it and run a full sync"
            ) from None
        try:
            records = {}
            for data in document["entities"]:
                record = StoredEntity.from_json(data)
                records[record.ref] = record
        except (KeyError, TypeError) as exc:
            raise StoreCorrupted(
                f"store file {self.entities_dir / name} is not a catalog file "
                f"(missing {exc}); restore it from a backup or remove it"
            ) from None
        return _FileState(stamp, records)

    def _install(self, changed: dict[str, _FileState | None]) -> None:
        """Swap in new file states; readers keep whatever snapshot they hold."""
        by_ref = dict(self._by_ref)
        for name, state in changed.items():
            old = self._files.pop(name, None)
            if old is not None:
                for ref in old.records:
                    if by_ref.get(ref) is old.records[ref]:
                        del by_ref[ref]
            if state is not None:
                self._files[name] = state
                by_ref.update(state.records)
        self._by_ref = by_ref
        self._snapshot = CatalogSnapshot(by_ref)

    # Writing

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self._write_lock, self._file_lock:
            self._finish_journal()
            transaction = _FileTransaction(self.snapshot())
            yield transaction
            if transaction.staged:
                self._commit(transaction)

    def _commit(self, transaction: "_FileTransaction") -> None:
        contents: dict[str, dict[str, StoredEntity]] = {}

        def file_records(name: str) -> dict[str, StoredEntity]:
            if name not in contents:
                state = self._files.get(name)
                contents[name] = dict(state.records) if state else {}
            return contents[name]

        for ref, record in transaction.staged.items():
            old = transaction.base.get(ref)
            if old is not None:
                file_records(file_name_for(old.location_key)).pop(ref, None)
            if record is not None:
                file_records(file_name_for(record.location_key))[ref] = record

        documents = {
            name: _document(records) if records else None
            for name, records in contents.items()
        }
        if len(documents) > 1:
            journal = {"files": documents}
            _atomic_write(self.journal_path, json.dumps(journal).encode())
        for name, document in documents.items():
            self._write_entity_file(name, document)
        if len(documents) > 1:
            self.journal_path.unlink()
            _fsync_dir(self.root)

        with self._cache_lock:
            self._install(
                {
                    name: self._stamped(name, records) if records else None
                    for name, records in contents.items()
                }
            )

    def _stamped(self, name: str, records: dict[str, StoredEntity]) -> _FileState:
        return _FileState(_stamp(os.stat(self.entities_dir / name)), records)

    def _write_entity_file(self, name: str, document: dict | None) -> None:
        path = self.entities_dir / name
        if document is None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            _fsync_dir(self.entities_dir)
            return
        _atomic_write(path, _encode(document))

    # Recovery, always under the file lock

    def _recover(self) -> None:
        self._finish_journal()
        for folder in (self.root, self.entities_dir):
            for entry in os.scandir(folder):
                if _TMP_MARK in entry.name:
                    logger.info("Removing leftover temporary file %s", entry.path)
                    os.unlink(entry.path)

    def _finish_journal(self) -> None:
        try:
            journal = json.loads(self.journal_path.read_bytes())
        except FileNotFoundError:
            return
        logger.warning("Finishing a commit interrupted before it completed")
        for name, document in journal["files"].items():
            self._write_entity_file(name, document)
        self.journal_path.unlink()
        _fsync_dir(self.root)


class _FileTransaction(StoreTransaction):
    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self.base = snapshot
        self.staged: dict[str, StoredEntity | None] = {}

    def get(self, ref: str) -> StoredEntity | None:
        if ref in self.staged:
            return self.staged[ref]
        return self.base.get(ref)

    def records(self) -> Iterable[StoredEntity]:
        for record in self.base.records():
            if record.ref not in self.staged:
                yield record
        for record in self.staged.values():
            if record is not None:
                yield record

    def put(self, record: StoredEntity) -> None:
        self.staged[record.ref] = record

    def delete(self, ref: str) -> None:
        self.staged[ref] = None


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _document(records: dict[str, StoredEntity]) -> dict:
    first = next(iter(records.values()))
    return {
        "locationKey": first.location_key,
        "entities": [records[ref].as_json() for ref in sorted(records)],
    }


def _encode(document: dict) -> bytes:
    """One entity per line, so a person can read and grep the file."""
    lines = ",\n".join(json.dumps(e, ensure_ascii=False) for e in document["entities"])
    head = json.dumps(document["locationKey"], ensure_ascii=False)
    return f'{{"locationKey": {head}, "entities": [\n{lines}\n]}}\n'.encode()


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
