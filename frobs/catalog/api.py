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
from .store import CatalogStore

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

    def rows(self, ref: str, entity: dict) -> Rows:
        """Search rows of a served entity, cached until its etag changes."""
        etag = entity["metadata"]["etag"]
        cached = self._rows.get(ref)
        if cached is None or cached[0] != etag:
            cached = (etag, search_rows(entity))
            self._rows[ref] = cached
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

        snapshot = self.store.snapshot()
        found = []
        for record in snapshot.records():
            entity = snapshot.entity(record)
            rows = self.rows(record.ref, entity)
            if matches(rows, filters):
                found.append((record.ref, entity, rows))
        found.sort(key=lambda item: item[0])
        for order in reversed(orders):
            present = [i for i in found if sort_key_value(i[2], order.field)]
            absent = [i for i in found if not sort_key_value(i[2], order.field)]
            present.sort(
                key=lambda i: sort_key_value(i[2], order.field) or "",
                reverse=order.descending,
            )
            found = present + absent

        page = found[offset : offset + limit if limit else None]
        return _json([project(entity, fields) for _, entity, _ in page])

    def by_name(self, kind: str, namespace: str, name: str):
        snapshot = self.store.snapshot()
        record = snapshot.get(f"{kind}:{namespace}/{name}")
        if record is None:
            raise NotFoundError(
                f"No entity named '{name}' found, with kind '{kind}' in namespace "
                f"'{namespace}'"
            )
        return _json(snapshot.entity(record))

    def by_uid(self, uid: str):
        snapshot = self.store.snapshot()
        record = snapshot.by_uid(uid)
        if record is None:
            raise NotFoundError(f"No entity with uid {uid}")
        return _json(snapshot.entity(record))


def _integer(name: str, minimum: int) -> int | None:
    given = request.args.getlist(name)
    if not given:
        return None
    if len(given) > 1:
        raise InputError(f"request/query/{name} must be given once")
    if not re.fullmatch(r"-?[0-9]{1,15}", given[0]):
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
