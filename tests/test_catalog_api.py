"""Backstage's catalog read API over Backstage's own example entities."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest
from flask import Flask
from test_backstage_examples import load

from frobs import jsoncodec
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


MALFORMED = (
    "Malformed request body (did you remember to specify an application/json "
    "content type?), Validation error: "
)

#: By-refs bodies that are refused, and what the message says after Backstage's
#: opening words.
BAD_BATCHES = {
    "no entityRefs": (b"{}", 'Required at "entityRefs"'),
    "entityRefs a string": (
        b'{"entityRefs": "x"}',
        'Expected array, received string at "entityRefs"',
    ),
    "entityRefs null": (
        b'{"entityRefs": null}',
        'Expected array, received null at "entityRefs"',
    ),
    "items that are no strings": (
        b'{"entityRefs": [1, null, {}]}',
        'Expected string, received number at "entityRefs[0]"; '
        'Expected string, received null at "entityRefs[1]"; '
        'Expected string, received object at "entityRefs[2]"',
    ),
    "many items that are no strings": (
        b'{"entityRefs": ["a", true, [], 2.5, 3, 4]}',
        'Expected string, received boolean at "entityRefs[1]"; '
        'Expected string, received array at "entityRefs[2]"; '
        'Expected string, received number at "entityRefs[3]"; '
        'and 2 more items of "entityRefs" that are no strings',
    ),
    "fields no list": (
        b'{"entityRefs": [], "fields": "kind"}',
        'Expected array, received string at "fields"',
    ),
    "fields that are no strings": (
        b'{"entityRefs": [], "fields": ["kind", 5]}',
        'Expected string, received number at "fields[1]"',
    ),
    "a body that is an array": (b"[]", "Expected object, received array"),
    "a body that is null": (b"null", "Expected object, received null"),
    "a body that is no JSON": (
        b'{"entityRefs": [',
        "the body is not valid JSON: Expecting value: line 1 column 17",
    ),
    "a body nested too deeply": (b"[" * 100_000, "the body is nested too deeply"),
}


@pytest.mark.parametrize("body, detail", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
def test_by_refs_says_what_is_wrong_with_the_body_and_where(client, body, detail):
    response = client.post(
        "/api/catalog/entities/by-refs", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["name"] == "InputError"
    assert error["message"].startswith(MALFORMED + detail), error["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_by_refs_without_a_json_content_type_says_so(client, content_type):
    response = client.post(
        "/api/catalog/entities/by-refs",
        data=b'{"entityRefs": []}',
        content_type=content_type,
    )
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert message.startswith(MALFORMED + 'Required at "entityRefs"')
    assert "send application/json" in message


def test_by_refs_takes_null_fields_as_none(client):
    response = client.post(
        "/api/catalog/entities/by-refs",
        json={"entityRefs": ["group:default/team-a"], "fields": None},
    )
    assert response.get_json()["items"][0]["kind"] == "Group"


def test_by_refs_streams_its_answer_in_bounded_chunks(client):
    refs = ["component:default/artist-lookup", "component:default/nope"] * 2000
    response = client.post(
        "/api/catalog/entities/by-refs",
        json={"entityRefs": refs},
        buffered=False,
    )
    assert response.is_streamed
    assert response.headers["Content-Type"].startswith("application/json")
    chunks = list(response.response)
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) < 2 * jsoncodec.CHUNK_BYTES
    items = json.loads(b"".join(chunks))["items"]
    assert len(items) == 4000 and items[1] is None and items[3] is None
    assert {i["metadata"]["name"] for i in items[::2]} == {"artist-lookup"}


def test_by_refs_memory_does_not_grow_with_the_answer(client):
    """20,000 refs make an answer of tens of megabytes; while it is sent, only a
    chunk and an entity are held at once."""
    refs = ["component:default/artist-lookup"] * 20_000
    response = client.post(
        "/api/catalog/entities/by-refs",
        json={"entityRefs": refs},
        buffered=False,
    )
    chunks = iter(response.response)
    sent = len(next(chunks))
    tracemalloc.start()
    try:
        for chunk in chunks:
            sent += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > 20_000_000
    assert peak < 2_000_000, peak  # a few chunks, not the 30 MB answer


@pytest.mark.parametrize("chunked", [False, True], ids=["with a length", "chunked"])
@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"entityRefs": ["component:default/x"] * 100}).encode(),
        # Valid JSON up to the limit, spaces past it: cut at the limit, it
        # would parse and be answered.
        b'{"entityRefs": []}' + b" " * 2000,
    ],
    ids=["refs", "padding"],
)
def test_by_refs_over_the_size_limit_names_the_limit(tmp_path, body, chunked):
    store, _ = load(tmp_path, resolve_placeholders=True)
    app = Flask("test")
    app.register_blueprint(CatalogApi(store).blueprint(), url_prefix="/api/catalog")
    app.config["MAX_CONTENT_LENGTH"] = 1000
    register_error_handlers(app)
    sent = (
        {
            "input_stream": io.BytesIO(body),
            "headers": {"Transfer-Encoding": "chunked"},
            "environ_overrides": {"wsgi.input_terminated": True},
        }
        if chunked
        else {"data": body}
    )
    response = app.test_client().post(
        "/api/catalog/entities/by-refs", content_type="application/json", **sent
    )
    assert response.status_code == 413
    message = response.get_json()["error"]["message"]
    assert "larger than 1000 bytes (events.http.maxBodyBytes)" in message


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
