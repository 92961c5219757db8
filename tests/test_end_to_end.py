"""End-to-end tests: the real service under gunicorn, fed by a real Frobs stand-in.

Each test drives ``gunicorn app:app`` (3 workers, loopback only) over HTTP with
``requests``, the way a Frobs webhook sender and a catalog client would.  The
Frobs service is played by a local pytest-httpserver whose per-frob documents,
previous states and full listings each test changes at will; it records every
path it is asked for, so a test can prove what the service read and what it
never asked for.

What is pinned (SPEC sections 2-7): add, modify and delete webhooks change the
catalog as the Frobs contract says, with the location annotations; a scheduled
full sync removes what left the source and nothing of another location key;
concurrent events spread over the workers all land; the ingress answers bad
requests with Backstage's error envelope; an id that is not a DNS label never
reaches the Frobs service; and the store's files stay whole JSON throughout.
"""

from __future__ import annotations

import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

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
    explain,
    free_port,
    http,
    last_lines,
    read_log,
    show_logs_on_failure,
    spawn_gunicorn,
    stop_process,
    stored_records,
    wait_until,
    wait_until_serving,
)
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

ID_ANNOTATION = "frobs.example.com/id"
MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
MAX_BODY_BYTES = 65536
START_TIMEOUT = 20.0
WORKERS = 3
LONG_WAIT = {"hours": 1}
FROBS_PATH = "/api/events/http/frobs"
JSON = {"Content-Type": "application/json"}


# The Frobs service stand-in


