"""The README walkthrough on the embedded defaults: sync, add, modify, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from frobs.app import create_app
from frobs.config import load_config

REPO = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def app(tmp_path):
    return create_app(load_config({"STORE_PATH": str(tmp_path / "data")}, REPO), False)


def sync(app) -> dict:
    scheduler = app.extensions["frobs"].scheduler
    run = scheduler.run(scheduler.tasks["frobs-sample:refresh"])
    assert run.outcome == "succeeded", run.error
    return run.summary


def names(client, kind: str) -> set[str]:
    entities = client.get(f"/api/catalog/entities?filter=kind={kind}").get_json()
    return {e["metadata"]["name"] for e in entities}


def test_walkthrough(app):
    client = app.test_client()
    assert sync(app)["added"] >= 30
    all_entities = client.get("/api/catalog/entities").get_json()
    assert {"Component", "API", "Group", "User", "System", "Domain", "Resource"} <= {
        e["kind"] for e in all_entities
    }

    response = client.post(
        "/api/events/http/frobs", json={"type": "add", "id": "ledger"}
    )
    assert response.status_code == 202
    ledger = client.get("/api/catalog/entities/by-name/component/default/ledger")
    assert ledger.status_code == 200
    assert (
        ledger.get_json()["metadata"]["annotations"]["frobs.example.com/id"] == "ledger"
    )
    assert "ledger-api" in names(client, "api")

    payments_uid = client.get(
        "/api/catalog/entities/by-name/component/default/payments"
    ).get_json()["metadata"]["uid"]
    client.post("/api/events/http/frobs", json={"type": "modify", "id": "payments"})
    apis = names(client, "api")
    assert "payments-api-v2" in apis and "payments-api" not in apis
    payments = client.get("/api/catalog/entities/by-name/component/default/payments")
    assert payments.get_json()["metadata"]["uid"] == payments_uid
    assert payments.get_json()["spec"]["providesApis"] == ["payments-api-v2"]

    client.post(
        "/api/events/http/frobs", json={"type": "delete", "id": "legacy-billing"}
    )
    gone = client.get("/api/catalog/entities/by-name/component/default/legacy-billing")
    assert gone.status_code == 404
    assert gone.get_json()["error"]["name"] == "NotFoundError"

    summary = sync(app)
    assert summary["removed"] == 3 and summary["added"] == 2
    assert "ledger" not in names(client, "component")
    assert "legacy-billing" in names(client, "component")


def test_a_sync_after_an_add_of_a_listed_frob_changes_nothing(app):
    client = app.test_client()
    sync(app)
    etag = client.get(
        "/api/catalog/entities/by-name/component/default/cart"
    ).get_json()["metadata"]["etag"]
    client.post("/api/events/http/frobs", json={"type": "add", "id": "cart"})
    assert sync(app)["unchanged"] >= 30 and sync(app)["updated"] == 0
    assert (
        client.get("/api/catalog/entities/by-name/component/default/cart").get_json()[
            "metadata"
        ]["etag"]
        == etag
    )


FILTERS = {
    "kind=component": lambda e: e["kind"] == "Component",
    "KIND=COMPONENT,spec.lifecycle=production": lambda e: (
        e["kind"] == "Component" and e["spec"].get("lifecycle") == "production"
    ),
    "kind=api,kind=system": lambda e: e["kind"] in ("API", "System"),
    "spec.system": lambda e: "system" in e["spec"],
    "metadata.tags=python": lambda e: "python" in e["metadata"].get("tags", []),
    "metadata.tags.python": lambda e: "python" in e["metadata"].get("tags", []),
    "metadata.annotations.frobs.example.com/id=payments": lambda e: (
        e["metadata"]["annotations"]["frobs.example.com/id"] == "payments"
    ),
}


@pytest.mark.parametrize("query, expected", FILTERS.items(), ids=FILTERS.keys())
def test_filters(app, query, expected):
    sync(app)
    client = app.test_client()
    everything = client.get("/api/catalog/entities").get_json()
    filtered = client.get(f"/api/catalog/entities?filter={query}").get_json()
    assert filtered and filtered == [e for e in everything if expected(e)]


def test_repeated_filters_are_ored(app):
    sync(app)
    client = app.test_client()
    both = client.get(
        "/api/catalog/entities?filter=kind=user&filter=kind=group"
    ).get_json()
    assert {e["kind"] for e in both} == {"User", "Group"}


def test_fields_limit_offset_and_order(app):
    sync(app)
    client = app.test_client()
    page = client.get(
        "/api/catalog/entities?filter=kind=component&fields=metadata.name,kind"
        "&order=desc:metadata.name&limit=3&offset=1"
    ).get_json()
    every = sorted(names(client, "component"), reverse=True)
    assert page == [{"kind": "Component", "metadata": {"name": n}} for n in every[1:4]]


BAD_QUERIES = {
    "an empty filter key": "filter==x",
    "an unknown parameter": "foo=bar",
    "a bad order": "order=up:metadata.name",
    "a zero limit": "limit=0",
    "a negative offset": "offset=-1",
    "a limit that is not a number": "limit=abc",
    "a limit in other digits": "limit=%D9%A3",
    "a limit with a space": "limit=%203",
    "a limit given twice": "limit=1&limit=2",
    "a limit of 5000 digits": "limit=" + "9" * 5000,
    "an array field": "fields=metadata.tags[0]",
}


@pytest.mark.parametrize("query", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
def test_bad_list_queries_get_400(app, query):
    response = app.test_client().get(f"/api/catalog/entities?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["name"] == "InputError"


BAD_BY_QUERY = {
    "a cursor given twice": "cursor=abc&cursor=abc",
    "a term given twice": "fullTextFilterTerm=a&fullTextFilterTerm=b",
    "totalItems given twice": "totalItems=include&totalItems=exclude",
    "a limit given twice": "limit=1&limit=2",
}


@pytest.mark.parametrize("query", BAD_BY_QUERY.values(), ids=BAD_BY_QUERY.keys())
def test_bad_by_query_queries_get_400(app, query):
    response = app.test_client().get(f"/api/catalog/entities/by-query?{query}")
    assert response.status_code == 400
    assert "must be given once" in response.get_json()["error"]["message"]


def test_an_after_cursor_given_twice_gets_400(app):
    response = app.test_client().get("/api/catalog/entities?after=a&after=b")
    assert response.status_code == 400


def test_by_name_is_case_insensitive_and_by_uid_finds_the_same_entity(app):
    sync(app)
    client = app.test_client()
    entity = client.get(
        "/api/catalog/entities/by-name/Component/DEFAULT/Cart"
    ).get_json()
    uid = entity["metadata"]["uid"]
    assert client.get(f"/api/catalog/entities/by-uid/{uid}").get_json() == entity
    missing = client.get("/api/catalog/entities/by-uid/nope")
    assert missing.status_code == 404


def test_provenance_is_readable_with_curl(app):
    client = app.test_client()
    sync(app)
    synced = client.get("/api/catalog/entities/by-name/component/default/cart")
    provenance = synced.get_json()["metadata"]["provenance"]
    assert provenance["task"] == "frobs-sample:refresh"
    assert provenance["provider"] == "frobs-sample"
    assert provenance["locationKey"] == "frobs-provider:sample"

    client.post(
        "/api/events/http/frobs",
        json={"type": "add", "id": "ledger"},
        headers={"X-Request-Id": "walkthrough-1"},
    )
    ledger = client.get("/api/catalog/entities/by-name/component/default/ledger")
    provenance = ledger.get_json()["metadata"]["provenance"]
    assert (provenance["topic"], provenance["deliveryId"]) == (
        "frobs.add",
        "walkthrough-1",
    )

    by_event = client.get(
        "/api/catalog/entities?filter=metadata.provenance.deliveryId=walkthrough-1"
        "&fields=metadata.name"
    ).get_json()
    assert sorted(e["metadata"]["name"] for e in by_event) == ["ledger", "ledger-api"]


def test_served_entities_carry_relations_both_ways(app):
    client = app.test_client()
    sync(app)
    payments = client.get("/api/catalog/entities/by-name/component/default/payments")
    relations = payments.get_json()["relations"]
    assert {"type": "providesApi", "targetRef": "api:default/payments-api"} in relations
    api = client.get(
        "/api/catalog/entities/by-name/api/default/payments-api"
    ).get_json()
    assert {"type": "apiProvidedBy", "targetRef": "component:default/payments"} in api[
        "relations"
    ]
    owners = client.get(
        "/api/catalog/entities?filter=relations.ownedby=group:default/team-payments"
    ).get_json()
    assert "payments" in {e["metadata"]["name"] for e in owners}


def test_json_answers_say_their_charset(app):
    response = app.test_client().get("/api/catalog/entities?limit=1")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_liveness_and_readiness_say_how_each_source_is_doing(app):
    client = app.test_client()
    assert client.get("/.backstage/health/v1/liveness").get_json() == {"status": "ok"}
    before = client.get("/.backstage/health/v1/readiness")
    assert before.status_code == 200
    assert before.get_json()["providers"]["frobs-sample"]["source"] == "not synced yet"

    sync(app)
    after = client.get("/.backstage/health/v1/readiness").get_json()
    assert after["status"] == "ok"
    assert after["providers"]["frobs-sample"]["source"] == "ok"
    assert after["providers"]["frobs-sample"]["lastSync"]["counts"]["added"] >= 30


def test_readiness_is_503_when_the_store_cannot_be_written(app, monkeypatch):
    store = app.extensions["frobs"].store

    def refuse():
        raise PermissionError("read-only file system")

    monkeypatch.setattr(store, "check_writable", refuse)
    response = app.test_client().get("/.backstage/health/v1/readiness")
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"


def test_other_bodies_have_the_webhook_size_limit_too(app):
    huge = {"entityRefs": ["component:default/x" * 10] * 40_000}
    response = app.test_client().post("/api/catalog/entities/by-refs", json=huge)
    assert response.status_code == 413
    assert response.get_json()["response"] == {"statusCode": 413}


def test_metrics_are_served_as_prometheus_text_with_one_charset(app):
    content_type = app.test_client().get("/metrics").headers["Content-Type"]
    assert content_type.startswith("text/plain; version=")
    assert content_type.count("charset=") == 1, content_type


def test_metrics_count_what_happened(app):
    client = app.test_client()
    sync(app)
    client.post("/api/events/http/frobs", json={"type": "add", "id": "ledger"})
    client.post("/api/events/http/frobs", data=b"{", content_type="application/json")
    client.post("/api/events/http/nope", json={})

    text = client.get("/metrics").get_data(as_text=True)

    assert 'frobs_events_received_total{status="202",topic="frobs"}' in text
    assert 'frobs_events_received_total{status="400",topic="frobs"}' in text
    assert 'frobs_events_received_total{status="404",topic="(not configured)"}' in text
    assert 'frobs_events_routed_total{topic="frobs"}' in text
    assert (
        'frobs_sync_runs_total{outcome="succeeded",task="frobs-sample:refresh"}' in text
    )
    assert 'frobs_entities{kind="Component"}' in text
    assert "frobs_store_write_seconds_bucket" in text
    assert (
        'frobs_entities_written_total{outcome="added",provider="frobs-sample"}' in text
    )
