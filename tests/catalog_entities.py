"""Entities for tests: valid by Backstage's rules unless a test changes them."""

from __future__ import annotations

LOCATION = "url:https://example.com/catalog-info.yaml"


def component(name: str, description: str = "", namespace: str | None = None) -> dict:
    metadata: dict = {
        "name": name,
        "annotations": {
            "backstage.io/managed-by-location": LOCATION,
            "backstage.io/managed-by-origin-location": LOCATION,
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    if description:
        metadata["description"] = description
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }
