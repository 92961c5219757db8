"""The scheduler: runs each provider's full sync on its schedule, in one worker.

Each task has a frequency (a duration, or ``{cron: ...}``), a timeout and an
initial delay, as in Backstage's scheduler.  A background thread drives the
``schedule`` library; it runs tasks only while it holds the lead its
``Coordination`` gives (``scheduler.lock`` in the store folder, or an advisory
lock in the catalog database), taken without blocking, so exactly one worker of
all runs them.  The others retry every few seconds and take over within seconds
if the holder dies (its ``flock`` or its database connection goes with it).

Each run happens on its own thread; if it outlives its timeout, it is abandoned:
its ``cancelled`` event is set so it applies nothing more, the run is reported as
timed out, and the schedule goes on.

A run that fails for an expected reason (its source cannot be read, or the
catalog database does not answer) is one error line with the task and the
reason, since it will recur at every run until someone fixes the source; any
other failure is logged with its traceback.

``start`` must be called after gunicorn forks, in the worker (``gunicorn.conf.py``
does this), never in the master: a thread started before the fork would live in
the master only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import schedule
from croniter import croniter

from .coordination import Coordination, FileCoordination
from .errors import ConflictError, DatabaseUnavailable, NotFoundError, RefusedError
from .metrics import SYNC_RUNS, SYNC_SECONDS
from .provenance import caused_by
from .reading import ReadFailed

logger = logging.getLogger(__name__)

LEADER_RETRY_SECONDS = 5.0
TICK_SECONDS = 0.2

#: Failures whose message says it all: logged without a traceback.
EXPECTED_FAILURES = (ReadFailed, DatabaseUnavailable)


@dataclass(frozen=True)
class TaskSchedule:
    frequency: timedelta | str  # a duration, or a cron expression
    timeout: timedelta
    initial_delay: timedelta


@dataclass
class TaskRun:
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str = "running"
    summary: dict = field(default_factory=dict)
    error: str | None = None

    def as_json(self) -> dict:
        return {
            "startedAt": self.started_at.isoformat(),
            "endedAt": self.ended_at.isoformat() if self.ended_at else None,
            "outcome": self.outcome,
            "counts": self.summary,
            "error": self.error,
        }


TaskFn = Callable[[threading.Event], dict | None]


@dataclass
class ScheduledTask:
    id: str
    schedule: TaskSchedule
    fn: TaskFn
    last_run: TaskRun | None = None
    running: bool = False
    abandoned: threading.Thread | None = None

    def settings(self) -> dict:
        frequency = self.schedule.frequency
        return {
            "version": 2,
            "cadence": frequency
            if isinstance(frequency, str)
            else _iso_duration(frequency),
            "timeoutAfterDuration": _iso_duration(self.schedule.timeout),
            "initialDelayDuration": _iso_duration(self.schedule.initial_delay),
        }


class Scheduler:
    def __init__(
        self,
        lock_path: Path | None = None,
        state_dir: Path | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        """With ``coordination``, or files: ``lock_path`` and ``state_dir``."""
        if coordination is None:
            assert lock_path is not None, "a lock path or a coordination"
            coordination = FileCoordination(lock_path, state_dir)
        self.coordination = coordination
        self.tasks: dict[str, ScheduledTask] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_pid: int | None = None
        self._lock = threading.Lock()

    def add_task(self, task_id: str, task_schedule: TaskSchedule, fn: TaskFn) -> None:
        self.tasks[task_id] = ScheduledTask(task_id, task_schedule, fn)

    def start(self) -> None:
        """Start the background thread in this process; later calls do nothing."""
        with self._lock:
            if self._started_pid == os.getpid() or not self.tasks:
                return
            self._started_pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="frobs-scheduler", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                leading = self.coordination.try_lead()
            except Exception:
                logger.exception("Could not ask to run the scheduled tasks")
                leading = False
            if not leading:
                self._stop.wait(LEADER_RETRY_SECONDS)
                continue
            logger.info(
                "Worker %d runs the scheduled tasks: %s",
                os.getpid(),
                ", ".join(self.tasks),
            )
            try:
                self._lead()
            except Exception:
                logger.exception("The scheduler stopped leading after an error")
            finally:
                self.coordination.stop_leading()

    def _lead(self) -> None:
        jobs = schedule.Scheduler()
        for task in self.tasks.values():
            self._plan(jobs, task)
        while not self._stop.is_set() and self.coordination.still_leading():
            jobs.run_pending()
            for task in self.tasks.values():
                if self.coordination.take_trigger(task.id):
                    self.run(task)
            self._stop.wait(TICK_SECONDS)

    def _plan(self, jobs: schedule.Scheduler, task: ScheduledTask) -> None:
        first = datetime.now() + task.schedule.initial_delay
        frequency = task.schedule.frequency
        if isinstance(frequency, str):
            cron = croniter(frequency, first)
            state = {"next": cron.get_next(datetime)}

            def run_when_due() -> None:
                if datetime.now() >= state["next"]:
                    state["next"] = cron.get_next(datetime)
                    self.run(task)

            jobs.every(1).seconds.do(run_when_due)
            return

        seconds = max(frequency.total_seconds(), 1.0)
        job = jobs.every(seconds).seconds.do(self.run, task)
        job.next_run = first

    def run(self, task: ScheduledTask) -> TaskRun | None:
        """Run a task now on its own thread, waiting at most its timeout.

        A run is never started while another run of the same task goes on, in
        this process (an abandoned run still finishing) or in another (the
        command line's ``sync``): each run holds the task's run lock.
        """
        if task.abandoned is not None and task.abandoned.is_alive():
            logger.warning(
                "Task %s not started: its abandoned run is still finishing", task.id
            )
            return None
        with self.coordination.run_claim(task.id) as claimed:
            if not claimed:
                logger.warning("Task %s not started: a run of it is going on", task.id)
                return None
            return self._run(task)

    def _run(self, task: ScheduledTask) -> TaskRun:
        run = TaskRun(started_at=datetime.now(timezone.utc))
        cancelled = threading.Event()
        task.running = True
        task.last_run = run
        self._save_state()
        logger.info("Task %s started", task.id)
        began = time.monotonic()

        def body() -> None:
            try:
                with caused_by(task=task.id, runStartedAt=run.started_at.isoformat()):
                    summary = task.fn(cancelled) or {}
                if not cancelled.is_set():
                    run.summary, run.outcome = summary, "succeeded"
            except Exception as exc:
                if cancelled.is_set():
                    return
                run.outcome = "refused" if isinstance(exc, RefusedError) else "failed"
                run.error = f"{type(exc).__name__}: {exc}"
                if run.outcome == "refused":
                    logger.warning("Task %s was refused: %s", task.id, exc)
                elif isinstance(exc, EXPECTED_FAILURES):
                    logger.error("Task %s failed: %s", task.id, run.error)
                else:
                    logger.exception("Task %s failed: %s", task.id, run.error)

        worker = threading.Thread(target=body, name=f"task-{task.id}", daemon=True)
        worker.start()
        worker.join(task.schedule.timeout.total_seconds())
        if worker.is_alive():
            cancelled.set()
            task.abandoned = worker
            run.outcome = "timed out"
            logger.error(
                "Task %s ran past its timeout of %s and was abandoned",
                task.id,
                task.schedule.timeout,
            )

        run.ended_at = datetime.now(timezone.utc)
        task.running = False
        SYNC_RUNS.labels(task=task.id, outcome=run.outcome).inc()
        SYNC_SECONDS.labels(task=task.id).observe(time.monotonic() - began)
        self._save_state()
        logger.info(
            "Task %s %s in %.2fs: %s",
            task.id,
            run.outcome,
            time.monotonic() - began,
            run.summary or run.error or "",
        )
        return run

    # State shared with every worker, and triggers from any of them

    def _save_state(self) -> None:
        state = {
            task.id: {
                "running": task.running,
                "lastRun": task.last_run.as_json() if task.last_run else None,
            }
            for task in self.tasks.values()
        }
        self.coordination.save_state(state)

    def _saved_state(self) -> dict:
        return self.coordination.saved_state()

    def describe(self) -> list[dict]:
        """The tasks in Backstage's shape, with their last run, from any worker."""
        saved = self._saved_state()
        described = []
        for task in self.tasks.values():
            state = saved.get(task.id, {})
            described.append(
                {
                    "taskId": task.id,
                    "pluginId": "catalog",
                    "scope": "global",
                    "settings": task.settings(),
                    "taskState": {
                        "status": "running" if state.get("running") else "idle"
                    },
                    "workerState": {"status": "idle"},
                    "lastRun": state.get("lastRun"),
                }
            )
        return described

    def trigger(self, task_id: str) -> None:
        """Ask the worker that runs tasks to run one now."""
        if task_id not in self.tasks:
            raise NotFoundError(f"No task with id {task_id!r}")
        if self._saved_state().get(task_id, {}).get("running"):
            raise ConflictError(f"Task {task_id} is currently running")
        self.coordination.trigger(task_id)


def _iso_duration(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    return f"PT{seconds:g}S"
