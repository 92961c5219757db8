"""The Frobs provider over a file: source it can change: syncs, guards, refusals."""

from __future__ import annotations

import json

import pytest
from frob_sources import file_source_app, frob, names, source_folder

from frobs.catalog.mutation import DeferredEntity, DeltaMutation
from frobs.catalog.provider import EntityProviderConnection
from frobs.integration.mapping import entity_from_frob
from frobs.reading import ReadRefused


@pytest.fixture
def source(tmp_path):
    return source_folder(tmp_path)


def write_listing(source, frobs: list[dict]) -> None:
    (source / "data.json").write_text(json.dumps({"frobs": frobs}))


def make_app(source, **provider):
    settings = "".join(f"        {k}: {json.dumps(v)}\n" for k, v in provider.items())
    return file_source_app(source, settings)


def sync(app):
    scheduler = app.extensions["frobs"].scheduler
    return scheduler.run(scheduler.tasks["frobs-dev:refresh"])


def test_a_sync_that_would_remove_most_entities_is_refused_and_says_why(source):
    write_listing(source, [frob(f"f{i}") for i in range(12)])
    app = make_app(source)
    assert sync(app).outcome == "succeeded"

    write_listing(source, [frob("f0")])
    run = sync(app)

    assert run.outcome == "refused"
    assert "would remove 11 of the 12" in run.error
    assert names(app) == {f"f{i}" for i in range(12)}


def test_a_higher_deletion_ratio_lets_the_sync_through(source):
    write_listing(source, [frob(f"f{i}") for i in range(12)])
    app = make_app(source, maxDeletionRatio=0.95)
    sync(app)
    write_listing(source, [frob("f0")])
    assert sync(app).outcome == "succeeded"
    assert names(app) == {"f0"}


def test_an_empty_listing_is_refused_unless_allowed(source):
    write_listing(source, [frob("f0"), frob("f1")])
    app = make_app(source)
    sync(app)
    write_listing(source, [])
    run = sync(app)
    assert run.outcome == "refused" and "allowEmptySource" in run.error
    assert names(app) == {"f0", "f1"}

    allowed = make_app(source, allowEmptySource=True)
    assert sync(allowed).outcome == "succeeded"
    assert names(allowed) == set()


def test_an_unreadable_listing_changes_nothing(source):
    write_listing(source, [frob("f0")])
    app = make_app(source)
    sync(app)
    (source / "data.json").write_text('{"frobs": [')
    run = sync(app)
    assert run.outcome == "failed" and "not JSON" in run.error
    assert names(app) == {"f0"}


def test_an_invalid_frob_is_refused_alone_and_keeps_its_last_good_version(
    source, caplog
):
    write_listing(source, [frob("good"), frob("kept", description="v1")])
    app = make_app(source)
    sync(app)

    write_listing(source, [frob("good"), frob("kept", owner=""), frob("new")])
    run = sync(app)

    assert run.outcome == "succeeded"
    assert run.summary["invalid"] == 1 and run.summary["added"] == 1
    kept = app.test_client().get("/api/catalog/entities/by-name/component/default/kept")
    assert kept.get_json()["metadata"]["description"] == "v1"
    assert "refused frob kept" in caplog.text and "spec.owner" in caplog.text


def test_a_conflict_with_another_provider_is_counted_in_the_sync(source):
    write_listing(source, [frob("shared")])
    app = make_app(source)
    other = EntityProviderConnection(app.extensions["frobs"].store, "someone-else")
    entity = entity_from_frob(frob("shared"), "url:https://elsewhere.example.com")
    other.apply_mutation(DeltaMutation(added=[DeferredEntity(entity, "other-key")]))

    run = sync(app)

    assert run.outcome == "succeeded" and run.summary["conflict"] == 1
    shared = app.test_client().get(
        "/api/catalog/entities/by-name/component/default/shared"
    )
    assert shared.get_json()["metadata"]["provenance"]["locationKey"] == "other-key"


def test_a_source_url_outside_the_allow_list_is_refused_and_logged(source, caplog):
    write_listing(source, [frob("f0")])
    app = make_app(source)
    provider = app.extensions["frobs"].providers[0]
    with pytest.raises(ReadRefused):
        provider._read("https://not-allowed.example.com/x")
    assert "frobs-dev refused to read https://not-allowed.example.com/x" in caplog.text
    assert "backend.reading.allow" in caplog.text


