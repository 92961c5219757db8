"""``EventOrder``: events about one thing are handled one at a time, newest last.

A subscriber that reads a source and then writes the catalog calls
``turn(key, received_at)`` around that work.  The turn is exclusive across every
thread and worker for that key (a striped ``flock``), and it is refused (yields
False) to an event received before the newest event already handled for the key,
so a late retry of an older event never undoes a newer one: the later-received
event wins.  The mark is written before the work starts, so a full sync that
began reading earlier can see, inside its own transaction, which keys changed
after it read (``changed_since``).

Marks live in small files under ``<store>/events/order``, named by a hash of the
key; each holds the receive time and the key, and is rewritten in place.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..durable_files import TMP_MARK, StripedLocks


class EventOrder:
    def __init__(self, root: Path) -> None:
        self.marks = Path(root) / "order"
        self.marks.mkdir(parents=True, exist_ok=True)
        self._locks = StripedLocks(Path(root) / "order-locks")

    @contextmanager
    def turn(self, key: str, received_at: int) -> Iterator[bool]:
        with self._locks.hold(key):
            yield self._mark(key, received_at)

    def _mark(self, key: str, received_at: int) -> bool:
        """Write ``received_at`` as the key's mark unless its mark is newer.

        The mark is rewritten in place, the same length each time, instead of
        replaced by a new file: a file created and deleted per event makes the
        file system's inode allocation slower and slower.  Marks order events
        while the service runs; they need not survive a power loss, so they
        cost no fsync.
        """
        mark = _encode(received_at, key)
        descriptor = os.open(self._path(key), _OPEN, 0o666)
        try:
            held = os.pread(descriptor, len(mark) + 64, 0)
            newest = _received(held)
            if newest is not None and received_at < newest:
                return False
            os.pwrite(descriptor, mark, 0)
            if len(held) > len(mark):  # written by an older version
                os.ftruncate(descriptor, len(mark))
            return True
        finally:
            os.close(descriptor)

    def changed_since(self, nanoseconds: int) -> set[str]:
        """The keys whose newest event was received after ``nanoseconds``.

        A mark being written as this reads it may be missed; that event's
        work is then still to be committed, after whatever reads this.
        """
        changed = set()
        for entry in os.scandir(self.marks):
            if TMP_MARK in entry.name:
                continue  # left by an older version
            try:
                if entry.stat().st_mtime_ns < nanoseconds - MTIME_SLACK_NS:
                    continue  # not written since: no need to read it
                with open(entry.path, "rb", buffering=0) as handle:
                    held = handle.read()
            except FileNotFoundError:
                continue
            received = _received(held)
            if received is not None and received > nanoseconds:
                changed.add(held.partition(b" ")[2].decode())
        return changed

    def _path(self, key: str) -> str:
        return f"{self.marks}/{hashlib.sha256(key.encode()).hexdigest()[:40]}"


_OPEN = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC

#: File times come from a clock coarser than ``time.time_ns`` (a few
#: milliseconds on Linux): a mark written after a moment may carry an earlier
#: time, so a mark is read unless its time is this much earlier.
MTIME_SLACK_NS = 1_000_000_000


def _encode(received_at: int, key: str) -> bytes:
    """A mark: the receive time in 20 digits (always the same width), the key."""
    return f"{received_at:020d} {key}".encode()


def _received(mark: bytes) -> int | None:
    """A mark's receive time; None for an empty or unfinished one (a crash
    between creating the file and writing it)."""
    digits, space, _ = mark.partition(b" ")
    return int(digits) if space and digits.isdigit() else None
