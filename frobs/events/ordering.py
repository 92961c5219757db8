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
key; each holds the receive time and the key.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..durable_files import TMP_MARK, StripedLocks, atomic_write


class EventOrder:
    def __init__(self, root: Path) -> None:
        self.marks = Path(root) / "order"
        self.marks.mkdir(parents=True, exist_ok=True)
        self._locks = StripedLocks(Path(root) / "order-locks")

    @contextmanager
    def turn(self, key: str, received_at: int) -> Iterator[bool]:
        with self._locks.hold(key):
            newest = self._mark(key)
            if newest is not None and received_at < newest:
                yield False
                return
            # Marks order events while the service runs; they need not
            # survive a power loss, so they cost no fsync.
            mark = f"{received_at} {key}".encode()
            atomic_write(self._path(key), mark, durable=False)
            yield True

    def changed_since(self, nanoseconds: int) -> set[str]:
        """The keys whose newest event was received after ``nanoseconds``."""
        changed = set()
        for entry in os.scandir(self.marks):
            if TMP_MARK in entry.name:
                continue
            try:
                if entry.stat().st_mtime_ns < nanoseconds:
                    continue
                received, _, key = Path(entry.path).read_text().partition(" ")
            except FileNotFoundError:
                continue
            if int(received) > nanoseconds:
                changed.add(key)
        return changed

    def _mark(self, key: str) -> int | None:
        try:
            return int(self._path(key).read_text().partition(" ")[0])
        except FileNotFoundError:
            return None

    def _path(self, key: str) -> Path:
        return self.marks / hashlib.sha256(key.encode()).hexdigest()[:40]
