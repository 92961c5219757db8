"""Fault injection, end to end: the real service under gunicorn, hurt on purpose.

SPEC section 8 ("Nothing lost") is what these tests pin, against ``gunicorn
app:app`` with 3 workers on a free loopback port, fed by a Frobs stand-in
(pytest-httpserver) whose documents the tests set and which can fail or hang on
demand:

- a burst of add/modify/delete webhooks survives ``kill -9`` of single workers
  and of the whole server (master and workers): afterwards every store file is
  whole JSON, there is no dead letter, every accepted event was delivered, and
  the catalog is exactly what the source says, on the file store and on the
  PostgreSQL store (when a database is reachable);
- a source that fails every other request still ends with every event applied;
- a frob whose source always fails makes exactly one dead letter, which the
  admin can replay once the source is fixed (on both stores);
- a one-second schedule never runs two syncs at once, across workers and across
  a ``kill -9`` of the worker that runs it, and a sync that hangs is abandoned and
  reported as timed out.

The oracle of the burst test: every event re-reads the frob from the source, and
the source is changed before each webhook is sent (the document set for an add
or modify, the frob removed before its delete), so the source's final state is
the truth the catalog must reach.  The sender behaves like a real webhook sender:
a delivery that got no 202 (connection refused or reset by a kill) is sent again
with the same ``X-Request-Id``, the service's delivery id, until it gets 202.
Without that, an event cut off by a kill is undecidable: it may have reached the
inbox (and be applied later) or not.

Set ``FAULT_SEED`` to replay a run's random choices (histories, kill moments).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml
from frob_sources import (
    api_frob,
    component_frob,
    json_response,
    serve_frobs,
    set_or_drop,
)
from gunicorn_service import (
    HTTP_TIMEOUT,
    catalog_answers,
    explain,
    free_port,
    http,
    last_lines,
    read_log,
    spawn_gunicorn,
    stop_process,
    stored_records,
    wait_for_workers,
    wait_until,
)
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

ENV = "fault"
PROVIDER = f"frobs-{ENV}"
TASK_ID = f"{PROVIDER}:refresh"
ADMIN_TOKEN = "fault-injection-admin-token"
ID_ANNOTATION = "frobs.example.com/id"
WORKERS = 3
START_TIMEOUT = 30.0
NEVER = {"hours": 1}
FROBS_PATH = "/api/events/http/frobs"
NO_SYNC = {"initialDelay": NEVER, "frequency": NEVER}


def seed_for(test: str) -> int:
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().getrandbits(32))
    print(f"{test}: FAULT_SEED={seed}")
    return seed


# The Frobs service stand-in


@dataclass
class SourceRequest:
    path: str
    kind: str  # "data", "items", "previous" or "other"
    frob_id: str | None
    started: float  # time.time()
    ended: float
    status: int
    hung: bool = False


class FrobsSource:
    """The Frobs service: documents held in dicts, changeable at any time.

    Paths: ``/<env>/data`` (the listing), ``/<env>/items/<id>`` and
    ``/<env>/previous/<id>``; anything not set answers 404, as a gone frob does.
    It can fail on demand (``fail_every_other``: every other request answers
    500; ``fail_ratio``: that share of the item and previous-state requests, at
    random, answers 500; ``always_fail``: these frobs' items answer 500) and hang
    (the n-th ``/data`` request, counted from 0, in ``hang_data`` sleeps
    ``hang_seconds`` and then serves ``hang_listing``).  Every request is
    recorded with its start and end times and its status.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, list[dict]] = {}
        self._previous: dict[str, list[dict]] = {}
        self._listing: list[dict] | None = None
        self.fail_every_other = False
        self.fail_ratio = 0.0
        self._dice = random.Random()
        self.always_fail: set[str] = set()
        self.hang_data: set[int] = set()
        self.hang_seconds = 5.0
        self.hang_listing: list[dict] | None = None
        self._served = 0
        self._data_served = 0
        self._in_flight = 0
        self._log: list[SourceRequest] = []

    def set_item(self, frob_id: str, frobs: list[dict] | None) -> None:
        with self._lock:
            set_or_drop(self._items, frob_id, frobs)

    def set_previous(self, frob_id: str, frobs: list[dict] | None) -> None:
        with self._lock:
            set_or_drop(self._previous, frob_id, frobs)

    def set_listing(self, frobs: list[dict] | None) -> None:
        with self._lock:
            self._listing = frobs

    def item(self, frob_id: str) -> list[dict] | None:
        with self._lock:
            return self._items.get(frob_id)

    def requests(self) -> list[SourceRequest]:
        with self._lock:
            return list(self._log)

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def handle(self, request: Request) -> Response:
        started = time.time()
        parts = request.path.strip("/").split("/")
        kind, frob_id = "other", None
        if len(parts) == 2 and parts[0] == ENV and parts[1] == "data":
            kind = "data"
        elif len(parts) == 3 and parts[0] == ENV and parts[1] in ("items", "previous"):
            kind, frob_id = parts[1], parts[2]
        with self._lock:
            number = self._served
            self._served += 1
            self._in_flight += 1
            fail = (
                (self.fail_every_other and number % 2 == 1)
                or (kind == "items" and frob_id in self.always_fail)
                or (
                    kind in ("items", "previous")
                    and self._dice.random() < self.fail_ratio
                )
            )
            hang = False
            if kind == "data":
                hang = self._data_served in self.hang_data
                self._data_served += 1
                frobs = self.hang_listing if hang else self._listing
            elif kind == "items":
                frobs = self._items.get(frob_id)
            elif kind == "previous":
                frobs = self._previous.get(frob_id)
            else:
                frobs = None
        if hang:
            time.sleep(self.hang_seconds)
        if fail:
            status, body = 500, {"message": "the Frobs service failed (on purpose)"}
        elif request.method != "GET" or frobs is None:
            status, body = 404, {"message": f"no frob at {request.path}"}
        else:
            status, body = 200, {"frobs": frobs}
        with self._lock:
            self._in_flight -= 1
            self._log.append(
                SourceRequest(
                    request.path, kind, frob_id, started, time.time(), status, hang
                )
            )
        return json_response(body, status)


