"""Lone UTF-16 surrogates: refused as input where they would be kept, never a 500.

A JSON string may escape a character outside the Basic Multilingual Plane as a
pair of surrogates (``\\ud83d\\ude00``); half of a pair is no Unicode character
and no store can write it, so a webhook carrying one is answered 400.
"""

from __future__ import annotations

import json

import pytest

from frobs.app import create_app
from frobs.config import Config
from frobs.errors import InputError
from frobs.events.body_parsers import JsonBodyParser

JSON = {"Content-Type": "application/json"}

#: Bodies the JSON parser must refuse, and where its message says the surrogate is.
LONE = {
    "a high surrogate alone": (rb'{"note": "\ud800"}', "$.note"),
    "a low surrogate alone": (rb'{"note": "x\udfffy"}', "$.note"),
    "two high surrogates": (rb'{"note": "\ud83d\ud83d"}', "$.note"),
    "a pair in the wrong order": (rb'{"note": "\ude00\ud83d"}', "$.note"),
    "upper-case hex": (rb'{"note": "\uDBFF"}', "$.note"),
    "in a key": (rb'{"\ud800": 1}', "a key of $"),
    "deep in a list": (rb'{"a": [1, {"b": ["ok", "\udc00"]}]}', "$.a[1].b[1]"),
    "a document that is only a string": (rb'"\ud800"', "$"),
}

#: Bodies the JSON parser must accept as they are.
VALID = {
    "a pair (an emoji)": (rb'{"note": "\ud83d\ude00"}', {"note": "\U0001f600"}),
    "the emoji as UTF-8": ('{"note": "\U0001f600"}'.encode(), {"note": "\U0001f600"}),
    "an escaped backslash before u": (rb'{"note": "\\ud800"}', {"note": "\\ud800"}),
    "other escapes": (
        rb'{"note": "\u00e9\ud7ff\ue000"}',
        {"note": "\u00e9\ud7ff\ue000"},
    ),
}


@pytest.mark.parametrize("raw, where", LONE.values(), ids=LONE.keys())
def test_the_json_parser_refuses_a_lone_surrogate_and_says_where(raw, where):
    with pytest.raises(InputError) as refused:
        JsonBodyParser().parse(raw, "application/json", {})
    message = str(refused.value)
    assert "lone surrogate" in message and f" in {where}," in message
    assert "valid UTF-8" in message


@pytest.mark.parametrize("raw, payload", VALID.values(), ids=VALID.keys())
def test_the_json_parser_keeps_valid_unicode(raw, payload):
    assert JsonBodyParser().parse(raw, "application/json", {}) == payload


def test_a_lone_surrogate_is_found_in_a_document_nested_to_the_parsers_limit():
    depth = 900
    raw = b'{"a":' * depth + rb'"\ud800"' + b"}" * depth
    with pytest.raises(InputError, match="lone surrogate"):
        JsonBodyParser().parse(raw, "application/json", {})


@pytest.fixture(params=["file", "postgres"])
def client(request, tmp_path):
    store = {"type": request.param, "path": str(tmp_path / "store")}
    if request.param == "postgres":
        store["url"] = request.getfixturevalue("postgres_url")
    config = Config(data={"catalog": {"store": store}})
    app = create_app(config, start_background=False)
    yield app.test_client()
    app.extensions["frobs"].stop()


def test_a_webhook_with_a_lone_surrogate_is_400_on_every_store(client):
    response = client.post(
        "/api/events/http/frobs",
        data=rb'{"type":"add","id":"catalog","note":"\ud800"}',
        headers=JSON,
    )
    assert response.status_code == 400
    envelope = response.get_json()
    assert envelope["error"]["name"] == "InputError"
    assert "lone surrogate" in envelope["error"]["message"]


def test_a_webhook_with_a_surrogate_pair_is_accepted_on_every_store(client):
    response = client.post(
        "/api/events/http/frobs",
        data=rb'{"type":"add","id":"catalog","note":"\ud83d\ude00"}',
        headers=JSON,
    )
    assert response.status_code == 202


def test_a_form_encoded_delivery_with_a_lone_surrogate_is_400(client):
    form = "payload=" + json.dumps({"type": "add", "id": "x", "n": "\ud800"})
    response = client.post(
        "/api/events/http/frobs",
        data=form.replace("\\", "%5C").encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert "lone surrogate" in response.get_json()["error"]["message"]


#: Catalog reads that carry a surrogate: nothing is kept, so each is answered.
READS = {
    "a by-refs ref": (
        "POST",
        "/api/catalog/entities/by-refs",
        rb'{"entityRefs": ["component:default/\ud800"]}',
        200,
    ),
    "a by-refs field": (
        "POST",
        "/api/catalog/entities/by-refs",
        rb'{"entityRefs": ["component:default/x"], "fields": ["\udc00"]}',
        200,
    ),
    "a by-refs filter": (
        "POST",
        "/api/catalog/entities/by-refs?filter=kind=%ED%A0%80",
        b'{"entityRefs": []}',
        200,
    ),
    "a list filter": ("GET", "/api/catalog/entities?filter=kind=%ED%A0%80", None, 200),
    "a list field": ("GET", "/api/catalog/entities?fields=%ED%A0%80", None, 200),
    "a query term": (
        "GET",
        "/api/catalog/entities/by-query?fullTextFilterTerm=%ED%A0%80",
        None,
        200,
    ),
    "a facet": ("GET", "/api/catalog/entity-facets?facet=%ED%A0%80", None, 200),
    "a parameter name": ("GET", "/api/catalog/entities?%ED%A0%80=1", None, 400),
    "a name": ("GET", "/api/catalog/entities/by-name/a/b/%ED%A0%80", None, 404),
}


@pytest.mark.parametrize("method, url, body, status", READS.values(), ids=READS.keys())
def test_catalog_reads_with_a_surrogate_are_answered(client, method, url, body, status):
    response = client.open(url, method=method, data=body, headers=JSON)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200 and method == "POST":
        assert response.get_json()["items"] in ([], [None])
