"""The catalog read API under ``/api/catalog``, shaped like Backstage's.

``GET /entities`` (``filter``, ``fields``, ``order``, ``limit``, ``offset``),
``GET /entities/by-name/<kind>/<namespace>/<name>`` and
``GET /entities/by-uid/<uid>``.  Every answer is read from a fresh store snapshot,
so a change committed by any worker shows on the next request.  This module only
reads: it never changes the catalog.
"""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from ..errors import InputError, NotFoundError
from .search import (
    Rows,
    matches,
    parse_fields,
    parse_filters,
    parse_order,
    project,
    search_rows,
    sort_key_value,
)
from .store import CatalogStore, StoredEntity

_LIST_PARAMETERS = {"filter", "fields", "order", "limit", "offset"}


class CatalogApi:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self._rows: dict[str, tuple[str, Rows]] = {}

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("catalog", __name__)
        blueprint.add_url_rule("/entities", "entities", self.list_entities)
        blueprint.add_url_rule(
            "/entities/by-name/<kind>/<namespace>/<name>", "by_name", self.by_name
        )
        blueprint.add_url_rule("/entities/by-uid/<uid>", "by_uid", self.by_uid)
        return blueprint

    def rows(self, record: StoredEntity) -> Rows:
        """Search rows of a record, cached until its etag changes."""
        etag = record.entity["metadata"]["etag"]
        cached = self._rows.get(record.ref)
        if cached is None or cached[0] != etag:
            cached = (etag, search_rows(record.entity))
            self._rows[record.ref] = cached
        return cached[1]

    def list_entities(self):
        unknown = sorted(set(request.args) - _LIST_PARAMETERS)
        if unknown:
            raise InputError(f"Unknown query parameter '{unknown[0]}'")
        filters = parse_filters(request.args.getlist("filter"))
        fields = parse_fields(request.args.getlist("fields"))
        orders = parse_order(request.args.getlist("order"))
        limit = _integer("limit", minimum=1)
        offset = _integer("offset", minimum=0) or 0

        records = [
            r for r in self.store.snapshot().records() if matches(self.rows(r), filters)
        ]
        records.sort(key=lambda r: r.ref)
        for order in reversed(orders):
            present = [r for r in records if sort_key_value(self.rows(r), order.field)]
            absent = [
                r for r in records if not sort_key_value(self.rows(r), order.field)
            ]
            present.sort(
                key=lambda r: sort_key_value(self.rows(r), order.field) or "",
                reverse=order.descending,
            )
            records = present + absent

        page = records[offset : offset + limit if limit else None]
        return _json([project(r.entity, fields) for r in page])

    def by_name(self, kind: str, namespace: str, name: str):
        record = self.store.snapshot().get(f"{kind}:{namespace}/{name}")
        if record is None:
            raise NotFoundError(
                f"No entity named '{name}' found, with kind '{kind}' in namespace "
                f"'{namespace}'"
            )
        return _json(record.entity)

    def by_uid(self, uid: str):
        record = self.store.snapshot().by_uid(uid)
        if record is None:
            raise NotFoundError(f"No entity with uid {uid}")
        return _json(record.entity)


def _integer(name: str, minimum: int) -> int | None:
    given = request.args.getlist(name)
    if not given:
        return None
    if len(given) > 1:
        raise InputError(f"request/query/{name} must be given once")
    if not re.fullmatch(r"-?[0-9]+", given[0]):
        raise InputError(f"request/query/{name} must be integer")
    value = int(given[0])
    if value < minimum:
        if name == "limit":
            raise InputError("Invalid limit, must be greater than zero")
        raise InputError(f"request/query/{name} must be >= {minimum}")
    return value


def _json(body):
    response = jsonify(body)
    response.mimetype = "application/json"
    return response
