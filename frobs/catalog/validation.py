"""Entity validation with the rules of Backstage's catalog model.

``validate_entity`` returns every problem of an entity as a ``Problem`` naming
the field and the rule, so a provider learns at once why an entity was refused
(Backstage finds these later, and silently).  Checked: the envelope (apiVersion,
kind, metadata, root keys), ``metadata.name`` and ``namespace``, label and
annotation keys and values, and tags, with the current catalog-model patterns.

Validation only reads the entity; it never changes or completes it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

from .kinds import kind_problems
from .problem import Problem

MANAGED_BY = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN = "backstage.io/managed-by-origin-location"

ROOT_KEYS = ("apiVersion", "kind", "metadata", "spec")

_DNS_LABEL = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*$")
_OBJECT_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_KIND = re.compile(r"^[a-zA-Z][a-z0-9A-Z]*$")
_VERSION = re.compile(r"^[a-z0-9A-Z]+$")
_TAG = re.compile(r"^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$")

OBJECT_NAME_RULE = (
    "a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], "
    "at most 63 characters in total"
)
DNS_LABEL_RULE = (
    "a string that is sequences of [a-z0-9] separated by [-], "
    "at most 63 characters in total"
)
PREFIX_RULE = "a valid prefix and/or suffix"
TAG_RULE = (
    "a string that is sequences of [a-z0-9:+#] separated by [-], "
    "at most 63 characters in total"
)


def is_dns_label(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 63
        and bool(_DNS_LABEL.fullmatch(value))
    )


def is_dns_subdomain(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 253
        and all(is_dns_label(part) for part in value.split("."))
    )


def is_object_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 63
        and bool(_OBJECT_NAME.fullmatch(value))
    )


def _prefixed(
    value: Any, prefix: Callable[[Any], bool], suffix: Callable[[Any], bool]
) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("/")
    if len(parts) == 1:
        return suffix(parts[0])
    if len(parts) == 2:
        return prefix(parts[0]) and suffix(parts[1])
    return False


def is_api_version(value: Any) -> bool:
    return isinstance(value, str) and _is_api_version(value)


@functools.lru_cache(maxsize=1024)
def _is_api_version(value: str) -> bool:
    return _prefixed(
        value,
        is_dns_subdomain,
        lambda s: 1 <= len(s) <= 63 and bool(_VERSION.fullmatch(s)),
    )


def is_kind(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 63
        and bool(_KIND.fullmatch(value))
    )


def is_metadata_key(value: Any) -> bool:
    """A label or annotation key: optional DNS-subdomain prefix, object-name suffix."""
    return isinstance(value, str) and _is_metadata_key(value)


@functools.lru_cache(maxsize=4096)  # the same few keys come in every entity
def _is_metadata_key(value: str) -> bool:
    return _prefixed(value, is_dns_subdomain, is_object_name)


def is_label_value(value: Any) -> bool:
    return value == "" or is_object_name(value)


def is_tag(value: Any) -> bool:
    return (
        isinstance(value, str) and 1 <= len(value) <= 63 and bool(_TAG.fullmatch(value))
    )


def _expected(field: str, rule: str, value: Any) -> Problem:
    return Problem(field, f"is not valid; expected {rule} but found {value!r}")


def validate_entity(entity: Any) -> list[Problem]:
    """Every problem of ``entity``; an empty list means it may be stored."""
    if not isinstance(entity, dict):
        return [Problem("(entity)", "must be a JSON object")]

    problems = [
        Problem(key, "is not allowed at the root of an entity (use metadata or spec)")
        for key in entity
        if key not in ROOT_KEYS
    ]
    problems += _envelope_problems(entity)
    metadata = entity.get("metadata")
    if isinstance(metadata, dict):
        problems += _metadata_problems(metadata)
    if "spec" in entity and not isinstance(entity["spec"], dict):
        problems.append(Problem("spec", "must be an object"))
    if not problems:
        problems += kind_problems(entity)
    return problems


API_VERSION_RULE = (
    "a DNS-subdomain prefix and an alphanumeric version, such as backstage.io/v1alpha1"
)
KIND_RULE = "a letter followed by letters and digits, at most 63 characters"


def _required(
    value: Any, field: str, valid: Callable[[Any], bool], rule: str
) -> list[Problem]:
    if value is None:
        return [Problem(field, "is required")]
    if not valid(value):
        return [_expected(field, rule, value)]
    return []


def _envelope_problems(entity: dict) -> list[Problem]:
    problems = _required(
        entity.get("apiVersion"), "apiVersion", is_api_version, API_VERSION_RULE
    )
    problems += _required(entity.get("kind"), "kind", is_kind, KIND_RULE)
    if not isinstance(entity.get("metadata"), dict):
        problems.append(Problem("metadata", "is required and must be an object"))
    return problems


def _metadata_problems(metadata: dict) -> list[Problem]:
    problems = _required(
        metadata.get("name"), "metadata.name", is_object_name, OBJECT_NAME_RULE
    )

    namespace = metadata.get("namespace")
    if namespace is not None and not is_dns_label(namespace):
        problems.append(_expected("metadata.namespace", DNS_LABEL_RULE, namespace))

    if "title" in metadata and not (
        isinstance(metadata["title"], str) and metadata["title"]
    ):
        problems.append(Problem("metadata.title", "must be a non-empty string"))
    if "description" in metadata and not isinstance(metadata["description"], str):
        problems.append(Problem("metadata.description", "must be a string"))

    problems += _mapping_problems(metadata, "labels", is_label_value, OBJECT_NAME_RULE)
    problems += _mapping_problems(
        metadata, "annotations", lambda v: isinstance(v, str), "a string"
    )
    annotations = metadata.get("annotations")
    for key in (MANAGED_BY, MANAGED_BY_ORIGIN):
        value = annotations.get(key) if isinstance(annotations, dict) else None
        if not is_location_ref(value):
            problems.append(
                Problem(
                    f"metadata.annotations.{key}",
                    "is required and must be a location ref '<type>:<target>', "
                    f"such as url:https://example.com/catalog-info.yaml; got {value!r}",
                )
            )

    tags = metadata.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            problems.append(Problem("metadata.tags", "must be a list of strings"))
        else:
            problems += [
                _expected(f"metadata.tags.{i}", TAG_RULE, tag)
                for i, tag in enumerate(tags)
                if not is_tag(tag)
            ]

    links = metadata.get("links")
    if links is not None:
        if not isinstance(links, list):
            problems.append(Problem("metadata.links", "must be a list of objects"))
        else:
            for i, link in enumerate(links):
                problems += _link_problems(f"metadata.links.{i}", link)
    return problems


def _mapping_problems(
    metadata: dict, field: str, valid_value: Callable[[Any], bool], rule: str
) -> list[Problem]:
    mapping = metadata.get(field)
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        return [Problem(f"metadata.{field}", "must be an object of strings")]

    problems = []
    for key, value in mapping.items():
        if not is_metadata_key(key):
            problems.append(_expected(f"metadata.{field}.{key}", PREFIX_RULE, key))
        elif not valid_value(value):
            problems.append(_expected(f"metadata.{field}.{key}", rule, value))
    return problems


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


def is_location_ref(value: Any) -> bool:
    """``<type>:<target>``, both parts non-empty, as Backstage's location refs."""
    if not isinstance(value, str):
        return False
    kind, sep, target = value.partition(":")
    # A bare URL is not a location ref: Backstage asks for the url: prefix.
    return bool(sep and kind and target) and kind not in ("http", "https")


def _link_problems(field: str, link: Any) -> list[Problem]:
    if not isinstance(link, dict):
        return [Problem(field, "must be an object with a url")]
    problems = []
    if not isinstance(link.get("url"), str) or not _URL.fullmatch(link["url"]):
        problems.append(
            _expected(
                f"{field}.url", "an absolute URL such as https://x", link.get("url")
            )
        )
    for key in ("title", "icon", "type"):
        if key in link and not (isinstance(link[key], str) and link[key].strip()):
            problems.append(Problem(f"{field}.{key}", "must be a non-empty string"))
    return problems
