"""The OpenAPI document (``frobs/openapi.yaml``) against the application it describes.

- Every route the Flask application serves (less HEAD and OPTIONS) is a documented
  operation, and every documented operation is a route.
- The document is a valid OpenAPI 3.0 document, and ``GET /api/openapi.json``
  serves exactly it.
- schemathesis generates requests from the document, valid ones and invalid
  ones, and sends them to the WSGI application built on a configuration with a
  Frobs provider reading ``file:`` documents, a topic guarded by an HMAC
  signature and an admin token; the store holds Backstage's example entities
  and the provider's frobs, there is a dead letter and a task with a last run.
  No answer may be a 5xx, and each must have a documented status, content type,
  headers and body schema.  The run is derandomized, so a failure reproduces.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings, strategies
from openapi_spec_validator import validate
from test_backstage_examples import ExampleFilesProvider

from frobs.app import create_app
from frobs.catalog.file_store import FileStore
from frobs.catalog.provider import EntityProviderConnection
from frobs.config import load_config
from frobs.openapi import DOCUMENT

ADMIN_TOKEN = "openapi-admin-token"
SIGNED_TOPIC = "billing"
TASK_ID = "frobs-dev:refresh"  # the example in the document
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "negative_data_rejection",
    "unsupported_method",
    "missing_required_header",
]


def document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


# The application under test


def write_config(folder) -> str:
    """A Frobs provider on file: documents, a signed topic and an admin token."""
    frobs = folder / "config" / "frobs"
    frobs.mkdir(parents=True)
    frob = {
        "id": "ledger",
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        "tags": ["money"],
    }
    (frobs.parent / "data.json").write_text(json.dumps({"frobs": [frob]}))
    (frobs / "ledger.json").write_text(json.dumps({"frobs": [frob]}))
    (frobs / "broken.json").write_text('{"frobs": [')
    config = {
        "events": {
            "http": {
                "topics": ["frobs", SIGNED_TOPIC],
                "signatures": {
                    SIGNED_TOPIC: {
                        "type": "hmac",
                        "header": "x-billing-signature",
                        "algorithm": "sha256",
                        "prefix": "sha256=",
                        "secrets": ["billing-secret"],
                    }
                },
            },
            "retry": {"maxAttempts": 1},
        },
        "backend": {"auth": {"adminToken": ADMIN_TOKEN}},
        "catalog": {
            "store": {"path": str(folder / "store")},
            "providers": {
                "frobs": {
                    "dev": {
                        "dataUrl": "file:data.json",
                        "itemUrl": "file:frobs/{id}.json",
                        "previousStateUrl": "file:frobs/{id}.previous.json",
                    }
                }
            },
        },
    }
    path = frobs.parent / "app-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openapi")
    config_path = write_config(folder)
    examples = ExampleFilesProvider(resolve_placeholders=True)
    examples.connect(EntityProviderConnection(FileStore(folder / "store"), "examples"))
    examples.full_sync()

    config = load_config({"APP_CONFIG": config_path}, folder)
    app = create_app(config, start_background=False)
    runtime = app.extensions["frobs"]
    runtime.scheduler.run(runtime.scheduler.tasks[TASK_ID])
    client = app.test_client()
    broken = client.post("/api/events/http/frobs", json={"type": "add", "id": "broken"})
    assert broken.status_code == 202
    assert len(client.get("/api/events/dead-letters").get_json()["items"]) == 1
    return app


SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "allow-x00": False},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "auth": {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}},
    }
)
schema = schemathesis.openapi.from_dict(document(), config=SCHEMATHESIS_CONFIG)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Send webhooks to the configured topics too, not only to random ones."""
    if not path_parameters or "topic" not in path_parameters:
        return strategies.just(path_parameters)
    return strategies.sampled_from(
        [path_parameters, {"topic": "frobs"}, {"topic": SIGNED_TOPIC}]
    )


# The document and the routes


