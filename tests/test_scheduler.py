"""The scheduler: one worker runs the tasks, on schedule, within their timeouts;
across processes that coordinate through files or through PostgreSQL, exactly
one leads, another takes over when it dies, a task never runs twice at once,
and a trigger asked of any of them is run by the leader."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from datetime import timedelta

import pytest

from frobs.catalog.postgres_store import PostgresStore
from frobs.coordination import FileCoordination
from frobs.database import DatabaseUnavailable
from frobs.postgres_coordination import PostgresCoordination
from frobs.reading import ReadFailed, ReadRefused, SourceNotFound
from frobs.scheduler import ScheduledTask, Scheduler, TaskSchedule

FAST = TaskSchedule(
    frequency=timedelta(seconds=1),
    timeout=timedelta(seconds=5),
    initial_delay=timedelta(seconds=0),
)


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_task_runs_after_its_initial_delay_and_then_on_its_frequency(tmp_path):
    runs = []
    scheduler = Scheduler(tmp_path / "scheduler.lock")
    scheduler.add_task("t", FAST, lambda cancelled: runs.append(time.monotonic()))
    scheduler.start()
    try:
        assert wait_for(lambda: len(runs) >= 2)
    finally:
        scheduler.stop()
    assert scheduler.tasks["t"].last_run.outcome == "succeeded"


def test_a_run_past_its_timeout_is_abandoned_and_reported(tmp_path):
    saw_cancel = threading.Event()

    def slow(cancelled: threading.Event) -> dict:
        cancelled.wait(5)
        saw_cancel.set()
        return {"applied": 1}

    task = ScheduledTask(
        "slow",
        TaskSchedule(timedelta(hours=1), timedelta(seconds=0.3), timedelta(0)),
        slow,
    )
    run = Scheduler(tmp_path / "lock").run(task)

    assert run.outcome == "timed out"
    assert saw_cancel.wait(2)
    time.sleep(0.1)
    assert run.outcome == "timed out" and run.summary == {}


def test_a_failing_task_is_reported_and_the_schedule_goes_on(tmp_path):
    def broken(cancelled):
        raise RuntimeError("source down")

    task = ScheduledTask("broken", FAST, broken)
    run = Scheduler(tmp_path / "lock").run(task)
    assert run.outcome == "failed" and "source down" in run.error


# Each failure, and whether its log line carries a traceback.
FAILURES = {
    "a source that does not answer": (
        ReadFailed("reading http://frobs.test/data failed: MaxRetryError"),
        False,
    ),
    "a source that is not there": (
        SourceNotFound("http://frobs.test/data answered 404"),
        False,
    ),
    "a source outside the allowed hosts": (
        ReadRefused("http://elsewhere.test/data: host not allowed"),
        False,
    ),
    "a catalog database that does not answer": (
        DatabaseUnavailable("cannot reach the database: connection refused"),
        False,
    ),
    "a bug": (KeyError("frobs"), True),
}


@pytest.mark.parametrize("error, traceback", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_run_is_one_error_line_unless_unexpected(
    tmp_path, caplog, error, traceback
):
    def failing(cancelled):
        raise error

    caplog.set_level(logging.INFO, logger="frobs.scheduler")
    run = Scheduler(tmp_path / "lock").run(
        ScheduledTask("frobs-down:refresh", FAST, failing)
    )

    assert run.outcome == "failed"
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.getMessage().startswith("Task frobs-down:refresh failed")
    assert (line.exc_info is not None) is traceback
    if not traceback:
        assert line.getMessage() == (
            f"Task frobs-down:refresh failed: {type(error).__name__}: {error}"
        )


@pytest.fixture(params=["file", "postgres"])
def coordination(request, tmp_path):
    """Makes the coordination of one more scheduler sharing the others'."""
    if request.param == "file":
        return lambda: FileCoordination(tmp_path / "scheduler.lock")
    url = request.getfixturevalue("postgres_url")
    PostgresStore(url).close()  # its migrations make the scheduler's table
    return lambda: PostgresCoordination(url)


def _run_scheduler(coordination, log_path, seconds):
    def record(cancelled):
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()}\n")

    scheduler = Scheduler(coordination=coordination())
    scheduler.add_task("t", FAST, record)
    scheduler.start()
    time.sleep(seconds)
    os._exit(0)


def test_only_one_process_runs_the_tasks_and_another_takes_over_when_it_dies(
    tmp_path, coordination
):
    log = tmp_path / "runs.log"
    context = multiprocessing.get_context("fork")
    first = context.Process(target=_run_scheduler, args=(coordination, log, 3))
    first.start()
    assert wait_for(lambda: log.exists())
    second = context.Process(target=_run_scheduler, args=(coordination, log, 12))
    second.start()

    first.join(10)
    assert wait_for(
        lambda: second.pid in {int(p) for p in log.read_text().split()}, seconds=12
    )
    second.kill()
    second.join()

    pids = [int(p) for p in log.read_text().split()]
    assert set(pids) == {first.pid, second.pid}
    switch = pids.index(second.pid)
    assert all(p == first.pid for p in pids[:switch])
    assert all(p == second.pid for p in pids[switch:])


def test_a_task_never_runs_twice_at_once_even_from_two_schedulers(coordination):
    started, release = threading.Event(), threading.Event()

    def slow(cancelled):
        started.set()
        release.wait(5)
        return {}

    first = Scheduler(coordination=coordination())
    second = Scheduler(coordination=coordination())
    first.add_task("t", FAST, slow)
    second.add_task("t", FAST, slow)

    runner = threading.Thread(target=first.run, args=(first.tasks["t"],))
    runner.start()
    assert started.wait(5)
    assert second.run(second.tasks["t"]) is None
    release.set()
    runner.join(5)
    assert first.tasks["t"].last_run.outcome == "succeeded"


def test_a_trigger_asked_of_any_scheduler_is_run_by_the_leader(coordination):
    runs = []
    slow = TaskSchedule(timedelta(hours=1), timedelta(seconds=5), timedelta(hours=1))
    leader = Scheduler(coordination=coordination())
    other = Scheduler(coordination=coordination())
    leader.add_task("t", slow, lambda cancelled: runs.append(os.getpid()))
    other.add_task("t", slow, lambda cancelled: runs.append("other"))
    leader.start()
    try:
        assert wait_for(lambda: leader.coordination.still_leading())
        other.trigger("t")
        assert wait_for(lambda: runs == [os.getpid()])
        # The run is recorded as running, then with its outcome once it ends.
        assert wait_for(
            lambda: (other.describe()[0]["lastRun"] or {}).get("outcome")
            == "succeeded"
        ), other.describe()[0]
    finally:
        leader.stop()