component = partial(component_frob, owner="team-faults")
api = partial(api_frob, owner="team-faults", spec_title="f")


def versioned(frob_id: str, version: int, with_api: bool) -> list[dict]:
    """A frob's document at a version: the version is in every entity it gives.

    The API keeps its name across versions on purpose: a modify that renames an
    entity relies on the source's previous state to remove the old name, and a
    modify skipped because a newer event of its frob was handled first (its
    first delivery failed and was retried late) never removes it; the catalog
    then keeps the old name until the next full sync.  That is a known gap of the
    previous-state contract, not what these tests measure.
    """
    label = {"version": str(version)}
    frobs = [
        component(frob_id, description=f"{frob_id} version {version}", labels=label)
    ]
    if with_api:
        frobs.append(api(frob_id, f"{frob_id}-api", labels=label))
    return frobs


@pytest.fixture
def source() -> FrobsSource:
    return FrobsSource()


@pytest.fixture
def frobs_server(source: FrobsSource):
    yield from serve_frobs(source.handle)


# The service under test


@dataclass
class Service:
    """A ``gunicorn app:app`` on a fixed port and store, restartable."""

    folder: Path
    config_path: Path
    port: int
    database_url: str | None = None  # the PostgreSQL store's, if it is used
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_paths: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_path(self) -> Path:
        return self.folder / "store"

    @property
    def log_path(self) -> Path:
        return self.log_paths[-1]

    def stored_refs(self) -> set[str]:
        """The refs stored, read without the service: files, or database rows."""
        if self.database_url is None:
            return set(stored_records(self.store_path))
        with psycopg.connect(self.database_url) as connection:
            rows = connection.execute("SELECT ref FROM catalog_entities").fetchall()
        return {ref for (ref,) in rows}

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return http(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def event(
        self, event_type: str, frob_id: str, request_id: str
    ) -> requests.Response:
        return self.post(
            FROBS_PATH,
            json={"type": event_type, "id": frob_id},
            headers={"X-Request-Id": request_id},
        )

    def send(self, event_type: str, frob_id: str) -> str:
        request_id = f"{event_type}-{frob_id}-{uuid.uuid4().hex}"
        response = self.event(event_type, frob_id, request_id)
        assert response.status_code == 202, explain(response)
        assert response.json() == {"status": "accepted"}, explain(response)
        return request_id

    def entities(self) -> list[dict]:
        response = self.get("/api/catalog/entities")
        assert response.status_code == 200, explain(response)
        return response.json()

    def entity(self, kind: str, name: str) -> dict | None:
        response = self.get(f"/api/catalog/entities/by-name/{kind}/default/{name}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, explain(response)
        return response.json()

    def dead_letters(self) -> list[dict]:
        response = self.get("/api/events/dead-letters")
        assert response.status_code == 200, explain(response)
        return response.json()["items"]

    def log_text(self) -> str:
        return read_log(*self.log_paths)

    def log_tail(self, lines: int = 60) -> str:
        return last_lines(self.log_text(), lines)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def workers(self) -> list[int]:
        """The pids of the master's live children (its workers)."""
        if not self.running():
            return []
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            return []
        return [int(c) for c in children if _alive(int(c))]

    def inbox(self) -> list[dict]:
        """The entries waiting in the inbox, read without the service."""
        return self._entries(dead=False)

    def dead(self) -> list[dict]:
        return self._entries(dead=True)

    def is_done(self, request_id: str) -> bool:
        """Whether the delivery id is marked done: every subscriber had the event."""
        key = f"frobs\0{request_id}"
        if self.database_url is not None:
            with psycopg.connect(self.database_url) as connection:
                row = connection.execute(
                    "SELECT 1 FROM event_done WHERE key = %s",
                    (hashlib.sha256(key.encode()).hexdigest(),),
                ).fetchone()
            return row is not None
        digest = hashlib.sha256(key.encode()).hexdigest()[:40]
        return (self.store_path / "events" / "done" / digest).exists()

    def _entries(self, dead: bool) -> list[dict]:
        if self.database_url is not None:
            with psycopg.connect(self.database_url) as connection:
                rows = connection.execute(
                    "SELECT entry::text FROM event_inbox WHERE dead = %s", (dead,)
                ).fetchall()
            return [json.loads(text) for (text,) in rows]
        folder = self.store_path / "events" / ("dead" if dead else "inbox")
        entries = []
        for path in _json_files(folder):
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                    inode = os.fstat(handle.fileno()).st_ino
                entries.append(json.loads(data))
            except FileNotFoundError:
                continue  # delivered meanwhile
            except ValueError:
                # Delivered as it was read: its file was retired, emptied and
                # perhaps reused (a spare file), and is no longer at ``path``.
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_ino == inode:
                        raise
        return entries


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False  # gone as it was read (a process just killed: ESRCH)
    return state not in ("Z", "X")


def _json_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".json"))


