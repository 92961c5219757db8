"""The service (and the bare Flask floor) under gunicorn, as the benchmarks run it.

``Gunicorn`` starts ``gunicorn <app>`` from the repository root with the
repository's ``gunicorn.conf.py`` and 4 workers (the helpers of
``tests/gunicorn_service.py`` build the command and the environment), waits
until every worker serves, waits until its workers are idle, reads the peak
memory and the CPU time of its processes, and stops it.  ``write_config`` writes
the service's configuration in a temp folder: a temp store, one Frobs provider
``frobs-bench`` reading the local source, a schedule that only runs when
triggered, and an admin token.  ``Scheduler`` triggers the provider's full sync
through the scheduler API and waits for the run to end.  Every wait is bounded
by a ``Deadline``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
import yaml
from gunicorn_service import (
    HTTP_TIMEOUT,
    catalog_answers,
    free_port,
    last_lines,
    read_log,
    spawn_gunicorn,
    stop_process,
    wait_for_workers,
)

from benchmarks.frob_generator import ENV, FrobsSource

WORKERS = 4
TASK_ID = f"frobs-{ENV}:refresh"
NEVER = {"hours": 24}


class BenchTimeout(Exception):
    """A measurement ran past its time budget."""


@dataclass
class Deadline:
    """A point in time (monotonic) that a measurement must not pass."""

    at: float
    what: str

    @classmethod
    def after(cls, seconds: float, what: str) -> Deadline:
        return cls(time.monotonic() + seconds, what)

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def check(self) -> None:
        if self.passed():
            raise BenchTimeout(f"{self.what}: time budget exhausted")

    def sooner(self, seconds: float, what: str) -> Deadline:
        """This deadline or one ``seconds`` from now, whichever comes first."""
        other = Deadline.after(seconds, what)
        return other if other.at < self.at else Deadline(self.at, what)


def session() -> requests.Session:
    """A keep-alive client with no proxy from the environment."""
    client = requests.Session()
    client.trust_env = False
    return client


def write_config(
    folder: Path,
    source: FrobsSource,
    admin_token: str,
    task_timeout_s: float,
    store_url: str | None = None,
) -> Path:
    store = {"type": "file", "path": str(folder / "store")}
    if store_url is not None:
        store.update(type="postgres", url=store_url)
    config = {
        "events": {"http": {"topics": ["frobs"]}},
        "catalog": {
            "store": store,
            "providers": {
                "frobs": {
                    ENV: {
                        "dataUrl": source.url("/data"),
                        "itemUrl": source.url("/items/{id}"),
                        "previousStateUrl": source.url("/previous/{id}"),
                        "schedule": {
                            "frequency": NEVER,
                            "initialDelay": NEVER,
                            "timeout": {"seconds": int(task_timeout_s)},
                        },
                    }
                }
            },
        },
        "backend": {
            "reading": {"maxBytes": 1 << 30},
            "auth": {"adminToken": admin_token},
        },
    }
    path = folder / "app-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Gunicorn:
    """One ``gunicorn`` master and its workers, started from the repository root."""

    folder: Path
    config_path: Path
    app: str = "app:app"
    extra: tuple[str, ...] = ()
    workers: int = WORKERS
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / f"gunicorn-{self.port}.log"

    def start(self, deadline: Deadline, ready_path: str | None = None) -> None:
        self.process = spawn_gunicorn(
            self.config_path,
            self.port,
            self.log_path,
            self.workers,
            log_level="INFO",
            extra=self.extra,
            app=self.app,
        )
        while not self._answers(ready_path):
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited at startup:\n{self.log_tail()}")
            if deadline.passed():
                self.stop()
                raise BenchTimeout(f"gunicorn did not answer:\n{self.log_tail()}")
            time.sleep(0.1)
        self._wait_for_workers(deadline)

    def _answers(self, ready_path: str | None) -> bool:
        if ready_path is None:
            return catalog_answers(self.base_url, HTTP_TIMEOUT)
        try:
            requests.post(self.base_url + ready_path, json={}, timeout=HTTP_TIMEOUT)
            return True
        except requests.RequestException:
            return False

    def _wait_for_workers(self, deadline: Deadline) -> None:
        """Until gunicorn has forked every worker (and, for the service, every
        worker has built the app: ``wait_for_workers`` reads the log for it)."""
        while len(self.worker_pids()) < self.workers and not deadline.passed():
            time.sleep(0.05)
        if self.app == "app:app":
            wait_for_workers(self.log_path, self.workers, deadline.at)

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        return children_of(self.process.pid)

    def wait_until_idle(
        self, deadline: Deadline, window_s: float = 0.5, busy_share: float = 0.05
    ) -> float:
        """Wait until the workers together use less than ``busy_share`` of a core
        over ``window_s``: what the last step left them (catching up with a
        sync, indexing it) is done.  The seconds waited; best effort at the
        deadline."""
        began = time.perf_counter()
        used = self.cpu_seconds()
        while not deadline.passed():
            time.sleep(window_s)
            now = self.cpu_seconds()
            if now - used < busy_share * window_s:
                break
            used = now
        return time.perf_counter() - began

    def cpu_seconds(self) -> float:
        """User and system CPU time of every worker so far."""
        ticks = 0
        for pid in self.worker_pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory(self) -> dict:
        """VmHWM and VmRSS (MiB) of the master and of each worker."""
        master = proc_status_mib(self.process.pid)
        workers = {pid: proc_status_mib(pid) for pid in self.worker_pids()}
        peaks = [w["VmHWM"] for w in workers.values() if w.get("VmHWM") is not None]
        return {
            "master_vmhwm_mib": master.get("VmHWM"),
            "master_vmrss_mib": master.get("VmRSS"),
            "workers_vmhwm_mib": peaks,
            "workers_vmrss_mib": [w.get("VmRSS") for w in workers.values()],
            "max_worker_vmhwm_mib": max(peaks) if peaks else None,
        }

    def log_tail(self, lines: int = 40) -> str:
        return last_lines(read_log(self.log_path), lines)

    def errors_in_log(self) -> list[str]:
        """Log lines at ERROR or above, and worker timeouts or crashes."""
        marks = (" ERROR ", " CRITICAL ", "[ERROR]", "[CRITICAL]", "Traceback")
        return [
            line
            for line in read_log(self.log_path).splitlines()
            if any(mark in line for mark in marks)
        ]

    def stop(self) -> None:
        stop_process(self.process)


class Service(Gunicorn):
    """The real service on a fresh temp store, reading ``source``."""

    def __init__(
        self,
        folder: Path,
        source: FrobsSource,
        task_timeout_s: float,
        store_url: str | None = None,
    ) -> None:
        """On the file store, or on the PostgreSQL database at ``store_url``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.admin_token = secrets.token_urlsafe(16)
        config = write_config(
            folder, source, self.admin_token, task_timeout_s, store_url
        )
        super().__init__(folder=folder, config_path=config)

    def scheduler(self) -> Scheduler:
        return Scheduler(self.base_url, self.admin_token)