def route_operations(app) -> set[tuple[str, str]]:
    """``(method, path)`` of every route, with ``{}`` for each path parameter."""
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "{}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operations.add((method, path))
    return operations


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    operations = set()
    for path, item in doc["paths"].items():
        for method in set(item) & HTTP_METHODS:
            operations.add((method.upper(), re.sub(r"\{[^}]+\}", "{}", path)))
    return operations


def test_every_route_is_documented_and_every_documented_operation_is_a_route(app):
    routes, documented = route_operations(app), documented_operations(document())
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "documented operations with no route"
    assert len(routes) >= 12


def test_path_parameters_are_named_and_documented_in_every_operation():
    for path, item in document()["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method in set(item) & HTTP_METHODS:
            parameters = item[method].get("parameters", [])
            declared = {p["name"] for p in parameters if p.get("in") == "path"}
            assert declared == names, f"{method.upper()} {path}"


def test_the_document_is_valid_openapi_3():
    doc = document()
    assert doc["openapi"] == "3.0.3"
    validate(doc)


def test_the_document_is_served_as_json(app):
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document()


def test_admin_operations_need_the_bearer_token_and_others_do_not():
    secured = {
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method in set(item) & HTTP_METHODS
        if item[method].get("security")
    }
    assert secured == {
        ("POST", "/api/events/dead-letters/replay"),
        ("POST", "/.backstage/scheduler/v1/tasks/{taskId}/trigger"),
    }


# Forged cursors and bodies the generator does not find: each was a 500 or a
# wrong page before, and is an InputError now


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


QUERY_STATE = '"order":null,"term":"","textFields":[],"totalItems":null'

FORGED = {
    "by-query cursor with a filter that is no list": (
        "GET",
        "/api/catalog/entities/by-query?cursor="
        + cursor('{"filter":1,"offset":0,' + QUERY_STATE + "}"),
        None,
    ),
    "by-query cursor with an order that is no object": (
        "GET",
        "/api/catalog/entities/by-query?cursor="
        + cursor(
            '{"filter":[],"offset":0,"order":"x","term":"","textFields":[],'
            '"totalItems":null}'
        ),
        None,
    ),
    "by-query cursor with a term that is no string": (
        "GET",
        "/api/catalog/entities/by-query?cursor="
        + cursor(
            '{"filter":[],"offset":0,"order":null,"term":5,"textFields":[],'
            '"totalItems":null}'
        ),
        None,
    ),
    "by-query cursor with a negative offset": (
        "GET",
        "/api/catalog/entities/by-query?cursor="
        + cursor('{"filter":[],"offset":-3,' + QUERY_STATE + "}"),
        None,
    ),
    "after cursor with an infinite limit": (
        "GET",
        "/api/catalog/entities?after=" + cursor('{"limit":Infinity,"offset":0}'),
        None,
    ),
    "after cursor with a negative limit": (
        "GET",
        "/api/catalog/entities?after=" + cursor('{"limit":-1,"offset":0}'),
        None,
    ),
    "by-refs fields that are not strings": (
        "POST",
        "/api/catalog/entities/by-refs",
        {"entityRefs": [], "fields": [{}]},
    ),
    "by-refs fields that are no list": (
        "POST",
        "/api/catalog/entities/by-refs",
        {"entityRefs": [], "fields": 5},
    ),
    "a dead letter id too long for a file name": (
        "POST",
        "/api/events/dead-letters/replay",
        {"ids": ["a" * 300]},
    ),
}


@pytest.mark.parametrize("name", FORGED)
def test_forged_cursors_and_bodies_are_input_errors(app, name):
    method, url, body = FORGED[name]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = app.test_client().open(url, method=method, json=body, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["name"] == "InputError"


# The application keeps the document's contract


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_document(app, case):
    # The schema is loaded from the file when the module is collected; the app is
    # built later by a fixture, so it is attached here.  Checks that send more
    # requests of their own (ignored_auth) read it from the schema too.
    case.operation.schema.app = app
    case.call_and_validate(app=app)
