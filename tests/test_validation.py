"""Entity validation agrees with Backstage's catalog model, case by case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from frobs.catalog.validation import (
    is_dns_label,
    is_label_value,
    is_metadata_key,
    is_object_name,
    is_tag,
    validate_entity,
)

CASES = json.loads(
    (Path(__file__).parent / "fixtures" / "validation-cases.json").read_text()
)["cases"]

CHECKS = {
    "entity-name": is_object_name,
    "namespace": is_dns_label,
    "label-key": is_metadata_key,
    "annotation-key": is_metadata_key,
    "label-value": is_label_value,
    "annotation-value": lambda v: isinstance(v, str),
    "tag": is_tag,
}


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{c['field']}:{c.get('value_expr', c['value'])!s:.40}" for c in CASES],
)
def test_field_rule_agrees_with_backstage(case):
    assert CHECKS[case["field"]](case["value"]) is case["valid"]


def entity(**changes) -> dict:
    base = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "svc",
            "annotations": {
                "backstage.io/managed-by-location": "url:x",
                "backstage.io/managed-by-origin-location": "url:x",
            },
        },
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }
    for path, value in changes.items():
        node = base
        *parents, last = path.split("__")
        for parent in parents:
            node = node[parent]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return base


ENVELOPES = {
    "a valid entity": (entity(), None),
    "apiVersion missing": (entity(apiVersion=None), "apiVersion"),
    "apiVersion with two slashes": (entity(apiVersion="a/b/c"), "apiVersion"),
    "apiVersion with a dash in the version": (
        entity(apiVersion="backstage.io/v1-alpha"),
        "apiVersion",
    ),
    "kind missing": (entity(kind=None), "kind"),
    "kind starting with a digit": (entity(kind="9Component"), "kind"),
    "metadata not an object": (entity(metadata="x"), "metadata"),
    "name missing": (entity(metadata__name=None), "metadata.name"),
    "name with a space": (entity(metadata__name="my service"), "metadata.name"),
    "name with a trailing newline": (entity(metadata__name="svc\n"), "metadata.name"),
    "name of 64 characters": (entity(metadata__name="a" * 64), "metadata.name"),
    "namespace upper case": (
        entity(metadata__namespace="Default"),
        "metadata.namespace",
    ),
    "an unknown root key": (entity(status={}), "status"),
    "spec not an object": (entity(spec=[]), "spec"),
    "a tag with upper case": (entity(metadata__tags=["Java"]), "metadata.tags.0"),
    "an empty title": (entity(metadata__title=""), "metadata.title"),
    "an empty description is fine": (entity(metadata__description=""), None),
    "a label value with a slash": (
        entity(metadata__labels={"team": "a/b"}),
        "metadata.labels.team",
    ),
    "a non-string annotation": (
        entity(metadata__annotations={"a.io/x": 7}),
        "metadata.annotations.a.io/x",
    ),
}


@pytest.mark.parametrize("value, field", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_entity_validation_names_the_field(value, field):
    problems = validate_entity(value)
    if field is None:
        assert problems == []
    else:
        assert field in [p.field for p in problems], problems


def of_kind(kind: str, api_version: str = "backstage.io/v1alpha1", **spec) -> dict:
    base = entity()
    base.update(kind=kind, apiVersion=api_version, spec=spec)
    return base


GOOD_SPECS = {
    "Component": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    "API": {"type": "openapi", "lifecycle": "beta", "owner": "a", "definition": "x"},
    "Resource": {"type": "database", "owner": "team-a"},
    "System": {"owner": "team-a"},
    "Domain": {"owner": "team-a"},
    "Group": {"type": "team", "children": []},
    "User": {"memberOf": []},
    "Location": {},
}

KIND_CASES = {
    **{f"a minimal {k}": (of_kind(k, **spec), None) for k, spec in GOOD_SPECS.items()},
    "a v1beta1 Component": (
        of_kind("Component", "backstage.io/v1beta1", **GOOD_SPECS["Component"]),
        None,
    ),
    "a Template": (
        of_kind(
            "Template",
            "scaffolder.backstage.io/v1beta3",
            type="service",
            steps=[{"action": "fetch:template"}],
        ),
        None,
    ),
    "extra spec fields are allowed": (
        of_kind("System", owner="a", anything={"goes": 1}),
        None,
    ),
    "an unknown kind": (of_kind("Frobnicator", owner="a"), "kind"),
    "a lower-case kind": (of_kind("component", **GOOD_SPECS["Component"]), "kind"),
    "a Template with the catalog apiVersion": (
        of_kind("Template", type="x", steps=[]),
        "kind",
    ),
    "a Component with a foreign apiVersion": (
        of_kind("Component", "example.com/v1", **GOOD_SPECS["Component"]),
        "kind",
    ),
    "a Component without an owner": (
        of_kind("Component", type="service", lifecycle="production"),
        "spec.owner",
    ),
    "a Component with an empty type": (
        of_kind("Component", type="", lifecycle="production", owner="a"),
        "spec.type",
    ),
    "an API whose definition is an object": (
        of_kind("API", type="o", lifecycle="l", owner="a", definition={"$text": "u"}),
        "spec.definition",
    ),
    "a Group without children": (of_kind("Group", type="team"), "spec.children"),
    "a User whose memberOf is a string": (
        of_kind("User", memberOf="team-a"),
        "spec.memberOf",
    ),
    "a Location with an unknown presence": (
        of_kind("Location", presence="sometimes"),
        "spec.presence",
    ),
    "a Template step without an action": (
        of_kind("Template", "scaffolder.backstage.io/v1beta3", type="s", steps=[{}]),
        "spec.steps.0.action",
    ),
    "a Component without spec": (
        {k: v for k, v in of_kind("Component").items() if k != "spec"},
        "spec",
    ),
    "no managed-by-location": (
        entity(metadata__annotations={}),
        "metadata.annotations.backstage.io/managed-by-location",
    ),
    "a managed-by-location that is not a location ref": (
        entity(
            metadata__annotations={
                "backstage.io/managed-by-location": "https://x/y",
                "backstage.io/managed-by-origin-location": "url:https://x/y",
            }
        ),
        "metadata.annotations.backstage.io/managed-by-location",
    ),
    "a link that is not a URL": (
        entity(metadata__links=[{"url": "invalid"}]),
        "metadata.links.0.url",
    ),
    "a link with a blank title": (
        entity(metadata__links=[{"url": "https://x", "title": " "}]),
        "metadata.links.0.title",
    ),
}


@pytest.mark.parametrize("value, field", KIND_CASES.values(), ids=KIND_CASES.keys())
def test_kind_rules(value, field):
    problems = validate_entity(value)
    if field is None:
        assert problems == []
    else:
        assert field in [p.field for p in problems], problems
