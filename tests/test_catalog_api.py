"""Backstage's catalog read API over Backstage's own example entities."""

from __future__ import annotations

import pytest
from flask import Flask
from test_backstage_examples import load

from frobs.catalog.api import CatalogApi
from frobs.http_errors import register_error_handlers


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    store, _ = load(tmp_path_factory.mktemp("api"), resolve_placeholders=True)
    app = Flask("test")
    app.register_blueprint(CatalogApi(store).blueprint(), url_prefix="/api/catalog")
    register_error_handlers(app)
    return app.test_client()


def names(entities) -> list[str]:
    return [e["metadata"]["name"] for e in entities]


def test_paging_entities_follows_the_link_header_to_the_end(client):
    everything = client.get("/api/catalog/entities").get_json()
    seen, url = [], "/api/catalog/entities?limit=5&fields=metadata.name"
    while url:
        response = client.get(url)
        seen += names(response.get_json())
        link = response.headers.get("Link")
        url = "/api/catalog" + link[1 : link.index(">")] if link else None
    assert seen == names(everything)
    assert len(seen) == 37


def test_a_bad_after_cursor_is_400(client):
    response = client.get("/api/catalog/entities?after=not-a-cursor")
    assert response.status_code == 400
    assert "Malformed after cursor" in response.get_json()["error"]["message"]


def test_by_query_pages_with_cursors_and_counts_everything(client):
    first = client.get(
        "/api/catalog/entities/by-query?filter=kind=user&limit=4"
        "&orderField=metadata.name,asc&fields=metadata.name"
    ).get_json()
    assert first["totalItems"] == 10
    assert "prevCursor" not in first["pageInfo"]
    pages, page = [first], first
    while "nextCursor" in page["pageInfo"]:
        cursor = page["pageInfo"]["nextCursor"]
        page = client.get(
            f"/api/catalog/entities/by-query?cursor={cursor}&fields=metadata.name"
        ).get_json()
        pages.append(page)
        assert page["totalItems"] == 10
    seen = [n for p in pages for n in names(p["items"])]
    assert seen == sorted(seen) and len(seen) == 10
    assert "prevCursor" in pages[-1]["pageInfo"]


def test_by_query_cursors_carry_no_query_key(client):
    import base64
    import json

    page = client.get("/api/catalog/entities/by-query?filter=kind=group&limit=1")
    cursor = page.get_json()["pageInfo"]["nextCursor"]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert "query" not in decoded


def test_by_query_sorted_leaves_out_entities_without_the_field(client):
    page = client.get(
        "/api/catalog/entities/by-query?orderField=spec.lifecycle,desc"
    ).get_json()
    assert page["items"] and all("lifecycle" in e["spec"] for e in page["items"])
    lifecycles = [e["spec"]["lifecycle"] for e in page["items"]]
    assert lifecycles == sorted(lifecycles, reverse=True)


def test_by_query_full_text_and_total_items_exclude(client):
    page = client.get(
        "/api/catalog/entities/by-query?fullTextFilterTerm=ARTIST"
        "&fullTextFilterFields=metadata.name&totalItems=exclude"
    ).get_json()
    assert page["totalItems"] == 0
    assert page["items"] and all("artist" in n for n in names(page["items"]))


def test_by_query_limit_zero_still_counts(client):
    page = client.get(
        "/api/catalog/entities/by-query?limit=0&filter=kind=api"
    ).get_json()
    assert page == {"items": [], "totalItems": 3, "pageInfo": {}}


@pytest.mark.parametrize(
    "query",
    [
        "cursor=bad",
        "orderField=metadata.name,up",
        "totalItems=maybe",
        "limit=-1",
        "filter=,=x",
        "nope=1",
    ],
)
def test_bad_by_query_parameters_are_400(client, query):
    response = client.get(f"/api/catalog/entities/by-query?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["name"] == "InputError"


def test_by_refs_answers_in_request_order_with_nulls(client):
    refs = [
        "group:default/team-a",
        "Component:Default/Artist-Lookup",
        "component:default/nope",
        "team-a",
        "group:default/team-a",
    ]
    items = client.post(
        "/api/catalog/entities/by-refs",
        json={"entityRefs": refs, "fields": ["kind", "metadata.name"]},
    ).get_json()["items"]
    assert items == [
        {"kind": "Group", "metadata": {"name": "team-a"}},
        {"kind": "Component", "metadata": {"name": "artist-lookup"}},
        None,
        None,
        {"kind": "Group", "metadata": {"name": "team-a"}},
    ]


def test_by_refs_with_a_filter_nulls_what_does_not_match(client):
    items = client.post(
        "/api/catalog/entities/by-refs?filter=kind=component",
        json={
            "entityRefs": ["group:default/team-a", "component:default/artist-lookup"]
        },
    ).get_json()["items"]
    assert items[0] is None and items[1]["metadata"]["name"] == "artist-lookup"


@pytest.mark.parametrize("body", [None, {}, {"entityRefs": "x"}, {"entityRefs": [1]}])
def test_by_refs_needs_a_list_of_refs(client, body):
    response = client.post("/api/catalog/entities/by-refs", json=body)
    assert response.status_code == 400


def test_facets_count_values_as_written(client):
    facets = client.get(
        "/api/catalog/entity-facets?facet=kind&facet=metadata.tags"
        "&facet=relations.ownedBy"
    ).get_json()["facets"]
    kinds = {f["value"]: f["count"] for f in facets["kind"]}
    assert kinds["Component"] == 7 and kinds["User"] == 10 and kinds["API"] == 3
    assert facets["kind"] == sorted(facets["kind"], key=lambda f: f["value"])
    assert all(f["count"] >= 1 for f in facets["metadata.tags"])
    owners = {f["value"] for f in facets["relations.ownedBy"]}
    assert "group:default/team-a" in owners


def test_facets_with_a_filter_and_for_a_missing_field(client):
    facets = client.get(
        "/api/catalog/entity-facets?facet=spec.type&facet=spec.nothing&filter=kind=api"
    ).get_json()["facets"]
    assert {f["value"] for f in facets["spec.type"]} <= {"openapi", "grpc", "graphql"}
    assert facets["spec.nothing"] == []


def test_facets_need_a_facet(client):
    response = client.get("/api/catalog/entity-facets")
    assert response.status_code == 400
    assert "facet" in response.get_json()["error"]["message"]
