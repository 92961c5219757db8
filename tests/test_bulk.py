"""``collection_paused`` pauses the cyclic collector while any bulk step runs,
in any thread, and leaves it as it found it."""

from __future__ import annotations

import gc
import threading

from frobs.bulk import collection_paused, settle


def test_nested_and_concurrent_pauses_resume_the_collector_once_all_end():
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with collection_paused():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=other_thread)
    with collection_paused():
        worker.start()
        inside.wait(5)
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled(), "resumed while another thread still pauses it"
    release.set()
    worker.join(5)
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
