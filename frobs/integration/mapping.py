"""From Frobs documents to catalog entities.

A Frobs document is ``{"frobs": [<frob>, ...]}``; ``parse_document`` checks that
shape and gives the frobs as it parses them.  ``entity_from_frob`` maps one frob
to one entity as the product contract says: ``id`` becomes the
``frobs.example.com/id`` annotation (and the name when ``name`` is absent),
``kind`` defaults to Component, the metadata and spec fields are copied by name,
and every entity carries ``backstage.io/managed-by-location`` and
``backstage.io/managed-by-origin-location`` so a webhook and a sync produce the
same entity.  A frob that cannot be mapped raises ``FrobError`` naming the rule;
mapping never reads anything and never changes its input.  The entity shares
the frob's nested values rather than copying them (a full sync maps tens of
thousands): the catalog never changes what a provider emits.
"""

from __future__ import annotations

from typing import Any, Iterator

import ijson

from .. import jsoncodec
from .router import is_frob_id

ID_ANNOTATION = "frobs.example.com/id"
MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"
API_VERSION = "backstage.io/v1alpha1"

METADATA_FIELDS = ("title", "description", "tags", "links", "labels", "annotations")
SPEC_FIELDS = (
    "type",
    "lifecycle",
    "owner",
    "system",
    "dependsOn",
    "providesApis",
    "consumesApis",
)


class FrobError(ValueError):
    """A document or frob that does not follow the Frobs contract."""


def parse_document(raw: bytes, url: str) -> Iterator[Any]:
    """The frobs listed in a Frobs document, one at a time as they are parsed.

    A listing of tens of thousands is never held parsed whole: each frob can be
    mapped and dropped before the next is read.  A document that is not one
    raises ``FrobError``, possibly after some frobs were given, so a caller
    applies nothing before it has read them all.
    """
    given = 0
    try:
        for frob in ijson.items(raw, "frobs.item", use_float=True):
            given += 1
            yield frob
    except ijson.JSONError:
        # What the streaming parser refuses, the standard library may accept
        # (integers beyond 64 bits, NaN); and it says more plainly what is wrong.
        yield from _listed(raw, url)[given:]
        return
    if given == 0:
        _listed(raw, url)  # nothing under "frobs": say why, unless it is []


def _listed(raw: bytes, url: str) -> list[Any]:
    try:
        document = jsoncodec.decode_large(raw)
    except ValueError as exc:
        raise FrobError(f"{url} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("frobs"), list):
        raise FrobError(f'{url} is not a Frobs document: expected {{"frobs": [...]}}')
    return document["frobs"]


def frob_id_of(frob: Any) -> str | None:
    if isinstance(frob, dict) and isinstance(frob.get("id"), str):
        return frob["id"]
    return None


def entity_from_frob(frob: Any, managed_by: str) -> dict:
    if not isinstance(frob, dict):
        raise FrobError("a frob must be a JSON object")
    frob_id = frob.get("id")
    if not is_frob_id(frob_id):
        raise FrobError(
            f"id must be a frob id (a DNS label: lower-case letters, digits and '-', "
            f"at most 63 characters), got {frob_id!r}"
        )

    name = frob.get("name")
    if name is None:
        name = frob_id
    elif not isinstance(name, str) or name == "":
        raise FrobError("name must be a non-empty string when present")

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": _optional_string(frob, "namespace") or "default",
    }
    for field in METADATA_FIELDS:
        if frob.get(field) is not None:
            metadata[field] = frob[field]

    annotations = metadata.get("annotations", {})
    if not isinstance(annotations, dict):
        raise FrobError("annotations must be an object of strings")
    metadata["annotations"] = {
        **annotations,
        ID_ANNOTATION: frob_id,
        MANAGED_BY: managed_by,
        MANAGED_BY_ORIGIN: managed_by,
    }

    spec = frob.get("spec", {})
    if not isinstance(spec, dict):
        raise FrobError("spec must be an object when present")
    spec = dict(spec)
    for field in SPEC_FIELDS:
        if frob.get(field) is not None:
            spec[field] = frob[field]

    return {
        "apiVersion": API_VERSION,
        "kind": _optional_string(frob, "kind") or "Component",
        "metadata": metadata,
        "spec": spec,
    }


def _optional_string(frob: dict, field: str) -> str | None:
    value = frob.get(field)
    if value is not None and not isinstance(value, str):
        raise FrobError(f"{field} must be a string when present")
    return value
