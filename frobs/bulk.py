"""``collection_paused``: no cyclic garbage collection while bulk work runs.

Making tens of thousands of objects at once (a full sync, a store reload, an
index build) makes Python's cyclic collector run again and again over
everything alive: at 50,000 entities that more than doubles a full sync.  The
bulk work of this service makes no reference cycles, so the collector is paused
while any of it runs (counted across threads) and resumes after it; what is
garbage is still collected, only later.

``settle`` is called after bulk work whose result lives on (a catalog loaded
or synced, an index built): it collects what garbage the pause let pile up
(other threads' too), then freezes what is alive (``gc.freeze``), as a full
collection that walked it would stop the worker for tens of milliseconds at
50,000 entities.  Frozen objects are still freed when nothing refers to them;
only a reference cycle made between the collection and the freeze never would
be.  Then the C allocator is asked to give back to the system the memory
the bulk work freed (``malloc_trim``, on glibc; elsewhere nothing happens):
without it a worker that ran a full sync would keep its peak, tens of megabytes
of it free, and the next sync would climb from there.  It is called after large
steps only.  This module changes nothing else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextmanager
def collection_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def running() -> bool:
    """Whether bulk work is going on in this process now (any thread)."""
    return _depth > 0


#: How many changes make a step large enough to ``settle`` after.
BULK = 1000


def settle() -> None:
    """Collect garbage, take what is alive out of the collector's sight, and
    give back to the system the memory that bulk work freed."""
    gc.collect()
    gc.freeze()
    _give_back_freed_memory()


def _load_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: its allocator gives memory back by itself or not


_malloc_trim = _load_malloc_trim()


def _give_back_freed_memory() -> None:
    if _malloc_trim is not None:
        _malloc_trim(0)
