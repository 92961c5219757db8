"""From frobs to entities, as the Frobs contract says."""

from __future__ import annotations

import pytest

from frobs.integration.mapping import (
    ID_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_ORIGIN,
    FrobError,
    entity_from_frob,
    parse_document,
)

ORIGIN = "url:https://frobs-dev.example.com/data"


def test_a_minimal_frob_becomes_a_component_named_after_its_id():
    entity = entity_from_frob({"id": "cart"}, ORIGIN)
    assert entity == {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "cart",
            "namespace": "default",
            "annotations": {
                ID_ANNOTATION: "cart",
                MANAGED_BY: ORIGIN,
                MANAGED_BY_ORIGIN: ORIGIN,
            },
        },
        "spec": {},
    }


def test_every_field_lands_where_the_contract_says():
    frob = {
        "id": "pay",
        "name": "payments-api",
        "kind": "API",
        "namespace": "money",
        "title": "Payments",
        "description": "Moves money",
        "tags": ["rest"],
        "links": [{"url": "https://x.example.com"}],
        "labels": {"tier": "one"},
        "annotations": {"example.com/a": "b"},
        "type": "openapi",
        "lifecycle": "production",
        "owner": "team-a",
        "system": "checkout",
        "dependsOn": ["resource:db"],
        "providesApis": ["x"],
        "consumesApis": ["y"],
        "spec": {"definition": "openapi: 3.0.0", "type": "overridden"},
        "unknown": "ignored",
    }
    entity = entity_from_frob(frob, ORIGIN)
    assert entity["kind"] == "API"
    metadata = entity["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("payments-api", "money")
    assert metadata["title"] == "Payments" and metadata["tags"] == ["rest"]
    assert metadata["labels"] == {"tier": "one"}
    assert metadata["annotations"]["example.com/a"] == "b"
    assert metadata["annotations"][ID_ANNOTATION] == "pay"
    assert entity["spec"] == {
        "definition": "openapi: 3.0.0",
        "type": "openapi",
        "lifecycle": "production",
        "owner": "team-a",
        "system": "checkout",
        "dependsOn": ["resource:db"],
        "providesApis": ["x"],
        "consumesApis": ["y"],
    }
    assert "unknown" not in entity and "unknown" not in metadata


def test_a_frob_cannot_override_the_annotations_the_service_sets():
    frob = {"id": "a", "annotations": {ID_ANNOTATION: "b", MANAGED_BY: "url:evil"}}
    annotations = entity_from_frob(frob, ORIGIN)["metadata"]["annotations"]
    assert annotations[ID_ANNOTATION] == "a" and annotations[MANAGED_BY] == ORIGIN


def test_a_null_name_means_the_id():
    assert (
        entity_from_frob({"id": "a", "name": None}, ORIGIN)["metadata"]["name"] == "a"
    )


BAD_FROBS = {
    "not an object": (["id", "a"], "JSON object"),
    "no id": ({"name": "a"}, "id must be a frob id"),
    "an id that is not a DNS label": ({"id": "X-Upper"}, "id must be a frob id"),
    "empty name": ({"id": "a", "name": ""}, "name"),
    "numeric name": ({"id": "a", "name": 5}, "name"),
    "spec not an object": ({"id": "a", "spec": []}, "spec"),
    "kind not a string": ({"id": "a", "kind": 1}, "kind"),
    "annotations not an object": ({"id": "a", "annotations": ["x"]}, "annotations"),
}


@pytest.mark.parametrize("frob, rule", BAD_FROBS.values(), ids=BAD_FROBS.keys())
def test_a_frob_that_breaks_the_contract_names_the_rule(frob, rule):
    with pytest.raises(FrobError, match=rule):
        entity_from_frob(frob, ORIGIN)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b'{"frobs": {}}', b'{"items": []}', b"\xff"]
)
def test_a_document_that_is_not_a_frobs_document_is_refused(raw):
    with pytest.raises(FrobError):
        list(parse_document(raw, "file:x.json"))


def test_a_document_lists_its_frobs():
    assert list(parse_document(b'{"frobs": [{"id": "a"}]}', "u")) == [{"id": "a"}]


def test_a_document_cut_short_is_refused_after_the_frobs_read_before_the_cut():
    frobs = parse_document(b'{"frobs": [{"id": "a"}, {"id": "b"}, {"id"', "u")
    assert next(frobs) == {"id": "a"}
    with pytest.raises(FrobError, match="is not JSON"):
        list(frobs)


def test_what_only_the_standard_parser_reads_is_still_read_in_order():
    raw = b'{"frobs": [{"id": "a"}, {"id": "b", "n": 123456789012345678901234567890}]}'
    assert list(parse_document(raw, "u")) == [
        {"id": "a"},
        {"id": "b", "n": 123456789012345678901234567890},
    ]