def service_config(
    folder: Path,
    server: HTTPServer,
    schedule: dict,
    retry: dict | None = None,
    admin_token: str | None = None,
    database_url: str | None = None,
) -> dict:
    base = f"http://127.0.0.1:{server.port}/{ENV}"
    events: dict[str, Any] = {"http": {"topics": ["frobs"]}}
    if retry:
        events["retry"] = retry
    config: dict[str, Any] = {
        "events": events,
        "catalog": {
            "store": {"type": "file", "path": str(folder / "store")},
            "providers": {
                "frobs": {
                    ENV: {
                        "dataUrl": f"{base}/data",
                        "itemUrl": f"{base}/items/{{id}}",
                        "previousStateUrl": f"{base}/previous/{{id}}",
                        "schedule": {"timeout": {"seconds": 30}, **schedule},
                    }
                }
            },
        },
    }
    if admin_token:
        config["backend"] = {"auth": {"adminToken": admin_token}}
    if database_url:
        config["catalog"]["store"].update(type="postgres", url=database_url)
    return config


def launch(service: Service) -> Service:
    """Start (or start again) gunicorn for ``service``; wait until it answers."""
    assert not service.running()
    log_path = service.folder / f"gunicorn-{len(service.log_paths) + 1}.log"
    service.log_paths.append(log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        service.process = spawn_gunicorn(
            service.config_path, service.port, log_path, WORKERS, append=True
        )
        while service.running():
            if catalog_answers(service.base_url, timeout=2):
                wait_for_workers(log_path, WORKERS, deadline)
                return service
            if time.monotonic() > deadline:
                stop(service)
                pytest.fail(f"gunicorn did not answer in time:\n{service.log_tail()}")
            time.sleep(0.1)
        # It exited: on a restart the port may be busy for a moment; try again.
        if time.monotonic() > deadline or "Address already in use" not in (
            log_path.read_text(errors="replace")
        ):
            pytest.fail(f"gunicorn exited at startup:\n{service.log_tail()}")
        time.sleep(0.5)


def stop(service: Service) -> None:
    """SIGTERM, then SIGKILL for the whole process group if it lingers."""
    stop_process(service.process)


def kill_everything(service: Service) -> None:
    """``kill -9`` the master and its workers at once (one process group)."""
    process = service.process
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        if not any(_alive(pid) for pid in _group_members(process.pid)):
            return
        time.sleep(0.05)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, IndexError):
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


