"""Files that survive a crash: atomic, fsynced replacement, and striped locks.

``atomic_write`` writes a temporary file in the same folder, fsyncs it, renames
it over the target and fsyncs the folder, so the target is always either the old
content or the new, whole; the fsyncs can be left out where a power loss may
lose the write.  Temporary files carry ``TMP_MARK`` in their name, so
whoever recovers a folder can recognise and remove what a crash left behind.

``ProcessLock`` is a lock across every thread and every process: a thread
lock, then a blocking ``flock`` on a file, released by the kernel when a holder
dies.  ``StripedLocks`` gives a lock per key from a fixed set of them.  Keys
share a stripe by hash, so a lock may also exclude unrelated keys; never hold
one lock while waiting for another of the same set.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import uuid
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TMP_MARK = ".tmp-"


def atomic_write(
    path: Path, data: bytes | Iterable[bytes], durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` whole: bytes, or chunks written in turn
    (so a large file never has to be held whole).  Without ``durable`` nothing
    is fsynced: the file is still whole after a crash of the process (the kernel
    keeps what was written), but may be lost or old after a power loss."""
    temporary = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(temporary, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
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


class ProcessLock:
    """An exclusive lock across every thread and every process on this machine.

    A thread lock, then ``flock(2)`` on ``path``, which the kernel releases when
    its holder dies.  A waiter blocks in the kernel and wakes as soon as the lock
    is free, burning no CPU meanwhile (``filelock`` would poll).  Each process
    opens the file for itself, since a descriptor inherited across ``fork``
    would share the lock with the parent.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = threading.Lock()
        self._descriptor: int | None = None
        self._pid: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        if not self._thread.acquire(blocking):
            return False
        try:
            if self._pid != os.getpid():
                self._descriptor = os.open(
                    self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
                self._pid = os.getpid()
            assert self._descriptor is not None
            fcntl.flock(
                self._descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            )
        except BlockingIOError:
            self._thread.release()
            return False
        except BaseException:
            self._thread.release()
            raise
        return True

    def release(self) -> None:
        try:
            assert self._descriptor is not None
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    @contextmanager
    def hold(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock; yields False (holding nothing) when not ``blocking``
        and another thread or process holds it."""
        held = self.acquire(blocking)
        try:
            yield held
        finally:
            if held:
                self.release()


class StripedLocks:
    def __init__(self, folder: Path, stripes: int = 64) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._locks = [ProcessLock(folder / f"{n:02d}.lock") for n in range(stripes)]

    def _stripe(self, key: str) -> int:
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:4], "big") % len(self._locks)

    def hold(self, key: str, blocking: bool = True) -> AbstractContextManager[bool]:
        """Hold the lock of ``key``; yields False (holding nothing) when not
        ``blocking`` and another thread or process holds it."""
        return self._locks[self._stripe(key)].hold(blocking)
