"""Files that survive a crash: atomic, fsynced replacement, spare files, locks.

``atomic_write`` writes a temporary file in the same folder, fsyncs it, renames
it over the target and fsyncs the folder, so the target is always either the old
content or the new, whole; the fsyncs can be left out where a power loss may
lose the write.  Temporary files carry ``TMP_MARK`` in their name, so
whoever recovers a folder can recognise and remove what a crash left behind.

``SpareFiles`` keeps the files of a folder whose files come and go, to write
them again rather than create and delete one per request.

``ProcessLock`` is a lock across every thread and every process: a thread
lock, then a blocking ``flock`` on a file, released by the kernel when a holder
dies.  ``StripedLocks`` gives a lock per key from a fixed set of them.  Keys
share a stripe by hash, so a lock may also exclude unrelated keys; never hold
one lock while waiting for another of the same set.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import secrets
import threading
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Iterable, Iterator

TMP_MARK = ".tmp-"

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

# Temporary names: a random mark per process (new in each forked child) and a
# number, so no two writers ever share one and no name is ever reused.
_TEMPORARY_NUMBERS = itertools.count()
_process_mark = secrets.token_hex(6)


def _new_process_mark() -> None:
    global _process_mark
    _process_mark = secrets.token_hex(6)


os.register_at_fork(after_in_child=_new_process_mark)


def atomic_write(
    path: Path, data: bytes | Iterable[bytes], durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` whole: bytes, or chunks written in turn
    (so a large file never has to be held whole).  Without ``durable`` nothing
    is fsynced: the file is still whole after a crash of the process (the kernel
    keeps what was written), but may be lost or old after a power loss."""
    temporary = f"{path}{TMP_MARK}{_process_mark}-{next(_TEMPORARY_NUMBERS)}"
    try:
        if isinstance(data, bytes):  # small, as nearly every write is: no buffer
            _write_whole(os.open(temporary, _CREATE, 0o666), data, durable)
        else:
            with open(temporary, "wb") as handle:
                handle.writelines(data)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if durable:
        fsync_dir(path.parent)


def _write_whole(descriptor: int, data: bytes, durable: bool) -> None:
    """Write ``data`` at the descriptor's offset, fsync if ``durable``, close."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        if durable:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SpareFiles:
    """Files of one folder written again instead of created and deleted.

    ext4 without a journal does not reuse an inode deleted in the last minute
    or more, and finds each new file's inode by stepping over every such one:
    a file created and deleted per request makes every creation slower, the more
    requests there were.  A writer whose files come and go ``retire``s a file
    instead of deleting it (it is renamed to a spare name) and ``write``s into a
    spare, renamed into place: as whole as with ``atomic_write``, and no inode
    is freed or allocated.  Spare names carry ``TMP_MARK``, so a spare is never
    taken for content, and it is emptied when retired, so it keeps nothing of
    what it held; one removed as a leftover (by a recovery that takes it for a
    dead process's) is simply not reused.  At most ``keep`` spares are kept per
    process; each thread writes into a spare of its own.
    """

    def __init__(self, folder: Path, keep: int = 8) -> None:
        self.folder = folder
        self.keep = keep
        self._spares: list[str] = []
        self._pid = os.getpid()

    def write(self, path: Path, data: bytes, durable: bool = True) -> None:
        """``atomic_write(path, data, durable)``, into a spare when there is one."""
        for spare in self._taken():
            try:
                descriptor = os.open(spare, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            _write_whole(descriptor, data, durable)
            try:
                os.replace(spare, path)
            except FileNotFoundError:
                continue
            if durable:
                fsync_dir(path.parent)
            return
        atomic_write(path, data, durable)

    def retire(self, path: Path) -> None:
        """Take ``path`` away: kept as a spare, or deleted when enough are kept."""
        if self._pid != os.getpid():  # forked: the spares are the parent's
            self._spares, self._pid = [], os.getpid()
        if len(self._spares) >= self.keep:
            with suppress(FileNotFoundError):
                os.unlink(path)
            return
        number = next(_TEMPORARY_NUMBERS)
        spare = f"{self.folder}/spare{TMP_MARK}{_process_mark}-{number}"
        try:
            os.rename(path, spare)
            os.truncate(spare, 0)  # what it held is not kept
        except FileNotFoundError:
            return
        self._spares.append(spare)

    def _taken(self) -> Iterator[str]:
        """Spares, each taken from the pool for the caller alone."""
        while self._pid == os.getpid():
            try:
                yield self._spares.pop()
            except IndexError:
                return


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
