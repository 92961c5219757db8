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
be.  It is called after large steps only.  This module changes nothing else.
"""

from __future__ import annotations

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


#: How many changes make a step large enough to ``settle`` after.
BULK = 1000


def settle() -> None:
    """Collect garbage, then take what is alive out of the collector's sight."""
    gc.collect()
    gc.freeze()