class FrobsSource:
    """Documents per provider env, changeable at any time, and a request log.

    Paths served: ``/<env>/data`` (the full listing), ``/<env>/items/<id>`` and
    ``/<env>/previous/<id>``.  Anything not set answers 404, as a frob that is
    gone does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], list[dict]] = {}
        self._previous: dict[tuple[str, str], list[dict]] = {}
        self._listings: dict[str, list[dict]] = {}
        self._requests: list[str] = []

    def set_item(self, env: str, frob_id: str, frobs: list[dict] | None) -> None:
        with self._lock:
            set_or_drop(self._items, (env, frob_id), frobs)

    def set_previous(self, env: str, frob_id: str, frobs: list[dict] | None) -> None:
        with self._lock:
            set_or_drop(self._previous, (env, frob_id), frobs)

    def set_listing(self, env: str, frobs: list[dict] | None) -> None:
        with self._lock:
            set_or_drop(self._listings, env, frobs)

    def requests(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def count(self, path: str) -> int:
        return self.requests().count(path)

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests.append(request.path)
            frobs = self._lookup(request.path)
        if request.method != "GET" or frobs is None:
            return json_response({"message": f"no frob at {request.path}"}, 404)
        return json_response({"frobs": frobs}, 200)

    def _lookup(self, path: str) -> list[dict] | None:
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[1] == "data":
            return self._listings.get(parts[0])
        if len(parts) == 3 and parts[1] == "items":
            return self._items.get((parts[0], parts[2]))
        if len(parts) == 3 and parts[1] == "previous":
            return self._previous.get((parts[0], parts[2]))
        return None


component = partial(component_frob, owner="team-e2e")
api = partial(api_frob, owner="team-e2e", spec_title="e2e")


# The service under test


_SERVICES: list["Service"] = []


@dataclass
class Service:
    """A running ``gunicorn app:app`` and a small client for it."""

    base_url: str
    store_path: Path
    log_path: Path
    data_urls: dict[str, str]
    process: subprocess.Popen = field(repr=False)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self._request("GET", path, **kwargs)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return http(method, self.base_url + path, timeout=HTTP_TIMEOUT, **kwargs)

    def event(
        self, event_type: str, frob_id: Any, topic: str = "frobs"
    ) -> requests.Response:
        return self.post(
            f"/api/events/http/{topic}", json={"type": event_type, "id": frob_id}
        )

    def send(self, event_type: str, frob_id: str) -> None:
        response = self.event(event_type, frob_id)
        assert response.status_code == 202, self.explain(response)
        assert response.json() == {"status": "accepted"}

    def entity(self, kind: str, name: str, namespace: str = "default") -> dict | None:
        response = self.get(f"/api/catalog/entities/by-name/{kind}/{namespace}/{name}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, self.explain(response)
        return response.json()

    def components(self) -> dict[str, dict]:
        response = self.get(
            "/api/catalog/entities", params={"filter": "kind=component"}
        )
        assert response.status_code == 200, self.explain(response)
        return {e["metadata"]["name"]: e for e in response.json()}

    def all_entities(self) -> list[dict]:
        response = self.get("/api/catalog/entities")
        assert response.status_code == 200, self.explain(response)
        return response.json()

    def explain(self, response: requests.Response) -> str:
        return explain(response)

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return last_lines(read_log(self.log_path), lines)

    def running(self) -> bool:
        return self.process.poll() is None


def provider_settings(server: HTTPServer, env: str, schedule: dict) -> dict:
    base = f"http://127.0.0.1:{server.port}/{env}"
    return {
        "dataUrl": f"{base}/data",
        "itemUrl": f"{base}/items/{{id}}",
        "previousStateUrl": f"{base}/previous/{{id}}",
        "schedule": {"timeout": {"seconds": 30}, **schedule},
    }


def write_config(folder: Path, server: HTTPServer, envs: dict[str, dict]) -> Path:
    config = {
        "events": {"http": {"topics": ["frobs"], "maxBodyBytes": MAX_BODY_BYTES}},
        "catalog": {
            "store": {"type": "file", "path": str(folder / "store")},
            "providers": {
                "frobs": {
                    env: provider_settings(server, env, schedule)
                    for env, schedule in envs.items()
                }
            },
        },
    }
    path = folder / "app-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_service(folder: Path, server: HTTPServer, envs: dict[str, dict]) -> Service:
    folder.mkdir(parents=True, exist_ok=True)
    config_path = write_config(folder, server, envs)
    port = free_port()
    log_path = folder / "gunicorn.log"
    process = spawn_gunicorn(config_path, port, log_path, WORKERS)
    service = Service(
        base_url=f"http://127.0.0.1:{port}",
        store_path=folder / "store",
        log_path=log_path,
        data_urls={env: provider_settings(server, env, {})["dataUrl"] for env in envs},
        process=process,
    )
    _SERVICES.append(service)
    wait_until_serving(
        process, service.base_url, log_path, WORKERS, START_TIMEOUT, service.log_tail
    )
    return service


def stop_service(service: Service) -> None:
    stop_process(service.process)


def assert_error_envelope(
    response: requests.Response, status: int, method: str, path: str
) -> dict:
    assert response.status_code == status, (
        f"{method} {path}: expected {status}, got {response.status_code}: "
        f"{response.text[:300]}"
    )
    body = response.json()
    assert set(body) == {"error", "request", "response"}, body
    assert isinstance(body["error"].get("name"), str) and body["error"]["name"], body
    assert isinstance(body["error"].get("message"), str), body
    assert body["error"]["message"], body
    assert body["request"] == {"method": method, "url": path}, body
    assert body["response"] == {"statusCode": status}, body
    return body


# Fixtures


@pytest.fixture(scope="module")
def source() -> FrobsSource:
    return FrobsSource()


@pytest.fixture(scope="module")
def frobs_server(source: FrobsSource):
    yield from serve_frobs(source.handle)


@pytest.fixture(scope="module")
def service(tmp_path_factory, frobs_server: HTTPServer):
    """One service for most tests: envs ``test`` and ``other``, no scheduled sync."""
    folder = tmp_path_factory.mktemp("service")
    running = start_service(
        folder,
        frobs_server,
        {
            "test": {"initialDelay": LONG_WAIT, "frequency": LONG_WAIT},
            "other": {"initialDelay": LONG_WAIT, "frequency": LONG_WAIT},
        },
    )
    yield running
    stop_service(running)


@pytest.fixture(autouse=True)
def _service_log_on_failure(request, capsys):
    """Print the log of the services a failed test used (failure diagnostics)."""
    yield from show_logs_on_failure(request, capsys, _SERVICES)


# Tests


def test_add_makes_every_entity_of_the_frob_appear_with_its_location(
    service: Service, source: FrobsSource
):
    source.set_item("test", "adder", [component("adder"), api("adder", "adder-api")])

    service.send("add", "adder")

    assert "/test/items/adder" in source.requests()
    data_url = service.data_urls["test"]
    for kind, name in (("component", "adder"), ("api", "adder-api")):
        entity = service.entity(kind, name)
        assert entity is not None, f"{kind} {name} was not added"
        assert entity["apiVersion"] == "backstage.io/v1alpha1"
        annotations = entity["metadata"]["annotations"]
        assert annotations[ID_ANNOTATION] == "adder"
        assert annotations[MANAGED_BY] == f"url:{data_url}"
        assert annotations[MANAGED_BY_ORIGIN] == f"url:{data_url}"
        assert entity["metadata"]["uid"]
    assert service.entity("API", "adder-api")["kind"] == "API"
    assert "adder" in service.components()


def test_modify_removes_what_the_previous_state_had_and_the_new_one_lacks(
    service: Service, source: FrobsSource
):
    before = [
        component("modder", description="first"),
        api("modder", "modder-api-v1"),
    ]
    after = [
        component("modder", description="second"),
        api("modder", "modder-api-v2"),
    ]
    source.set_item("test", "modder", before)
    service.send("add", "modder")
    kept = service.entity("component", "modder")
    assert kept is not None and service.entity("api", "modder-api-v1") is not None

    source.set_item("test", "modder", after)
    source.set_previous("test", "modder", before)
    service.send("modify", "modder")

    assert "/test/previous/modder" in source.requests()
    updated = service.entity("component", "modder")
    assert updated is not None, "an entity in both states must not be deleted"
    assert updated["metadata"]["description"] == "second"
    assert updated["metadata"]["uid"] == kept["metadata"]["uid"]
    assert updated["metadata"]["etag"] != kept["metadata"]["etag"]
    assert service.entity("api", "modder-api-v1") is None
    new_api = service.entity("api", "modder-api-v2")
    assert new_api is not None
    assert new_api["metadata"]["annotations"][ID_ANNOTATION] == "modder"


def test_delete_removes_the_frobs_entities_even_when_the_source_says_404(
    service: Service, source: FrobsSource
):
    source.set_item("test", "goner", [component("goner"), api("goner", "goner-api")])
    source.set_item("other", "bystander", [component("bystander")])
    service.send("add", "goner")
    service.send("add", "bystander")
    assert service.entity("component", "goner") is not None
    assert service.entity("api", "goner-api") is not None
    bystander = service.entity("component", "bystander")
    assert bystander is not None
    assert bystander["metadata"]["annotations"][MANAGED_BY] == (
        "url:" + service.data_urls["other"]
    )

    source.set_item("test", "goner", None)
    service.send("delete", "goner")

    assert service.entity("component", "goner") is None
    assert service.entity("api", "goner-api") is None
    still = service.entity("component", "bystander")
    assert still is not None, "delete of one frob removed another provider's entity"
    assert still["metadata"]["uid"] == bystander["metadata"]["uid"]


def test_full_sync_removes_what_left_the_source_and_keeps_other_location_keys(
    tmp_path: Path, frobs_server: HTTPServer, source: FrobsSource
):
    source.set_listing("synced", [component("sync-one"), component("sync-two")])
    source.set_listing("keep", [component("keep-one")])
    source.set_item("keep", "keep-hook", [component("keep-hook")])
    running = start_service(
        tmp_path / "sync-service",
        frobs_server,
        {
            "synced": {"initialDelay": {"seconds": 1}, "frequency": {"seconds": 2}},
            "keep": {"initialDelay": {"seconds": 1}, "frequency": LONG_WAIT},
        },
    )
    try:
        first = {"sync-one", "sync-two", "keep-one"}
        wait_until(
            lambda: set(running.components()) == first,
            20,
            f"the catalog holds {sorted(first)}",
        )
        # keep's only sync has run; this webhook entity is not in its listing.
        running.send("add", "keep-hook")
        held = {n: running.entity("component", n) for n in ("keep-one", "keep-hook")}
        assert all(held.values()), held

        source.set_listing("synced", [component("sync-one", description="resynced")])
        wait_until(
            lambda: running.entity("component", "sync-two") is None,
            20,
            "the scheduled sync removes sync-two",
        )
        assert (
            running.entity("component", "sync-one")["metadata"].get("description")
            == "resynced"
        )

        # Let two more syncs run, so at least one more completes in full.
        reads = source.count("/synced/data")
        wait_until(
            lambda: source.count("/synced/data") >= reads + 2,
            20,
            "two more scheduled syncs of env synced",
        )
        assert set(running.components()) == {"sync-one", "keep-one", "keep-hook"}
        for name, entity in held.items():
            now = running.entity("component", name)
            assert now is not None, f"{name} of another location key was removed"
            assert now["metadata"]["uid"] == entity["metadata"]["uid"]
        stored_records(running.store_path)
        leaders = re.findall(
            r"Worker (\d+) runs the scheduled tasks",
            running.log_path.read_text(errors="replace"),
        )
        assert len(leaders) == 1, f"scheduled tasks ran in workers {leaders}"
    finally:
        stop_service(running)


def test_fifty_concurrent_adds_spread_over_the_workers_all_land(
    service: Service, source: FrobsSource
):
    ids = [f"burst-{n:02d}" for n in range(50)]
    for frob_id in ids:
        source.set_item("test", frob_id, [component(frob_id, description=frob_id)])

    def add(frob_id: str) -> tuple[str, int, str]:
        response = service.event("add", frob_id)
        return frob_id, response.status_code, response.text

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(add, ids))

    refused = [a for a in answers if a[1] != 202]
    assert not refused, refused
    components = service.components()
    missing = [i for i in ids if i not in components]
    assert not missing, f"accepted but not in the catalog: {missing}"
    for frob_id in ids:
        entity = service.entity("component", frob_id)
        assert entity is not None, frob_id
        assert entity["metadata"]["annotations"][ID_ANNOTATION] == frob_id
    assert len({components[i]["metadata"]["uid"] for i in ids}) == len(ids)
    records = stored_records(service.store_path).values()
    stored = {e["entity"]["metadata"]["name"] for e in records}
    assert set(ids) <= stored

    # The premise: the burst really was served by more than one process.
    applied = re.findall(
        r"^\S+ \S+ (\d+) INFO \S+: frobs-test applied add of frob (burst-\d\d):",
        service.log_path.read_text(errors="replace"),
        flags=re.MULTILINE,
    )
    assert {frob_id for _, frob_id in applied} == set(ids), (
        "the log no longer says which worker applied each add"
    )
    assert len({pid for pid, _ in applied}) >= 2, "one worker served every event"


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        pytest.param(
            "/api/events/http/no-such-topic",
            {"json": {"type": "add", "id": "x"}},
            404,
            id="unknown-topic",
        ),
        pytest.param(
            FROBS_PATH,
            {"data": b'{"type": "add", "id":', "headers": JSON},
            400,
            id="malformed-json",
        ),
        pytest.param(FROBS_PATH, {"data": b"", "headers": JSON}, 400, id="empty-body"),
        pytest.param(
            FROBS_PATH,
            {
                "data": b'{"type": "add", "id": "x"}',
                "headers": {"Content-Type": "text/plain"},
            },
            415,
            id="text-plain",
        ),
        pytest.param(
            FROBS_PATH,
            {"data": b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}', "headers": JSON},
            413,
            id="over-the-size-limit",
        ),
        pytest.param(
            FROBS_PATH,
            {"data": b'{"type": "add", "id": "x"}'},
            400,
            id="missing-content-type",
        ),
    ],
)
def test_ingress_answers_bad_requests_with_the_error_envelope(
    service: Service, source: FrobsSource, path: str, kwargs: dict, status: int
):
    seen = source.requests()
    response = service.post(path, **kwargs)
    assert_error_envelope(response, status, "POST", path)
    assert source.requests() == seen, "the Frobs service was asked"


def test_ingress_refuses_get_with_the_error_envelope(service: Service):
    response = service.get(FROBS_PATH)
    assert response.status_code in (404, 405), service.explain(response)
    assert_error_envelope(response, response.status_code, "GET", FROBS_PATH)


@pytest.mark.parametrize(
    "bad_id",
    ["x.evil.example/", "../etc", "UPPER", "a" * 64, "", 5, None, "-dash", "a_b"],
    ids=[
        "host-and-slash",
        "dot-dot",
        "upper-case",
        "64-chars",
        "empty",
        "number",
        "null",
        "leading-dash",
        "underscore",
    ],
)
def test_an_id_that_is_not_a_dns_label_is_refused_before_any_request(
    service: Service, source: FrobsSource, bad_id: Any
):
    seen = source.requests()
    for event_type in ("add", "modify", "delete"):
        response = service.event(event_type, bad_id)
        body = assert_error_envelope(response, 400, "POST", FROBS_PATH)
        assert "id" in body["error"]["message"]
    assert source.requests() == seen, "the Frobs service was asked about a bad id"


def test_the_store_files_are_whole_json_after_everything(
    service: Service, source: FrobsSource
):
    source.set_item("test", "last", [component("last")])
    service.send("add", "last")

    stored = stored_records(service.store_path)
    assert stored, "the store holds no entity"
    served = {
        f"{e['kind']}:{e['metadata']['namespace']}/{e['metadata']['name']}".lower()
        for e in service.all_entities()
    }
    assert served == set(stored)
    assert {r["ref"] for r in stored.values()} == set(stored)
