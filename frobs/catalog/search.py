"""Backstage's entity filters, field projection and ordering, over stored entities.

An entity is flattened into search rows the way Backstage's catalog does it:
dotted lower-cased keys (array indices dropped), lower-cased values, a primitive
array item giving both ``path=item`` and ``path.item=true``, each relation giving
``relations.<type>=<target ref>``, and values over 200 characters kept only as
"the key exists"; ``metadata.etag`` is not indexed.

A filter is a list of alternatives (repeated ``filter`` parameters, ORed); each
alternative is a comma-separated list of statements, ANDed, except that one key
repeated inside an alternative is ORed.  ``key=value`` is a case-insensitive
equality, a bare ``key`` asks that the key exists.

Everything here is a pure function of its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import InputError

MAX_VALUE_LENGTH = 200
_NOT_INDEXED = ("relations", "status", "attachments")

Rows = dict[str, set[str | None]]


def search_rows(entity: dict) -> Rows:
    rows: Rows = {}

    def add(key: str, value: str | None) -> None:
        if len(key) > MAX_VALUE_LENGTH:
            return
        if value is not None and len(value) > MAX_VALUE_LENGTH:
            value = None
        rows.setdefault(key, set()).add(value)

    def walk(path: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(f"{path}.{key.lower()}" if path else key.lower(), child)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, (dict, list)):
                    walk(path, item)
                else:
                    value = _text(item)
                    add(path, value)
                    if value is not None:
                        add(f"{path}.{value}", "true")
        else:
            add(path, _text(node))

    walk("", {k: v for k, v in entity.items() if k not in _NOT_INDEXED})
    rows.pop("metadata.etag", None)  # as in Backstage: an etag is not searchable
    for relation in entity.get("relations") or []:
        add(f"relations.{relation['type'].lower()}", relation["targetRef"].lower())
    return rows


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


@dataclass(frozen=True)
class Statement:
    key: str
    value: str | None  # None: the key only has to exist


Alternative = dict[str, list[Statement]]


def parse_filters(params: Iterable[str]) -> list[Alternative]:
    """Parse repeated ``filter`` parameters; an empty list matches everything."""
    alternatives = []
    for param in params:
        alternative: Alternative = {}
        for raw in param.split(","):
            statement = raw.strip()
            if not statement:
                continue
            key, sep, value = statement.partition("=")
            key = key.strip().lower()
            if not key:
                raise InputError(
                    f"Invalid filter, '{statement}' is not a valid statement "
                    "(expected a string on the form a=b or a= or a)"
                )
            parsed = Statement(key, value.strip().lower() if sep else None)
            alternative.setdefault(key, []).append(parsed)
        if alternative:
            alternatives.append(alternative)
    return alternatives


def matches(rows: Rows, alternatives: list[Alternative]) -> bool:
    if not alternatives:
        return True
    return any(_matches_all(rows, alternative) for alternative in alternatives)


def _matches_all(rows: Rows, alternative: Alternative) -> bool:
    for key, statements in alternative.items():
        values = rows.get(key)
        if values is None:
            return False
        if not any(s.value is None or s.value in values for s in statements):
            return False
    return True


def parse_fields(params: Iterable[str]) -> list[str]:
    fields = []
    for param in params:
        for field in param.split(","):
            field = field.strip()
            if not field:
                continue
            if "[" in field:
                raise InputError(
                    f'Invalid field "{field}", array type fields are not supported'
                )
            fields.append(field)
    return fields


def project(entity: dict, fields: list[str]) -> dict:
    """Keep only the dotted paths in ``fields``; keys may contain dots themselves."""
    if not fields:
        return entity
    result: dict = {}
    for field in fields:
        _copy_path(entity, result, field)
    return result


def _copy_path(source: Any, target: dict, path: str) -> None:
    if not isinstance(source, dict):
        return
    for key, value in source.items():
        if path == key:
            target[key] = value
        elif path.startswith(key + ".") and isinstance(value, dict):
            child = target.setdefault(key, {})
            if isinstance(child, dict):
                _copy_path(value, child, path[len(key) + 1 :])


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool


def parse_order(params: Iterable[str]) -> list[Order]:
    orders = []
    for param in params:
        direction, sep, field = param.partition(":")
        if not sep or direction not in ("asc", "desc") or not field.strip():
            raise InputError(
                f'Invalid order parameter "{param}", '
                'expected "<asc or desc>:<field name>"'
            )
        orders.append(Order(field.strip().lower(), direction == "desc"))
    return orders


def sort_key_value(rows: Rows, field: str) -> str | None:
    values = sorted(v for v in rows.get(field, ()) if v is not None)
    return values[0] if values else None
