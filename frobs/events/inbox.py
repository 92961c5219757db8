"""The durable inbox: accepted events on disk until every subscriber has them.

Layout under ``<store>/events/``::

    inbox/<entry id>.json   an accepted event not yet delivered to every subscriber
    dead/<entry id>.json    a dead letter: an event some subscriber kept failing
    done/<key hash>         a delivery id whose event every subscriber took
    locks/NN.lock           held while an entry is being delivered

An entry is written whole and renamed into place before anyone processes it,
and replaced whole after each attempt, so after ``kill -9`` every entry is the
one accepted or the last attempt's record.  The files of delivered entries are
written again for later ones (``SpareFiles``), not deleted.  The processor
decides when an entry must also survive a power loss (fsynced).  Done markers
are not fsynced: losing one only means a redelivery is processed again.

The inbox only stores and finds entries; ``EventProcessor`` decides what happens
to them.  It never writes outside its folder: file names are generated ids and
hashes, never anything a sender chose.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from .. import jsoncodec
from ..durable_files import (
    TMP_MARK,
    SpareFiles,
    StripedLocks,
    atomic_write,
    fsync_dir,
)
from .params import EventParams

logger = logging.getLogger(__name__)

#: A temporary file older than this was left by a crash, not by a live writer.
STALE_TEMPORARY_SECONDS = 600


@dataclass
class InboxEntry:
    id: str
    topic: str
    payload: Any
    metadata: dict[str, str]
    received_at: int  # nanoseconds since the epoch
    dedup_key: str
    delivery_id: str | None = None
    succeeded: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)
    next_attempt_at: int | None = None

    @classmethod
    def accepted(cls, params: EventParams, dedup_key: str, delivery_id: str | None):
        received_at = time.time_ns()
        return cls(
            id=f"{received_at:020d}-{secrets.token_hex(4)}",
            topic=params.topic,
            payload=params.event_payload,
            metadata=dict(params.metadata),
            received_at=received_at,
            dedup_key=dedup_key,
            delivery_id=delivery_id,
        )

    @classmethod
    def decode(cls, data: bytes | str) -> "InboxEntry":
        """An entry from what ``encode`` gave."""
        return cls(**jsoncodec.decode(data))

    def encode(self) -> bytes:
        """The entry as stored: a JSON object of its fields."""
        return jsoncodec.encode({f.name: getattr(self, f.name) for f in _FIELDS})

    def params(self) -> EventParams:
        return EventParams(self.topic, self.payload, self.metadata)

    def as_public(self) -> dict:
        """The entry as the dead-letter API shows it."""
        return {
            "id": self.id,
            "topic": self.topic,
            "deliveryId": self.delivery_id,
            "receivedAt": _iso(self.received_at),
            "payload": self.payload,
            "metadata": self.metadata,
            "failedSubscribers": sorted(self.failures),
            "succeededSubscribers": sorted(self.succeeded),
            "attempts": [
                {**attempt, "at": _iso(attempt["at"])} for attempt in self.attempts
            ],
        }


class FileInbox:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.inbox_dir = self.root / "inbox"
        self.dead_dir = self.root / "dead"
        self.done_dir = self.root / "done"
        for folder in (self.inbox_dir, self.dead_dir, self.done_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._locks = StripedLocks(self.root / "locks")
        # Entries come and go with every event: their files are reused.
        self._spares = SpareFiles(self.inbox_dir)

    # Entries

    def record(self, entry: InboxEntry, durable: bool = True) -> None:
        """Store an entry (also to replace it after an attempt); fsynced unless
        not ``durable``, when only a crash of the process cannot lose it."""
        path = self._path(self.inbox_dir, entry.id)
        self._spares.write(path, entry.encode(), durable)

    def load(self, entry_id: str) -> InboxEntry | None:
        return _load(self._path(self.inbox_dir, entry_id))

    def remove(self, entry: InboxEntry) -> None:
        self._spares.retire(self._path(self.inbox_dir, entry.id))

    def entries(self) -> Iterator[InboxEntry]:
        yield from _entries(self.inbox_dir)

    def lock(self, entry_id: str, blocking: bool) -> AbstractContextManager[bool]:
        """Held while an entry is delivered, so no two workers deliver it at once."""
        return self._locks.hold(entry_id, blocking)

    # Dead letters

    def bury(self, entry: InboxEntry) -> None:
        atomic_write(self._path(self.dead_dir, entry.id), entry.encode())
        self.remove(entry)
        fsync_dir(self.inbox_dir)

    def dead_letters(self) -> list[InboxEntry]:
        return sorted(_entries(self.dead_dir), key=lambda e: e.id)

    def revive(self, entry_id: str) -> InboxEntry | None:
        """Move a dead letter back to the inbox, its failure counts reset."""
        entry = _load(self._path(self.dead_dir, entry_id))
        if entry is None:
            return None
        entry.failures = {}
        entry.next_attempt_at = None
        self.record(entry)
        self._path(self.dead_dir, entry_id).unlink(missing_ok=True)
        return entry

    # Deduplication

    def is_done(self, dedup_key: str, window_seconds: float) -> bool:
        try:
            done_at = os.stat(self._done_path(dedup_key)).st_mtime
        except FileNotFoundError:
            return False
        return time.time() - done_at <= window_seconds

    def mark_done(self, dedup_key: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        descriptor = os.open(self._done_path(dedup_key), flags, 0o666)
        try:
            os.utime(descriptor)  # done now, also when done before
        finally:
            os.close(descriptor)

    def forget_done(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for entry in os.scandir(self.done_dir):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    # Recovery

    def remove_stale_temporary_files(self) -> None:
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        for folder in (self.inbox_dir, self.dead_dir):
            for entry in os.scandir(folder):
                try:
                    if TMP_MARK in entry.name and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        logger.info("Removed leftover temporary file %s", entry.path)
                except FileNotFoundError:
                    continue

    def _path(self, folder: Path, entry_id: str) -> Path:
        if not entry_id.replace("-", "").isalnum() or not entry_id.isascii():
            raise ValueError(f"not an inbox entry id: {entry_id!r}")
        return folder / f"{entry_id}.json"

    def _done_path(self, dedup_key: str) -> str:
        return f"{self.done_dir}/{hashlib.sha256(dedup_key.encode()).hexdigest()[:40]}"


def _load(path: Path) -> InboxEntry | None:
    try:
        return InboxEntry.decode(path.read_bytes())
    except FileNotFoundError:
        return None


def _entries(folder: Path) -> Iterator[InboxEntry]:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.endswith(".json") and TMP_MARK not in entry.name:
            loaded = _listed(Path(entry.path))
            if loaded is not None:
                yield loaded


def _listed(path: Path) -> InboxEntry | None:
    """The entry of a file found by listing, read without the entry's lock.

    Meanwhile the entry may be delivered and its file retired and written for
    another entry (see ``SpareFiles``): what was read is then another entry,
    or part of one, and the file is no longer at ``path``.  Such an entry is
    skipped (None), as one whose file was deleted; a file still at ``path``
    that does not hold its entry is corrupt, and raises ``ValueError``.
    """
    try:
        with open(path, "rb", buffering=0) as handle:
            data = handle.read()
            inode = os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return None
    try:
        entry = InboxEntry.decode(data)
        if entry.id == path.stem:
            return entry
        problem = f"it holds entry {entry.id!r}"
    except (ValueError, TypeError) as exc:
        problem = str(exc)
    try:
        if os.stat(path).st_ino != inode:
            return None
    except FileNotFoundError:
        return None
    raise ValueError(f"inbox file {path} is not a whole entry: {problem}")


_FIELDS = fields(InboxEntry)


def _iso(nanoseconds: int) -> str:
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{rest // 1_000_000:03d}Z"
    )
