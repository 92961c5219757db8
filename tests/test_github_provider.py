"""GitHub push and repository events make the Location entities Backstage makes."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from frobs.app import create_app
from frobs.catalog.mutation import DeferredEntity
from frobs.config import load_config
from frobs.github.provider import (
    GithubEntityProvider,
    GithubProviderSettings,
    location_entity,
    path_pattern,
)

GITHUB = Path(__file__).parent / "fixtures" / "github"
EXPECTED = json.loads((GITHUB / "expected-backstage-provider.json").read_text())
DELIVERIES = {
    e["file"]: e
    for e in json.loads((GITHUB / "deliveries.json").read_text())["entries"]
}


def topic_of(file: str) -> str:
    return DELIVERIES[file]["backstage_subtopic"]


@pytest.mark.parametrize(
    "case",
    EXPECTED["cases"],
    ids=[
        f"{c['file']}:{c['assumed_config']['catalogPath']}" for c in EXPECTED["cases"]
    ],
)
def test_mutations_match_backstage(case):
    config = case["assumed_config"]
    provider = GithubEntityProvider(
        GithubProviderSettings("test", config["organization"], config["catalogPath"])
    )
    payload = json.loads((GITHUB / case["file"]).read_text())

    mutations = provider.mutations(topic_of(case["file"]), payload)

    added = [
        {"name": i.entity["metadata"]["name"], "target": i.entity["spec"]["target"]}
        for m in mutations
        for i in m.added
    ]
    removed = [
        {"name": r.entity_ref.split("/", 1)[1]} for m in mutations for r in m.removed
    ]
    expected = case.get("delta", {"added": [], "removed": []})
    assert added == expected["added"]
    assert removed == [{"name": r["name"]} for r in expected["removed"]]
    if case.get("note", "").startswith("two mutations"):
        assert [bool(m.removed) for m in mutations] == [True, False]


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("/catalog-info.yaml", "catalog-info.yaml", True),
        ("/catalog-info.yaml", "old/catalog-info.yaml", False),
        ("catalog-info*.yaml", "catalog-info-2.yaml", True),
        ("catalog-info*.yaml", "sub/catalog-info-2.yaml", False),
        ("**/catalog-info.yaml", "catalog-info.yaml", True),
        ("**/catalog-info.yaml", "a/b/catalog-info.yaml", True),
        ("**/catalog-info.yaml", "a/b/catalog-info.yml", False),
    ],
)
def test_catalog_path_globs(pattern, path, matches):
    assert bool(path_pattern(pattern).fullmatch(path)) is matches


def test_a_location_is_a_valid_entity_named_as_backstage_names_it():
    target = "https://github.com/o/r/blob/main/catalog-info.yaml"
    entity = location_entity(target)
    digest = hashlib.sha1(f"url:{target}".encode()).hexdigest()
    assert entity["metadata"]["name"] == f"generated-{digest}"
    from frobs.catalog.apply import entity_problems

    assert entity_problems(entity) == []
    assert isinstance(DeferredEntity(entity), DeferredEntity)


def test_a_signed_push_lands_a_location_in_the_catalog(
    tmp_path,
):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "  providers:\n    github:\n      main:\n"
        "        organization: example-owner\n"
        "        catalogPath: '**/catalog-info.yaml'\n"
        "events:\n  http:\n    topics: [github]\n"
        "  modules:\n    github:\n      webhookSecret: s3cret\n"
    )
    app = create_app(load_config({"APP_CONFIG": str(path)}, tmp_path), False)
    client = app.test_client()
    body = (GITHUB / "push.catalog-info-moved.backstage.json").read_bytes()
    signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()

    response = client.post(
        "/api/events/http/github",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": signature,
        },
    )

    assert response.status_code == 202
    locations = client.get("/api/catalog/entities?filter=kind=location").get_json()
    assert [loc["spec"]["target"] for loc in locations] == [
        "https://ghe.example.net/example-owner/example-repo/blob/master/new/"
        "catalog-info.yaml"
    ]
    provenance = locations[0]["metadata"]["provenance"]
    assert provenance["topic"] == "github.push" and provenance["deliveryId"] == "d-1"
