"""Run the real service under gunicorn for the end-to-end tests.

What the tests that start ``gunicorn app:app`` as a child process share:

- ``free_port``: a free loopback port;
- ``gunicorn_command`` and ``gunicorn_options``: the command line (the
  ``--no-control-socket`` flag where this gunicorn knows it);
- ``service_env``: a clean environment for it (no gunicorn or port variables
  from outside, no proxies, ``NO_PROXY`` for the loopback, ``APP_CONFIG`` and
  ``LOG_LEVEL`` set);
- ``spawn_gunicorn``: start it from the repository root in its own session,
  its output going to a log file;
- ``wait_until_serving`` and ``wait_for_workers``: wait until it answers and
  every worker has built the app;
- ``stop_process``: SIGTERM, then SIGKILL for the whole process group;
- ``http``: one request over a new connection, with no proxy from the
  environment; ``catalog_answers``: whether the service answers yet;
- ``read_log`` and ``last_lines``: log files and their tails;
- ``show_logs_on_failure``: the body of a fixture that prints the logs of the
  services a failed test used;
- ``wait_until`` and ``explain``: polling a condition, describing a response.

Each test module keeps its own ``Service`` class, config and fixtures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
HTTP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_options() -> list[str]:
    """Keep newer gunicorns' control socket out of $HOME, where services collide."""
    from gunicorn.config import KNOWN_SETTINGS

    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


def gunicorn_command(
    port: int, workers: int, extra: Sequence[str] = (), app: str = "app:app"
) -> list[str]:
    """``gunicorn <app>`` (``app:app`` unless told) with ``workers`` workers on a
    loopback ``port``."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        *extra,
        *gunicorn_options(),
    ]


def service_env(config_path: Path, log_level: str = "INFO") -> dict[str, str]:
    env = dict(os.environ)
    for name in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "HOST", "PORT"):
        env.pop(name, None)
    for name in list(env):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env[name]
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["APP_CONFIG"] = str(config_path)
    env["LOG_LEVEL"] = log_level
    return env


def spawn_gunicorn(
    config_path: Path,
    port: int,
    log_path: Path,
    workers: int,
    *,
    log_level: str = "INFO",
    extra: Sequence[str] = (),
    append: bool = False,
    app: str = "app:app",
) -> subprocess.Popen:
    """Start gunicorn in a new session, stdout and stderr to ``log_path``.

    The log is truncated, or appended to with ``append``.  ``app`` is the WSGI
    app gunicorn serves (the benchmarks' floor app is another).
    """
    env = service_env(config_path, log_level)
    # Beside the log, not in /tmp: a master killed with -9 cannot remove it.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(log_path.parent / f"metrics-{port}")
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(
            gunicorn_command(port, workers, extra, app),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request over a new connection (so requests spread over the workers),
    with no proxy from the environment between the tests and the loopback."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, **kwargs)


def catalog_answers(base_url: str, timeout: float) -> bool:
    """Whether the service answers ``GET /api/catalog/entities`` with 200 now."""
    url = base_url + "/api/catalog/entities"
    try:
        return http("GET", url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def read_log(*paths: Path) -> str:
    """The text of the log files that exist, one after the other."""
    texts = []
    for path in paths:
        try:
            texts.append(path.read_text(errors="replace"))
        except FileNotFoundError:
            pass
    return "".join(texts)


def last_lines(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def wait_for_workers(log_path: Path, count: int, deadline: float) -> None:
    """Give every worker time to build the app, so requests can spread over them.

    Best effort: the log is read for gunicorn's "Booting worker" line and the
    ingress's "Registered" line of each worker; if they never show, go on.
    """
    while time.monotonic() < deadline:
        log = read_log(log_path)
        booted = set(re.findall(r"Booting worker with pid: (\d+)", log))
        ready = set(re.findall(r" (\d+) INFO \S+: Registered /api/events/", log))
        if len(booted) >= count and booted <= ready:
            return
        time.sleep(0.1)


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL for the whole process group if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def wait_until_serving(
    process: subprocess.Popen,
    base_url: str,
    log_path: Path,
    workers: int,
    timeout: float,
    log_tail: Callable[[], str],
) -> None:
    """Wait until gunicorn answers ``GET /api/catalog/entities`` and its workers
    are ready; if it exits or does not answer in ``timeout`` seconds, stop it and
    fail the test with ``log_tail()``."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            stop_process(process)
            pytest.fail(f"gunicorn exited at startup:\n{log_tail()}")
        if catalog_answers(base_url, HTTP_TIMEOUT):
            wait_for_workers(log_path, workers, deadline)
            return
        if time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"gunicorn did not answer in {timeout}s:\n{log_tail()}")
        time.sleep(0.2)


class Logged(Protocol):
    """What ``show_logs_on_failure`` needs of a service."""

    log_path: Path

    def running(self) -> bool: ...

    def log_tail(self) -> str: ...


def show_logs_on_failure(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    services: Sequence[Logged],
) -> Iterator[None]:
    """Fixture body: after a failed test, print the log of each service started
    during it or still running (``services`` lists every service started)."""
    failed_before = request.session.testsfailed
    known_before = len(services)
    yield
    if request.session.testsfailed == failed_before:
        return
    shown = [s for i, s in enumerate(services) if i >= known_before or s.running()]
    with capsys.disabled():
        for running in shown:
            print(f"\n--- gunicorn log ({running.log_path}) ---\n{running.log_tail()}")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.2)


def explain(response: requests.Response) -> str:
    return (
        f"{response.request.method} {response.url} -> {response.status_code}: "
        f"{response.text[:500]}"
    )


def stored_records(store_path: Path) -> dict[str, dict]:
    """The stored records by ref, read from the store's files without the store:
    every key file, then every commit in the log.  Fails on a file or line that
    is not whole JSON, and on a ref stored twice in one key file."""
    records: dict[str, dict] = {}
    for path in sorted((store_path / "entities").glob("*.json")):
        try:
            document = json.loads(path.read_bytes())
        except ValueError as exc:
            pytest.fail(f"{path} is not whole JSON: {exc}")
        refs = [e["ref"] for e in document["entities"]]
        assert len(refs) == len(set(refs)), f"{path} stores an entity twice"
        records.update((e["ref"], e) for e in document["entities"])
    for path in sorted((store_path / "log").glob("*.jsonl")):
        pending: dict[str, dict | None] = {}
        for line in path.read_bytes().splitlines():
            try:
                change = json.loads(line)
            except ValueError as exc:
                pytest.fail(f"{path} holds a line that is not whole JSON: {exc}")
            if "put" in change:
                pending[change["put"]["ref"]] = change["put"]
            elif "delete" in change:
                pending[change["delete"]] = None
            elif "commit" in change:
                for ref, record in pending.items():
                    if record is None:
                        records.pop(ref, None)
                    else:
                        records[ref] = record
                pending = {}
    return records