@pytest.fixture
def services(request, tmp_path: Path, frobs_server: HTTPServer):
    """Start services for a test; always stopped; their logs shown on failure."""
    started: list[Service] = []

    def start(schedule: dict, store: str = "file", **options: Any) -> Service:
        folder = tmp_path / f"service-{len(started) + 1}"
        folder.mkdir()
        config_path = folder / "app-config.yaml"
        url = request.getfixturevalue("postgres_url") if store == "postgres" else None
        config = service_config(
            folder, frobs_server, schedule, database_url=url, **options
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        service = Service(folder, config_path, free_port(), url)
        started.append(service)
        return launch(service)

    failed_before = request.session.testsfailed
    yield start
    for service in started:
        stop(service)
    if request.session.testsfailed != failed_before:
        for service in started:
            print(f"\n--- gunicorn log ({service.log_path}) ---\n{service.log_tail()}")


def every_store_file_is_json(service: Service) -> int:
    """Parse every ``*.json`` under the store (entities, inbox, dead letters...)."""
    parsed = 0
    for path in sorted(service.store_path.rglob("*.json")):
        try:
            json.loads(path.read_bytes())
        except ValueError as exc:
            pytest.fail(f"{path} is not whole JSON: {exc}")
        parsed += 1
    assert service.stored_refs(), "the store holds no entity"
    return parsed


def ref_of(entity: dict) -> str:
    metadata = entity["metadata"]
    return f"{entity['kind']}:{metadata['namespace']}/{metadata['name']}".lower()


# 1. A burst under kill -9


FROB_COUNT = 300
MIN_EVENTS = 1050
CLIENTS = 16
WORKER_KILLS = 3
SEND_DEADLINE = 90.0  # seconds one event may take to get its 202, retries included
SOURCE_FAILURES = 0.1  # share of item and previous-state reads that answer 500


@dataclass
class Event:
    frob: str
    type: str
    version: int | None  # the document version the source holds when it is sent
    request_id: str
    attempts: int = 0
    accepted: bool = False
    duplicate: bool = False
    failures: list[str] = field(default_factory=list)


def histories(rng: random.Random) -> dict[str, list[Event]]:
    """Each frob: add, maybe modifies, maybe a delete, maybe added again after it."""
    steps: dict[str, list[str]] = {}
    for n in range(FROB_COUNT):
        frob = f"burst-{n:03d}"
        plan = ["add"] + ["modify"] * rng.choice([0, 1, 1, 2, 3])
        if rng.random() < 0.35:
            plan.append("delete")
            if rng.random() < 0.4:
                plan += ["add"] + ["modify"] * rng.choice([0, 1])
        steps[frob] = plan
    while sum(map(len, steps.values())) < MIN_EVENTS:
        frob = rng.choice(sorted(steps))
        if steps[frob][-1] != "delete":
            steps[frob].append("modify")

    planned = {}
    for frob, plan in steps.items():
        version, events = 0, []
        for step in plan:
            if step != "delete":
                version += 1
            events.append(
                Event(
                    frob,
                    step,
                    None if step == "delete" else version,
                    f"{frob}-{len(events)}-{step}-{uuid.uuid4().hex[:12]}",
                )
            )
        planned[frob] = events
    return planned


def expected_catalog(
    planned: dict[str, list[Event]], source: FrobsSource
) -> dict[str, set[tuple[str, str, str]]]:
    """What the accepted events imply: (kind, name, version) per frob.

    A frob is in the catalog iff the source has it at the end and at least one
    accepted add or modify of it came after its last accepted delete; then its
    entities are those of the source's (final) document.
    """
    expected = {}
    for frob, events in planned.items():
        accepted = [e for e in events if e.accepted]
        deletes = [i for i, e in enumerate(accepted) if e.type == "delete"]
        after = accepted[deletes[-1] + 1 :] if deletes else accepted
        document = source.item(frob)
        if document is not None and any(e.type != "delete" for e in after):
            expected[frob] = {
                (f["kind"], f.get("name") or f["id"], f["labels"]["version"])
                for f in document
            }
    return expected


@pytest.mark.parametrize("store", ["file", "postgres"])
def test_a_burst_survives_kill_9_of_workers_and_of_the_whole_server(
    services, source: FrobsSource, store: str
):
    rng = random.Random(seed_for("burst"))
    service = services(
        NO_SYNC,
        store,
        retry={
            "maxAttempts": 20,
            "initialDelay": {"milliseconds": 200},
            "maxDelay": {"seconds": 2},
        },
    )
    # Some reads fail, so that accepted events wait in the inbox for a retry
    # when the kills come.
    source.fail_ratio = SOURCE_FAILURES
    planned = histories(rng)
    with_api = {frob: n % 3 == 0 for n, frob in enumerate(sorted(planned))}
    events = [e for frob_events in planned.values() for e in frob_events]
    total = len(events)

    lock = threading.Lock()
    statuses: Counter = Counter()  # every HTTP answer or error kind, per request
    accepted_count = [0]
    left_by_crash: list[dict] = []  # inbox entries found after the whole kill
    files_at_crash: list[int] = []

    def send(event: Event) -> None:
        deadline = time.monotonic() + SEND_DEADLINE
        while True:
            event.attempts += 1
            try:
                response = service.event(event.type, event.frob, event.request_id)
                outcome = str(response.status_code)
            except requests.RequestException as exc:
                response, outcome = None, type(exc).__name__
            with lock:
                statuses[outcome] += 1
            if response is not None and response.status_code == 202:
                body = response.json()
                event.duplicate = bool(body.get("duplicate"))
                event.accepted = True
                with lock:
                    accepted_count[0] += 1
                return
            event.failures.append(outcome)
            if time.monotonic() > deadline or given_up.is_set():
                return  # never accepted: reported below
            time.sleep(rng_local().uniform(0.05, 0.3))

    local = threading.local()
    # Set when the test fails while the clients send: they stop at once
    # instead of retrying every event until its deadline.
    given_up = threading.Event()

    def rng_local() -> random.Random:
        if not hasattr(local, "rng"):
            local.rng = random.Random(rng.random())
        return local.rng

    def play(event: Event, previous: list[dict] | None) -> list[dict] | None:
        """Change the source as the event says, then send the event."""
        if event.type == "delete":
            source.set_item(event.frob, None)
            document = None
        else:
            document = versioned(event.frob, event.version, with_api[event.frob])
            if event.type == "modify":
                source.set_previous(event.frob, previous)
            source.set_item(event.frob, document)
        send(event)
        return document

    frobs = sorted(planned)
    rng.shuffle(frobs)
    shares = [frobs[n::CLIENTS] for n in range(CLIENTS)]
    client_seeds = [rng.random() for _ in range(CLIENTS)]

    def client(n: int) -> None:
        """Interleave this client's frobs; one frob's events go in order."""
        pick = random.Random(client_seeds[n])
        pending = {frob: list(planned[frob]) for frob in shares[n]}
        current: dict[str, list[dict] | None] = {}
        while pending and not given_up.is_set():
            frob = pick.choice(sorted(pending))
            event = pending[frob].pop(0)
            current[frob] = play(event, current.get(frob))
            if not pending[frob]:
                del pending[frob]

    worker_kills_at = sorted(rng.uniform(0.06, 0.45) for _ in range(WORKER_KILLS))
    server_kill_at = rng.uniform(0.55, 0.8)
    kills: list[str] = []
    started = time.monotonic()

    def wait_for_progress(fraction: float) -> None:
        wait_until(
            lambda: accepted_count[0] >= fraction * total,
            120,
            f"{fraction:.0%} of the events are accepted",
        )
        time.sleep(rng.uniform(0, 0.5))

    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(client, n) for n in range(CLIENTS)]
        try:
            for fraction in worker_kills_at:
                wait_for_progress(fraction)
                workers = wait_until(
                    lambda: len(service.workers()) == WORKERS and service.workers(),
                    20,
                    f"gunicorn runs {WORKERS} workers again",
                )
                victim = rng.choice(workers)
                os.kill(victim, signal.SIGKILL)
                kills.append(
                    f"worker {victim} at {accepted_count[0]}/{total} accepted, "
                    f"{time.monotonic() - started:.1f}s"
                )
                wait_until(
                    lambda victim=victim: (
                        victim not in service.workers()
                        and len(service.workers()) == WORKERS
                    ),
                    20,
                    f"gunicorn replaces worker {victim}",
                )

            wait_for_progress(server_kill_at)
            master = service.process.pid
            kill_everything(service)
            kills.append(
                f"master {master} and its workers at {accepted_count[0]}/{total} "
                f"accepted, {time.monotonic() - started:.1f}s"
            )
            # What the crash left: whole files only, and entries to finish.
            files_at_crash.append(every_store_file_is_json(service))
            left_by_crash.extend(service.inbox())
            time.sleep(rng.uniform(0.3, 2.0))
            launch(service)
        except BaseException:
            given_up.set()
            raise
        finally:
            for future in clients:
                future.result()
    sent_in = time.monotonic() - started

    never = [e for e in events if not e.accepted]
    assert not never, (
        f"{len(never)} events never got 202 in {SEND_DEADLINE}s of retries: "
        f"{[(e.request_id, e.failures[-3:]) for e in never[:5]]}"
    )
    unexpected = {
        s: n for s, n in statuses.items() if s not in ("202",) and s.isdigit()
    }
    assert not unexpected, f"the ingress answered other than 202: {unexpected}"

    # Wait until nothing is left to deliver: the inbox is empty.
    wait_until(
        lambda: not service.inbox(),
        60,
        "the inbox is empty (every accepted event delivered or dead)",
    )
    settled_in = time.monotonic() - started

    files = every_store_file_is_json(service)
    assert not service.dead(), [e["id"] for e in service.dead()]
    assert service.dead_letters() == []

    # Every accepted delivery id was delivered to every subscriber.
    undelivered = [e.request_id for e in events if not service.is_done(e.request_id)]
    assert not undelivered, f"accepted but never delivered: {undelivered[:10]}"

    # The catalog is exactly what the source says (see expected_catalog).
    expected = expected_catalog(planned, source)
    served = service.entities()
    actual: dict[str, set[tuple[str, str, str]]] = {}
    provenance: dict[str, set[str]] = {}
    for entity in served:
        metadata = entity["metadata"]
        frob = metadata["annotations"][ID_ANNOTATION]
        actual.setdefault(frob, set()).add(
            (entity["kind"], metadata["name"], metadata["labels"]["version"])
        )
        provenance.setdefault(frob, set()).add(metadata["provenance"].get("deliveryId"))
    wrong = {
        frob: {"expected": sorted(expected.get(frob, ())), "served": sorted(got)}
        for frob in sorted(set(expected) | set(actual))
        if expected.get(frob, set()) != (got := actual.get(frob, set()))
    }
    assert not wrong, (
        f"{len(wrong)} frobs differ from the source, e.g. "
        f"{dict(list(wrong.items())[:5])}; histories: "
        f"{[(e.type, e.version, e.attempts) for e in planned[next(iter(wrong))]]}"
    )
    # Each entity was last written by an event of its own frob.
    strangers = {
        frob: ids
        for frob, ids in provenance.items()
        if not ids <= {e.request_id for e in planned[frob]}
    }
    assert not strangers, strangers

    served_refs = {ref_of(e) for e in served}
    assert served_refs == service.stored_refs()

    # The premises: the crash left accepted events to finish, and they were.
    assert len(kills) == WORKER_KILLS + 1
    assert left_by_crash, "the whole-server kill left nothing in the inbox"
    waiting = [e for e in left_by_crash if e["next_attempt_at"] is not None]
    for entry in left_by_crash:
        assert service.is_done(entry["metadata"]["x-request-id"]), entry
    log = service.log_text()
    retries = len(re.findall(r"will be retried in", log))
    assert retries, "no delivery failed, so nothing was retried"

    source_answers = Counter(r.status for r in source.requests())
    print(
        f"burst: {total} events for {FROB_COUNT} frobs "
        f"({dict(Counter(e.type for e in events))}), "
        f"{sum(statuses.values())} HTTP requests; answers {dict(statuses)}; "
        f"{sum(e.duplicate for e in events)} 202s said duplicate (delivery "
        f"already done); {sum(e.attempts > 1 for e in events)} events needed more "
        f"than one send; kills: {kills}; the whole kill left "
        f"{len(left_by_crash)} inbox entries ({len(waiting)} waiting for a retry) "
        f"and {files_at_crash[0]} JSON files, all whole; "
        f"source answers {dict(source_answers)}, {retries} delivery retries "
        f"logged; sent in {sent_in:.1f}s, inbox empty at {settled_in:.1f}s; "
        f"{len(served)} entities of {len(expected)} frobs; {files} JSON files at "
        "the end"
    )


