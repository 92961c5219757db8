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
    for key, value in search_pairs(entity):
        rows.setdefault(key, set()).add(value)
    return rows


def search_pairs(entity: dict, only: Any = None) -> list[tuple[str, str | None]]:
    """The search rows of ``entity`` as ``(key, value)`` pairs, maybe repeated.

    With ``only`` (an object with ``keys`` and their dotted ``prefixes``, as the
    index's ``Wanted``), only the rows of those keys, and only the parts of the
    entity that can hold them are walked.
    """
    # A walk without closures: they would make reference cycles, which only the
    # cyclic collector frees, and indexing runs with it paused.
    walk = _Walk(only)
    walk.dict("", {k: v for k, v in entity.items() if k not in _NOT_INDEXED})
    for relation in entity.get("relations") or ():
        walk.append(
            (f"relations.{relation['type'].lower()}", relation["targetRef"].lower())
        )
    return walk.pairs


class _Walk:
    __slots__ = ("keys", "pairs", "prefixes")

    def __init__(self, only: Any) -> None:
        self.pairs: list[tuple[str, str | None]] = []
        self.keys = self.prefixes = None
        if only is not None:
            self.keys, self.prefixes = only.keys, only.prefixes

    def append(self, pair: tuple[str, str | None]) -> None:
        if self.keys is None or pair[0] in self.keys:
            self.pairs.append(pair)

    def dict(self, prefix: str, node: dict) -> None:
        prefixes = self.prefixes
        for key, child in node.items():
            path = prefix + key.lower()
            if len(path) > MAX_VALUE_LENGTH:
                continue  # and so is every key below it
            if prefixes is not None and path not in prefixes:
                continue
            kind = child.__class__
            if kind is dict:
                self.dict(path + ".", child)
            elif kind is list:
                self.list(path, child)
            elif path != "metadata.etag":  # as in Backstage: not searchable
                self.append((path, _scalar(child)))

    def list(self, path: str, items: list) -> None:
        for item in items:
            kind = item.__class__
            if kind is dict:
                self.dict(path + ".", item)
            elif kind is list:
                self.list(path, item)
            else:
                value = _scalar(item)
                self.append((path, value))
                if value is not None and len(path) + len(value) < MAX_VALUE_LENGTH:
                    self.append((f"{path}.{value}", "true"))


def _scalar(value: Any) -> str | None:
    text = value.lower() if value.__class__ is str else _text(value)
    if text is not None and len(text) > MAX_VALUE_LENGTH:
        return None
    return text


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
