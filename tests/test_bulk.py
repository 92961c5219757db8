"""``collection_paused`` pauses the cyclic collector while any bulk step runs,
in any thread, and leaves it as it found it."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from frobs import bulk
from frobs.bulk import collection_paused, settle


class PausedInAnotherThread:
    """Bulk work in another thread, from ``start`` until ``end``."""

    def __init__(self) -> None:
        self._inside, self._release = threading.Event(), threading.Event()
        self._worker = threading.Thread(target=self._work)

    def _work(self) -> None:
        with collection_paused():
            self._inside.set()
            self._release.wait(5)

    def start(self) -> None:
        self._worker.start()
        assert self._inside.wait(5)

    def end(self) -> None:
        self._release.set()
        self._worker.join(5)


def test_nested_and_concurrent_pauses_resume_the_collector_once_all_end():
    assert gc.isenabled()
    other = PausedInAnotherThread()
    with collection_paused():
        other.start()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled(), "resumed while another thread still pauses it"
    other.end()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_is_alive_when_bulk_work_settles_is_out_of_the_collectors_sight():
    kept = [[] for _ in range(1000)]
    settle()
    try:
        assert gc.get_freeze_count() >= len(kept)
        assert not any(x is kept[0] for x in gc.get_objects())
    finally:
        gc.unfreeze()


def test_running_says_whether_any_thread_is_in_bulk_work():
    assert not bulk.running()
    other = PausedInAnotherThread()
    other.start()
    try:
        assert bulk.running()
    finally:
        other.end()
    assert not bulk.running()


@pytest.mark.skipif(bulk._malloc_trim is None, reason="not glibc: no malloc_trim")
def test_settling_gives_memory_freed_by_bulk_work_back_to_the_system():
    def resident_kib() -> int:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0])

    # Entity-sized buffers (the C allocator's, not Python's small-object
    # arenas), most freed, a few kept all along the heap: its pages are free
    # but not given back, as after a full sync.
    kept, freed = [], []
    for i in range(100_000):
        (kept if i % 16 == 0 else freed).append(bytes(1000))
    del freed
    before = resident_kib()
    settle()
    gc.unfreeze()
    assert before - resident_kib() > 20_000, "no freed memory was given back"
    del kept
