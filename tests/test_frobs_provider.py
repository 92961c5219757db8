"""The Frobs provider over a file: source it can change: syncs, guards, refusals."""

from __future__ import annotations

import json

import pytest

from frobs.app import create_app
from frobs.catalog.mutation import DeferredEntity, DeltaMutation
from frobs.catalog.provider import EntityProviderConnection
from frobs.config import load_config
from frobs.integration.mapping import entity_from_frob
from frobs.reading import ReadRefused


def frob(frob_id: str, **fields) -> dict:
    return {
        "id": frob_id,
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        **fields,
    }


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "config"
    (folder / "frobs").mkdir(parents=True)
    return folder


def write_listing(source, frobs: list[dict]) -> None:
    (source / "data.json").write_text(json.dumps({"frobs": frobs}))


def make_app(source, **provider):
    settings = "".join(f"        {k}: {json.dumps(v)}\n" for k, v in provider.items())
    (source / "app.yaml").write_text(
        f"catalog:\n  store:\n    path: {source.parent / 'store'}\n"
        "  providers:\n    frobs:\n      dev:\n"
        "        dataUrl: file:data.json\n"
        "        itemUrl: file:frobs/{id}.json\n" + settings
    )
    config = load_config({"APP_CONFIG": str(source / "app.yaml")}, source)
    return create_app(config, start_background=False)


def sync(app):
    scheduler = app.extensions["frobs"].scheduler
    return scheduler.run(scheduler.tasks["frobs-dev:refresh"])


def names(app) -> set[str]:
    entities = app.test_client().get("/api/catalog/entities").get_json()
    return {e["metadata"]["name"] for e in entities}


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