# 2. A source that fails every other request


def test_a_source_that_fails_half_its_requests_still_ends_with_every_event_applied(
    services, source: FrobsSource
):
    service = services(
        NO_SYNC,
        retry={
            "maxAttempts": 20,
            "initialDelay": {"milliseconds": 100},
            "maxDelay": {"seconds": 1},
        },
    )
    frobs = [f"flaky-{n:03d}" for n in range(100)]
    for frob in frobs:
        source.set_item(frob, versioned(frob, 1, with_api=False))
    source.fail_every_other = True

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        request_ids = list(pool.map(lambda frob: service.send("add", frob), frobs))
    wait_until(lambda: not service.inbox(), 60, "every event is delivered")
    settled_in = time.monotonic() - started

    assert service.dead_letters() == []
    assert not service.dead()
    undelivered = [r for r in request_ids if not service.is_done(r)]
    assert not undelivered, undelivered
    served = {
        e["metadata"]["name"]: e for e in service.entities() if e["kind"] == "Component"
    }
    assert sorted(served) == frobs
    for frob, entity in served.items():
        assert entity["metadata"]["description"] == f"{frob} version 1"
        assert entity["metadata"]["annotations"][ID_ANNOTATION] == frob
    every_store_file_is_json(service)

    # The premise: the source really failed every other request, and the
    # events that met a failure were retried until they got through.
    reads = [r for r in source.requests() if r.kind == "items"]
    failed = [r for r in reads if r.status == 500]
    assert abs(len(failed) - len(reads) / 2) <= 1, Counter(r.status for r in reads)
    assert len(failed) >= 50
    for frob in frobs:
        answers = [r.status for r in reads if r.frob_id == frob]
        assert answers[-1] == 200 and set(answers[:-1]) <= {500}, (frob, answers)
    retries = len(re.findall(r"will be retried in", service.log_text()))
    assert retries == len(failed)
    most = max(Counter(r.frob_id for r in failed).values())
    print(
        f"flaky source: {len(frobs)} adds, all 202; {len(reads)} item reads, "
        f"{len(failed)} answered 500 ({retries} retries, at most {most} failures "
        f"for one frob); all applied {settled_in:.1f}s after the first send"
    )


