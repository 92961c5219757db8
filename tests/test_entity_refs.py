"""Entity refs parse and print as Backstage's do."""

from __future__ import annotations

import pytest

from frobs.catalog.entity_ref import EntityRefError, parse_entity_ref

PARSED = {
    "component:default/foo": ({}, ("component", "default", "foo")),
    "Component:Default/Foo keeps its case": ({}, ("Component", "Default", "Foo")),
    "default kind": ({"default_kind": "Group"}, ("Group", "default", "team-a")),
    "default namespace": ({"default_kind": "User"}, ("User", "ops", "alice")),
    "a name with a colon": ({}, ("a", "default", "b:c")),
    "a name with a slash": ({"default_kind": "X"}, ("X", "a", "b/c")),
}
REFS = {
    "component:default/foo": "component:default/foo",
    "Component:Default/Foo keeps its case": "Component:Default/Foo",
    "default kind": "team-a",
    "default namespace": "alice",
    "a name with a colon": "a:b:c",
    "a name with a slash": "a/b/c",
}


@pytest.mark.parametrize("case", PARSED, ids=PARSED.keys())
def test_parse(case):
    options, expected = PARSED[case]
    namespace = "ops" if case == "default namespace" else "default"
    ref = parse_entity_ref(REFS[case], default_namespace=namespace, **options)
    assert (ref.kind, ref.namespace, ref.name) == expected


def test_refs_print_lower_case():
    assert str(parse_entity_ref("Component:Default/MyService_1.x")) == (
        "component:default/myservice_1.x"
    )


@pytest.mark.parametrize(
    "ref", [":foo", "component:/foo", "component:default/", "ns/", "", "a:", "/c"]
)
def test_malformed_refs_are_refused_with_backstage_message(ref):
    with pytest.raises(
        EntityRefError, match=r"was not on the form|missing or empty kind"
    ):
        parse_entity_ref(ref, default_kind="Component")


def test_a_ref_without_kind_and_no_default_is_refused():
    with pytest.raises(EntityRefError, match="had missing or empty kind"):
        parse_entity_ref("default/foo")
