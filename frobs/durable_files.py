"""Files that survive a crash: atomic, fsynced replacement, and striped locks.

``atomic_write`` writes a temporary file in the same folder, fsyncs it, renames
it over the target and fsyncs the folder, so the target is always either the old
content or the new, whole.  Temporary files carry ``TMP_MARK`` in their name, so
whoever recovers a folder can recognise and remove what a crash left behind.

``StripedLocks`` gives a lock per key across every thread and every process:
a thread lock in this process and an ``flock`` (through ``filelock``) on one of
a fixed set of files, released by the kernel when a holder dies.  Keys share a
stripe by hash, so a lock may also exclude unrelated keys; never hold one lock
while waiting for another of the same set.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

TMP_MARK = ".tmp-"


def atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_temporary_files(folder: Path) -> list[Path]:
    """Remove what interrupted writes left in ``folder``; only call under a lock
    that every writer of that folder holds, or when no writer can be running."""
    removed = []
    for entry in os.scandir(folder):
        if TMP_MARK in entry.name:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


class StripedLocks:
    def __init__(self, folder: Path, stripes: int = 64) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._threads = [threading.Lock() for _ in range(stripes)]
        self._files = [
            FileLock(folder / f"{n:02d}.lock", thread_local=False)
            for n in range(stripes)
        ]

    def _stripe(self, key: str) -> int:
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:4], "big") % len(self._files)

    @contextmanager
    def hold(self, key: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock of ``key``; yields False (holding nothing) when not
        ``blocking`` and another thread or process holds it."""
        stripe = self._stripe(key)
        thread_lock, file_lock = self._threads[stripe], self._files[stripe]
        if not thread_lock.acquire(blocking=blocking):
            yield False
            return
        try:
            try:
                file_lock.acquire(blocking=blocking)
            except Timeout:
                yield False
                return
            try:
                yield True
            finally:
                file_lock.release()
        finally:
            thread_lock.release()