# 3. A frob that always fails: one dead letter, replayed


@pytest.mark.parametrize("store", ["file", "postgres"])
def test_one_frob_that_always_fails_makes_exactly_one_dead_letter_and_replay_applies_it(
    services, source: FrobsSource, store: str
):
    service = services(
        NO_SYNC,
        store,
        retry={
            "maxAttempts": 3,
            "initialDelay": {"milliseconds": 100},
            "maxDelay": {"seconds": 1},
        },
        admin_token=ADMIN_TOKEN,
    )
    healthy = [f"healthy-{n}" for n in range(5)]
    for frob in healthy + ["doomed"]:
        source.set_item(frob, versioned(frob, 1, with_api=False))
    source.always_fail.add("doomed")

    doomed = service.send("add", "doomed")
    for frob in healthy:
        service.send("add", frob)
    wait_until(service.dead_letters, 30, "the doomed event is a dead letter")
    time.sleep(2.5)  # long enough for any further attempt or letter to show

    letters = service.dead_letters()
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter["deliveryId"] == doomed
    assert letter["topic"] == "frobs"
    assert letter["payload"] == {"type": "add", "id": "doomed"}
    assert letter["metadata"]["x-request-id"] == doomed
    assert letter["failedSubscribers"] == [PROVIDER]
    attempts = letter["attempts"]
    assert len(attempts) == 3, attempts
    for attempt in attempts:
        assert attempt["subscriber"] == PROVIDER, attempt
        assert "ReadFailed" in attempt["error"], attempt
        assert f"/{ENV}/items/doomed answered 500" in attempt["error"], attempt
    assert [a["at"] for a in attempts] == sorted(a["at"] for a in attempts)
    reads = [r for r in source.requests() if r.frob_id == "doomed"]
    assert [r.status for r in reads] == [500, 500, 500], "not exactly 3 attempts"
    assert len(service.dead()) == 1 and not service.inbox()
    assert re.search(
        rf"is a dead letter: {PROVIDER} failed 3 times", service.log_text()
    ), "the dead letter was not logged"
    assert service.entity("component", "doomed") is None
    for frob in healthy:
        assert service.entity("component", frob) is not None, frob

    # Replay needs the admin token.
    replay = "/api/events/dead-letters/replay"
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        refused = service.post(replay, json={"ids": [letter["id"]]}, headers=headers)
        assert refused.status_code == 401, explain(refused)
        assert refused.json()["error"]["name"] == "AuthenticationError"
    assert len(service.dead_letters()) == 1
    assert len([r for r in source.requests() if r.frob_id == "doomed"]) == 3

    # The source is fixed; replay delivers it at once.
    source.always_fail.discard("doomed")
    replayed = service.post(
        replay,
        json={"ids": [letter["id"]]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert replayed.status_code == 200, explain(replayed)
    assert replayed.json() == {"items": [{"id": letter["id"], "outcome": "delivered"}]}
    entity = service.entity("component", "doomed")
    assert entity is not None, "the replayed event was not applied"
    assert entity["metadata"]["description"] == "doomed version 1"
    assert entity["metadata"]["provenance"]["deliveryId"] == doomed
    assert service.dead_letters() == []
    assert not service.dead() and not service.inbox()
    assert service.is_done(doomed)

    again = service.post(replay, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert again.status_code == 200, explain(again)
    assert again.json() == {"items": []}
    every_store_file_is_json(service)
    print(
        f"dead letter: 1 of {len(healthy) + 1} events, after 3 attempts "
        f"({attempts[-1]['error']}); 401 without and with a wrong token; "
        f"replayed: delivered"
    )


# 4. A one-second schedule: never two runs at once; a hanging run abandoned


RUN_SECONDS = 55.0
HANGS = {3, 12, 22}  # these /data requests (counted from 0) hang
HANG_SECONDS = 5.0
TIMEOUT_SECONDS = 2.0

_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\d+) \w+ \S+: (.*)$", re.MULTILINE
)


@dataclass
class Run:
    pid: int
    started: float
    ended: float | None = None
    outcome: str | None = None


def runs_in_log(log: str, task_id: str) -> tuple[list[Run], list[str]]:
    """Each run of the task from its "started" and "<outcome> in" lines."""
    open_runs: dict[int, Run] = {}
    runs, other = [], []
    ended = re.compile(
        rf"Task {re.escape(task_id)} (succeeded|failed|timed out|refused) in "
    )
    for stamp, pid_text, message in _LOG_LINE.findall(log):
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        pid = int(pid_text)
        if message == f"Task {task_id} started":
            assert pid not in open_runs, f"worker {pid} started a run twice: {message}"
            open_runs[pid] = Run(pid, when)
            runs.append(open_runs[pid])
        elif match := ended.match(message):
            run = open_runs.pop(pid, None)
            assert run is not None, f"worker {pid} ended a run it never started"
            run.ended, run.outcome = when, match.group(1)
        elif f"Task {task_id}" in message:
            other.append(message)
    return runs, other


def test_a_one_second_schedule_never_overlaps_runs_and_a_hanging_sync_is_abandoned(
    services, source: FrobsSource
):
    listing = [component(f"sched-{n}") for n in range(3)]
    source.set_listing(listing)
    source.hang_data = set(HANGS)
    source.hang_seconds = HANG_SECONDS
    source.hang_listing = listing + [component("from-abandoned-run")]
    service = services(
        {
            "frequency": {"seconds": 1},
            "timeout": {"seconds": TIMEOUT_SECONDS},
            "initialDelay": {"seconds": 1},
        }
    )
    started = time.time()
    observed: list[tuple[float, str, dict | None]] = []
    killed: tuple[int, float] | None = None

    def all_hangs_over() -> bool:
        hung = [r for r in source.requests() if r.hung]
        return len(hung) == len(HANGS)

    while time.time() - started < RUN_SECONDS or not all_hangs_over():
        assert time.time() - started < RUN_SECONDS + 30, "the hangs never all came"
        response = service.get("/.backstage/scheduler/v1/tasks")
        assert response.status_code == 200, explain(response)
        (task,) = [t for t in response.json()["tasks"] if t["taskId"] == TASK_ID]
        now = time.time()
        observed.append((now, task["taskState"]["status"], task["lastRun"]))
        last = task["lastRun"]
        if (
            killed is None
            and now - started > RUN_SECONDS * 0.4
            and task["taskState"]["status"] == "idle"
            and last is not None
            and last["outcome"] == "succeeded"
            and now - datetime.fromisoformat(last["endedAt"]).timestamp() < 0.5
            and source.in_flight() == 0
        ):
            # Kill the worker that runs the tasks, between two runs.
            leaders = re.findall(
                r"Worker (\d+) runs the scheduled tasks", service.log_text()
            )
            leader = int(leaders[-1])
            assert leader in service.workers(), (leader, service.workers())
            os.kill(leader, signal.SIGKILL)
            killed = (leader, time.time())
        time.sleep(0.2)
    catalog = {e["metadata"]["name"] for e in service.entities()}
    stop(service)
    wait_until(lambda: source.in_flight() == 0, 10, "the stand-in is idle")
    stopped = time.time()
    assert killed is not None, "no moment to kill the leader between two runs"

    # 1. The source never saw two listing reads at once, hangs included.
    data = sorted(
        (r for r in source.requests() if r.kind == "data"), key=lambda r: r.started
    )
    for before, after in itertools.pairwise(data):
        assert after.started >= before.ended, (
            f"listing read at {after.started:.3f} began before the one at "
            f"{before.started:.3f} ended ({before.ended:.3f})"
        )
    hung = [r for r in data if r.hung]
    assert len(hung) == len(HANGS)

    # 2. The log: each run starts after the previous one ended, in any worker.
    log = service.log_text()
    runs, others = runs_in_log(log, TASK_ID)
    for run in runs:
        if run.ended is None:
            assert run.pid == killed[0] or run is runs[-1], run
            run.ended = killed[1] if run.pid == killed[0] else stopped
            run.outcome = "killed" if run.pid == killed[0] else "stopped"
    runs.sort(key=lambda r: r.started)
    for before, after in itertools.pairwise(runs):
        assert after.started >= before.ended, (
            f"a run in worker {after.pid} started at {after.started:.3f}, before "
            f"the run in worker {before.pid} ended at {before.ended:.3f}"
        )
    leaders = re.findall(r"Worker (\d+) runs the scheduled tasks", log)
    assert len(set(leaders)) >= 2, f"no other worker took over: {leaders}"
    assert {r.pid for r in runs} <= {int(p) for p in leaders}
    outcomes = Counter(r.outcome for r in runs)
    assert outcomes["succeeded"] >= 20, outcomes

    # 3. Each hanging read was in a run reported as timed out, and abandoned.
    for request in hung:
        (run,) = [
            r for r in runs if r.started <= request.started + 0.05 <= r.ended + 0.05
        ]
        assert run.outcome == "timed out", (run, request)
        assert TIMEOUT_SECONDS - 0.05 <= run.ended - run.started, run
        assert run.ended - run.started < TIMEOUT_SECONDS + 1, run
        assert request.ended - run.started >= HANG_SECONDS - 0.1
    abandoned = re.findall(
        rf"Task {re.escape(TASK_ID)} ran past its timeout of 0:00:02 and was "
        "abandoned",
        log,
    )
    assert outcomes["timed out"] == len(abandoned) == len(HANGS), outcomes
    skipped = [m for m in others if "abandoned run is still finishing" in m]
    assert skipped, "no run was held back while an abandoned one was finishing"
    assert "from-abandoned-run" not in catalog, "an abandoned run applied its listing"
    assert {f"sched-{n}" for n in range(3)} <= catalog

    # 4. The task API reported the timed-out runs (and runs in progress).
    timed_out = {
        last["startedAt"]: last
        for _, _, last in observed
        if last is not None and last["outcome"] == "timed out"
    }
    assert timed_out, "GET /tasks never reported a timed-out run"
    for last in timed_out.values():
        span = (
            datetime.fromisoformat(last["endedAt"])
            - datetime.fromisoformat(last["startedAt"])
        ).total_seconds()
        assert TIMEOUT_SECONDS - 0.05 <= span < TIMEOUT_SECONDS + 1, last
    assert any(status == "running" for _, status, _ in observed)
    print(
        f"schedule: {time.time() - started:.0f}s, {len(data)} listing reads "
        f"({len(hung)} hung {HANG_SECONDS:.0f}s), {len(runs)} runs {dict(outcomes)} "
        f"in workers {sorted(set(leaders))}, leader {killed[0]} killed at "
        f"{killed[1] - started:.1f}s; {len(skipped)} runs held back while an "
        f"abandoned run finished; {len(timed_out)} timed-out runs seen in GET /tasks"
    )
