"""The file store: the catalog as JSON files, one per location key.

Layout under ``catalog.store.path``::

    entities/<key>.<generation>.json   every entity stored with that location key
    catalog.lock                       held by whoever writes, across processes
    journal.json                       present only while a multi-file commit runs

``<key>`` is the percent-encoded location key (or its SHA-256 when too long), so
no key can name a path, and the service never writes outside the store folder.
``<generation>`` is new at every write of that key and never reused: a commit
writes the next generation (to a temporary file, fsynced, renamed, folder
fsynced) and then unlinks the previous one.  A reader knows a key changed by its
name alone, so it can never mistake new content for old, whatever the
filesystem's timestamp granularity or inode reuse; and it never sees a partial
file.  Where two generations of a key exist (between the rename and the unlink,
or after a crash there), the higher one is the truth.

A commit that touches one key needs nothing more.  A commit that touches several
first writes all their new contents to ``journal.json`` (atomically, the same
way), then writes the keys, then removes the journal; whoever takes the lock
next finds a leftover journal and finishes it, so a commit is all or nothing even
after ``kill -9``.

Writers take a thread lock and then ``catalog.lock`` (an ``flock`` through the
``filelock`` library, released by the kernel if the holder dies).  Readers take
no cross-process lock, and a snapshot re-reads only the keys whose generation
changed.

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
import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote

from filelock import FileLock

from ..durable_files import (
    TMP_MARK,
    atomic_write,
    fsync_dir,
    remove_temporary_files,
)
from ..metrics import STORE_WRITE_SECONDS
from .relations import Incoming, update_incoming
from .store import (
    CatalogSnapshot,
    CatalogStore,
    StoreCorrupted,
    StoredEntity,
    StoreTransaction,
)

logger = logging.getLogger(__name__)

_UNKEYED = "_unkeyed"
_GENERATION = re.compile(r"^(?P<base>.+)\.(?P<generation>\d{20}[0-9a-f]{8})\.json$")


def file_name_for(location_key: str | None) -> str:
    """The base name of a location key's files; never a path."""
    if location_key is None:
        return _UNKEYED
    encoded = quote(location_key, safe="-_.~")
    if len(encoded) > 200:
        return "h-" + hashlib.sha256(location_key.encode()).hexdigest()
    return "k-" + encoded


def _next_generation(previous: str | None) -> str:
    """Later than ``previous`` and, by its random tail, never used before."""
    stamp = time.time_ns()
    if previous is not None:
        stamp = max(stamp, int(previous[:20]) + 1)
    return f"{stamp:020d}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class _FileState:
    generation: str
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
        self._by_ref: dict[str, StoredEntity] = {}
        self._incoming: Incoming = {}
        self._served: dict = {}
        self._snapshot = CatalogSnapshot({})

        with self._write_lock, self._file_lock:
            self._recover()

    def check_writable(self) -> None:
        probe = self.root / f".probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()

    # Reading

    def snapshot(self) -> CatalogSnapshot:
        with self._cache_lock:
            self._refresh()
            return self._snapshot

    def _refresh(self) -> None:
        # A generation can be unlinked between the scan and the read, when a
        # writer replaces it: scan again, a few times at most.
        for _ in range(10):
            try:
                changed = self._changes()
            except FileNotFoundError:
                continue
            if changed:
                self._install(changed)
            return
        raise StoreCorrupted(f"{self.entities_dir} keeps changing while being read")

    def _changes(self) -> dict[str, "_FileState | None"]:
        latest = self._latest_generations()
        changed: dict[str, _FileState | None] = {}
        for base, generation in latest.items():
            cached = self._files.get(base)
            if cached is None or cached.generation != generation:
                changed[base] = self._load(base, generation)
        for base in set(self._files) - set(latest):
            changed[base] = None
        return changed

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

    def _load(self, base: str, generation: str) -> _FileState:
        name = f"{base}.{generation}.json"
        try:
            with open(self.entities_dir / name, "rb") as handle:
                document = json.loads(handle.read())
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
        return _FileState(generation, records)

    def _install(self, changed: dict[str, _FileState | None]) -> None:
        """Swap in new file states; readers keep whatever snapshot they hold."""
        by_ref = dict(self._by_ref)
        removed, added = [], []
        for name, state in changed.items():
            old = self._files.pop(name, None)
            if old is not None:
                for ref, record in old.records.items():
                    removed.append(record)
                    if by_ref.get(ref) is record:
                        del by_ref[ref]
            if state is not None:
                self._files[name] = state
                by_ref.update(state.records)
                added.extend(state.records.values())
        self._by_ref = by_ref
        self._incoming = update_incoming(self._incoming, removed, added)
        for record in removed:
            if record.ref not in by_ref:
                self._served.pop(record.ref, None)
        self._snapshot = CatalogSnapshot(by_ref, self._incoming, self._served)

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
        with STORE_WRITE_SECONDS.time():
            self._write(transaction)

    def _write(self, transaction: "_FileTransaction") -> None:
        contents: dict[str, dict[str, StoredEntity]] = {}

        def file_records(base: str) -> dict[str, StoredEntity]:
            if base not in contents:
                state = self._files.get(base)
                contents[base] = dict(state.records) if state else {}
            return contents[base]

        for ref, record in transaction.staged.items():
            old = transaction.base.get(ref)
            if old is not None:
                file_records(file_name_for(old.location_key)).pop(ref, None)
            if record is not None:
                file_records(file_name_for(record.location_key))[ref] = record

        documents = {
            base: _document(records) if records else None
            for base, records in contents.items()
        }
        if len(documents) > 1:
            journal = {"files": documents}
            atomic_write(self.journal_path, json.dumps(journal).encode())
        written = {
            base: self._write_key(base, document)
            for base, document in documents.items()
        }
        if len(documents) > 1:
            self.journal_path.unlink()
            fsync_dir(self.root)

        with self._cache_lock:
            self._install(
                {
                    base: _FileState(written[base], records) if records else None
                    for base, records in contents.items()
                }
            )

    def _write_key(self, base: str, document: dict | None) -> str | None:
        """Write the next generation of a key (or none, to empty it); drop the old."""
        old = [g for b, g in self._generations() if b == base]
        generation = None
        if document is not None:
            generation = _next_generation(max(old, default=None))
            atomic_write(
                self.entities_dir / f"{base}.{generation}.json", _encode(document)
            )
        for stale in old:
            (self.entities_dir / f"{base}.{stale}.json").unlink(missing_ok=True)
        fsync_dir(self.entities_dir)
        return generation

    # Recovery, always under the file lock

    def _recover(self) -> None:
        self._finish_journal()
        for folder in (self.root, self.entities_dir):
            for path in remove_temporary_files(folder):
                logger.info("Removed leftover temporary file %s", path)
        latest = self._latest_generations()
        for base, generation in list(self._generations()):
            if generation != latest[base]:
                logger.info("Removing superseded file %s.%s.json", base, generation)
                (self.entities_dir / f"{base}.{generation}.json").unlink(
                    missing_ok=True
                )

    def _finish_journal(self) -> None:
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
            self._write_key(base, document)
        self.journal_path.unlink()
        fsync_dir(self.root)


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