def floor_app(folder: Path, config_path: Path) -> Gunicorn:
    """The bare Flask app of ``floor_app.py`` under the same gunicorn settings."""
    return Gunicorn(
        folder=folder,
        config_path=config_path,
        app="floor_app:app",
        extra=("--pythonpath", str(Path(__file__).resolve().parent)),
    )


@dataclass
class SyncRun:
    trigger_to_end_s: float
    run_s: float | None
    observed_s: float
    outcome: str
    counts: dict


class Scheduler:
    """The provider's full sync, triggered through ``/.backstage/scheduler/v1``."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        self.url = base_url + "/.backstage/scheduler/v1"
        self.client = session()
        self.client.headers["Authorization"] = f"Bearer {admin_token}"

    def last_run(self) -> dict | None:
        response = self.client.get(self.url + "/tasks", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        for task in response.json()["tasks"]:
            if task["taskId"] == TASK_ID:
                return task.get("lastRun")
        raise RuntimeError(f"no task {TASK_ID} in {response.text[:300]}")

    def sync(self, deadline: Deadline) -> SyncRun:
        """Trigger a full sync and wait until its run has ended."""
        before = self.last_run()
        started_before = before["startedAt"] if before else None
        triggered_wall = time.time()
        triggered = time.monotonic()
        response = self.client.post(
            self.url + f"/tasks/{TASK_ID}/trigger", timeout=HTTP_TIMEOUT
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"trigger answered {response.status_code}: {response.text[:300]}"
            )
        while True:
            run = self.last_run()
            if run and run["startedAt"] != started_before and run["endedAt"]:
                observed = time.monotonic() - triggered
                break
            if deadline.passed():
                raise BenchTimeout(
                    f"{deadline.what}: the sync did not end in its time budget"
                )
            time.sleep(0.02)
        started = datetime.fromisoformat(run["startedAt"]).timestamp()
        ended = datetime.fromisoformat(run["endedAt"]).timestamp()
        return SyncRun(
            trigger_to_end_s=ended - triggered_wall,
            run_s=ended - started,
            observed_s=observed,
            outcome=run["outcome"],
            counts=run.get("counts") or {},
        )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def proc_status_mib(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a process, in MiB."""
    values: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return values
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = round(int(rest.split()[0]) / 1024, 1)
    return values