def write_frob(source, frob_id: str, frobs: list[dict], previous: list | None = None):
    (source / "frobs" / f"{frob_id}.json").write_text(json.dumps({"frobs": frobs}))
    if previous is not None:
        path = source / "frobs" / f"{frob_id}.previous.json"
        path.write_text(json.dumps({"frobs": previous}))


def send(app, event_type: str, frob_id: str):
    response = app.test_client().post(
        "/api/events/http/frobs", json={"type": event_type, "id": frob_id}
    )
    assert response.status_code == 202


def entity(app, name: str) -> dict | None:
    response = app.test_client().get(
        f"/api/catalog/entities/by-name/component/default/{name}"
    )
    return response.get_json() if response.status_code == 200 else None


def test_a_frob_cannot_take_another_frobs_entity_by_case(source, caplog):
    write_listing(source, [frob("svc-a", description="mine")])
    app = make_app(source)
    sync(app)
    uid = entity(app, "svc-a")["metadata"]["uid"]

    write_frob(source, "svc-a-upper", [frob("svc-a-upper", name="SVC-A")])
    send(app, "add", "svc-a-upper")
    send(app, "delete", "svc-a-upper")

    kept = entity(app, "svc-a")
    assert kept["metadata"]["uid"] == uid
    assert kept["metadata"]["description"] == "mine"
    assert "frob svc-a-upper names component:default/svc-a" in caplog.text
    assert "belongs to frob svc-a" in caplog.text


def test_in_a_listing_the_first_frob_to_name_an_entity_keeps_it(source, caplog):
    write_listing(
        source,
        [frob("first", name="twin", description="1"), frob("second", name="TWIN")],
    )
    app = make_app(source)
    run = sync(app)
    assert run.summary["added"] == 1 and run.summary["conflict"] == 1
    assert entity(app, "twin")["metadata"]["description"] == "1"
    assert "frob second names component:default/twin" in caplog.text


def test_an_invalid_first_entry_does_not_block_a_valid_second_one(source, caplog):
    write_listing(
        source,
        [frob("dupa", name="twin2", lifecycle=None), frob("dupa", name="twin2")],
    )
    app = make_app(source)
    run = sync(app)
    assert run.summary["added"] == 1 and run.summary["invalid"] == 1
    assert entity(app, "twin2") is not None
    assert "refused frob dupa" in caplog.text and "spec.lifecycle" in caplog.text


def test_a_frob_renamed_to_an_invalid_name_keeps_its_last_good_entity(source):
    write_listing(source, [frob("svc-b")])
    app = make_app(source)
    sync(app)
    write_frob(source, "svc-b", [frob("svc-b", name="svc b")], previous=[frob("svc-b")])

    send(app, "modify", "svc-b")

    assert entity(app, "svc-b") is not None


def test_a_valid_rename_removes_the_old_name(source):
    write_listing(source, [frob("svc-c")])
    app = make_app(source)
    sync(app)
    write_frob(
        source, "svc-c", [frob("svc-c", name="svc-c2")], previous=[frob("svc-c")]
    )

    send(app, "modify", "svc-c")

    assert entity(app, "svc-c") is None and entity(app, "svc-c2") is not None


def test_frobs_that_cannot_be_mapped_are_counted_as_invalid(source):
    write_listing(source, [frob("ok"), frob("bad", spec="nope"), frob("Not-A-Label")])
    app = make_app(source)
    run = sync(app)
    assert run.summary["added"] == 1 and run.summary["invalid"] == 2


def test_modify_removes_what_the_frob_holds_and_its_new_state_lacks(source):
    """Even what no previous state names: a skipped older event may have added it."""
    write_listing(source, [frob("svc-d"), frob("svc-d", name="svc-d-api-v1")])
    app = make_app(source)
    sync(app)
    write_frob(
        source,
        "svc-d",
        [frob("svc-d"), frob("svc-d", name="svc-d-api-v3")],
        previous=[frob("svc-d"), frob("svc-d", name="svc-d-api-v2")],
    )

    send(app, "modify", "svc-d")

    assert {"svc-d", "svc-d-api-v3"} <= names(app)
    assert "svc-d-api-v1" not in names(app)
