"""Stored entities are kept packed in memory: whatever goes in comes back the
same, byte for byte, and packing makes typical entities much smaller."""

from __future__ import annotations

import json

import pytest

from frobs.catalog.packed import pack, unpack

CASES = {
    "empty object": b"{}",
    "typical entity": json.dumps(
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "frob-1", "namespace": "default", "tags": ["a"]},
            "spec": {"type": "service", "owner": "team-a"},
            "relations": [{"type": "ownedBy", "targetRef": "group:default/team-a"}],
        },
        separators=(",", ":"),
    ).encode(),
    "unicode": json.dumps({"title": "Frob é ✓ 🚀"}, ensure_ascii=False).encode(),
    "larger than the dictionary's sample": b'{"d":"' + b"x" * 100_000 + b'"}',
    "random bytes": bytes(range(256)) * 8,
}


@pytest.mark.parametrize("data", CASES.values(), ids=CASES.keys())
def test_what_is_packed_unpacks_the_same(data):
    assert unpack(pack(data)) == data


def test_typical_entities_take_a_fraction_of_their_json():
    entities = [
        json.dumps(
            {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {
                    "name": f"frob-{i}",
                    "namespace": "default",
                    "description": f"Frob number {i}, a service of team-{i % 7}.",
                    "annotations": {
                        "backstage.io/managed-by-location": "url:https://x/data.json"
                    },
                },
                "spec": {"type": "service", "owner": f"team-{i % 7}"},
            },
            separators=(",", ":"),
        ).encode()
        for i in range(100)
    ]
    packed = sum(len(pack(e)) for e in entities)
    assert packed < sum(len(e) for e in entities) / 2
