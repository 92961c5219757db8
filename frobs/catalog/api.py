"""The catalog read API under ``/api/catalog``, shaped like Backstage's.

- ``GET /entities``: ``filter``, ``fields``, ``order``, and paging with ``limit``,
  ``offset`` or the ``after`` cursor of the ``Link: <...>; rel="next"`` header;
- ``GET /entities/by-query``: ``filter``, ``fields``, ``limit`` (200 by default),
  ``offset``, ``orderField``, ``fullTextFilterTerm``/``Fields``, ``totalItems``,
  and ``cursor`` paging with ``pageInfo.nextCursor``/``prevCursor``;
- ``POST /entities/by-refs``: entities in request order, ``null`` for unknown refs,
  streamed as they are encoded, so the answer's memory does not grow with it;
- ``GET /entities/by-name/<kind>/<namespace>/<name>``, ``GET /entities/by-uid/<uid>``;
- ``GET /entity-facets``: value counts per ``facet``.

Every answer is read from a fresh store snapshot, so a change committed by any
worker shows on the next request.  Cursors are opaque base64 JSON; by-query
cursors never carry a ``query`` key, so Backstage's client keeps using GET.
Limitation: cursors page by position, so a page can repeat or skip an entity
when the catalog changes between two requests.  This module only reads.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, request

from .. import jsoncodec
from ..errors import InputError, NotFoundError
from ..request_body import read_body
from .entity_ref import EntityRefError, parse_entity_ref
from .query import (
    CatalogQuery,
    Found,
    decode_cursor,
    encode_cursor,
    full_text,
    ordered,
)
from .search import Order, parse_fields, parse_filters, parse_order, project
from .store import CatalogStore

_LIST_PARAMETERS = {"filter", "fields", "order", "limit", "offset", "after"}
_QUERY_PARAMETERS = {
    "filter",
    "fields",
    "limit",
    "offset",
    "orderField",
    "cursor",
    "fullTextFilterTerm",
    "fullTextFilterFields",
    "totalItems",
}
DEFAULT_QUERY_LIMIT = 200


class CatalogApi:
    def __init__(self, store: CatalogStore, query: CatalogQuery | None = None) -> None:
        self.store = store
        self.query = query or CatalogQuery(store)

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("catalog", __name__)
        add = blueprint.add_url_rule
        add("/entities", "entities", self.list_entities)
        add("/entities/by-query", "by_query", self.by_query)
        add("/entities/by-refs", "by_refs", self.by_refs, methods=["POST"])
        add("/entities/by-name/<kind>/<namespace>/<name>", "by_name", self.by_name)
        add("/entities/by-uid/<uid>", "by_uid", self.by_uid)
        add("/entity-facets", "facets", self.facets)
        return blueprint

    # GET /entities

    def list_entities(self):
        _known_parameters(_LIST_PARAMETERS)
        fields = parse_fields(request.args.getlist("fields"))
        limit = _integer("limit", minimum=1)
        offset = _integer("offset", minimum=0) or 0
        after = _once("after")
        filter_params = request.args.getlist("filter")
        order_params = request.args.getlist("order")
        if after is not None:
            page = decode_cursor(after, "after cursor")
            limit, offset = page.get("limit"), page.get("offset")
            if not (_count(limit) and limit > 0 and _count(offset)):
                raise InputError("Malformed after cursor, could not be parsed")

        found = self.query.find(parse_filters(filter_params))
        found = ordered(found, parse_order(order_params), keep_missing=True)
        end = offset + limit if limit else None
        response = _json([project(f.entity, fields) for f in found[offset:end]])
        if end is not None and end < len(found):
            response.headers["Link"] = _next_link(
                filter_params, order_params, request.args.getlist("fields"), limit, end
            )
        return response

    # GET /entities/by-query

    def by_query(self):
        _known_parameters(_QUERY_PARAMETERS)
        fields = parse_fields(request.args.getlist("fields"))
        limit = _integer("limit", minimum=0)
        limit = DEFAULT_QUERY_LIMIT if limit is None else limit
        cursor = _once("cursor")
        if cursor is not None:
            state = _query_state(decode_cursor(cursor))
        else:
            state = self._first_query_state()

        found = self._query_result(state)
        total = len(found) if state["totalItems"] is None else state["totalItems"]
        offset = state["offset"]
        items = found[offset : offset + limit]
        page_info = {}
        if offset + limit < len(found) and limit:
            page_info["nextCursor"] = encode_cursor(
                {**state, "offset": offset + limit, "totalItems": total}
            )
        if offset > 0 and cursor is not None:
            page_info["prevCursor"] = encode_cursor(
                {**state, "offset": max(offset - limit, 0), "totalItems": total}
            )
        return _json(
            {
                "items": [project(f.entity, fields) for f in items],
                "totalItems": total if state["countTotal"] else 0,
                "pageInfo": page_info,
            }
        )

    def _first_query_state(self) -> dict:
        order_fields = request.args.getlist("orderField")
        order = None
        if order_fields:
            field, _, direction = order_fields[0].rpartition(",")
            if direction not in ("asc", "desc") or not field.strip():
                raise InputError("Invalid order field order, must be asc or desc")
            order = {"field": field.strip().lower(), "desc": direction == "desc"}
        total = _once("totalItems") or "include"
        if total not in ("include", "exclude"):
            raise InputError(
                "request/query/totalItems must be equal to one of the allowed values: "
                "include, exclude"
            )
        term = (_once("fullTextFilterTerm") or "").strip()
        text_fields = [
            f.strip().lower()
            for param in request.args.getlist("fullTextFilterFields")
            for f in param.split(",")
            if f.strip()
        ]
        filters = request.args.getlist("filter")
        parse_filters(filters)  # refuse a bad filter on the first page
        return {
            "filter": filters,
            "order": order,
            "term": term,
            "textFields": text_fields,
            "offset": _integer("offset", minimum=0) or 0,
            "totalItems": None,
            "countTotal": total == "include",
        }

    def _query_result(self, state: dict) -> list[Found]:
        found = self.query.find(parse_filters(state["filter"]))
        order = state["order"]
        if order:
            found = ordered(
                found, [Order(order["field"], order["desc"])], keep_missing=False
            )
        if state["term"]:
            fields = state["textFields"] or [
                order["field"] if order else "metadata.uid"
            ]
            found = full_text(found, state["term"], fields)
        return found

    # POST /entities/by-refs

    def by_refs(self):
        _known_parameters({"filter"})
        refs, fields = _batch_request()
        fields = parse_fields(fields)
        filters = parse_filters(request.args.getlist("filter"))
        snapshot = self.store.snapshot()
        allowed = None
        if filters:
            allowed = {f.ref for f in self.query.find(filters, snapshot)}

        def items():
            for ref in refs:
                record = snapshot.get(_full_ref(ref))
                if record is None or (
                    allowed is not None and record.ref not in allowed
                ):
                    yield None
                else:
                    yield project(snapshot.entity(record), fields)

        # Streamed: any number of refs may be asked for, and the whole answer
        # would take many times its own size in memory if it were built first.
        chunks = jsoncodec.encode_array(items(), before=b'{"items":', after=b"}")
        return Response(chunks, content_type=current_app.json.mimetype)

    # GET /entities/by-name, /entities/by-uid

    def by_name(self, kind: str, namespace: str, name: str):
        _known_parameters(set())
        snapshot = self.store.snapshot()
        record = snapshot.get(f"{kind}:{namespace}/{name}")
        if record is None:
            raise NotFoundError(
                f"No entity named '{name}' found, with kind '{kind}' in namespace "
                f"'{namespace}'"
            )
        return _json(snapshot.entity(record))

    def by_uid(self, uid: str):
        _known_parameters(set())
        snapshot = self.store.snapshot()
        record = snapshot.by_uid(uid)
        if record is None:
            raise NotFoundError(f"No entity with uid {uid}")
        return _json(snapshot.entity(record))

    # GET /entity-facets

    def facets(self):
        _known_parameters({"facet", "filter"})
        facets = request.args.getlist("facet")
        if not facets:
            raise InputError("request/query must have required property 'facet'")
        filters = parse_filters(request.args.getlist("filter"))
        return _json({"facets": self.query.facets(filters, facets)})


_MALFORMED = (
    "Malformed request body (did you remember to specify an application/json "
    "content type?), Validation error: "
)

#: How many wrong items of a list a by-refs error names before it counts the rest.
_NAMED_PROBLEMS = 3


def _batch_request() -> tuple[list[str], list[str]]:
    """A by-refs body's ``entityRefs`` and ``fields``, or an ``InputError`` that
    starts as Backstage's does and says what is wrong where."""
    if not request.is_json:
        given = request.mimetype or "missing"
        raise InputError(
            f'{_MALFORMED}Required at "entityRefs" (the body was not read: its '
            f"Content-Type is {given}; send application/json)"
        )
    try:
        body = jsoncodec.decode_large(read_body())
    except ValueError as error:
        raise InputError(f"{_MALFORMED}the body is not valid JSON: {error}") from None
    except RecursionError:
        raise InputError(f"{_MALFORMED}the body is nested too deeply") from None

    if not isinstance(body, dict):
        problems = [f"Expected object, received {jsoncodec.type_name(body)}"]
    else:
        problems = _string_list_problems(body, "entityRefs", required=True)
        problems += _string_list_problems(body, "fields", required=False)
    if problems:
        raise InputError(_MALFORMED + "; ".join(problems))
    return body["entityRefs"], body.get("fields") or []


def _string_list_problems(body: dict, key: str, required: bool) -> list[str]:
    """What keeps ``body[key]`` from being a list of strings, as zod says it."""
    if key not in body or (body[key] is None and not required):
        return [f'Required at "{key}"'] if required else []
    value = body[key]
    if not isinstance(value, list):
        return [f'Expected array, received {jsoncodec.type_name(value)} at "{key}"']

    problems, wrong = [], 0
    for position, item in enumerate(value):
        if isinstance(item, str):
            continue
        wrong += 1
        if wrong <= _NAMED_PROBLEMS:
            received = jsoncodec.type_name(item)
            problems.append(
                f'Expected string, received {received} at "{key}[{position}]"'
            )
    if wrong > _NAMED_PROBLEMS:
        problems.append(
            f'and {wrong - _NAMED_PROBLEMS} more items of "{key}" that are no strings'
        )
    return problems


def _query_state(data: dict) -> dict:
    """A by-query cursor's state, refused unless every value has its type."""
    data.setdefault("countTotal", True)
    order, total = data.get("order"), data.get("totalItems")
    valid = (
        _strings(data.get("filter"))
        and (order is None or _order_state(order))
        and isinstance(data.get("term"), str)
        and _strings(data.get("textFields"))
        and _count(data.get("offset"))
        and (total is None or _count(total))
        and isinstance(data["countTotal"], bool)
    )
    if not valid:
        raise InputError("Malformed cursor: it was not made by this catalog")
    return data


def _order_state(order: object) -> bool:
    return (
        isinstance(order, dict)
        and isinstance(order.get("field"), str)
        and isinstance(order.get("desc"), bool)
    )


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _count(value: object) -> bool:
    """A whole number >= 0 (JSON's true and false are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _full_ref(ref: str) -> str:
    try:
        parsed = parse_entity_ref(ref)
    except EntityRefError:
        return ""
    # by-refs takes full refs only, as in Backstage: "svc-2" is no ref.
    if ":" not in ref or "/" not in ref:
        return ""
    return str(parsed)


def _next_link(filters, orders, fields, limit: int, offset: int) -> str:
    params = [("filter", f) for f in filters] + [("order", o) for o in orders]
    params += [("fields", f) for f in fields]
    params.append(("after", encode_cursor({"limit": limit, "offset": offset})))
    return f'</entities?{urlencode(params)}>; rel="next"'


def _known_parameters(known: set[str]) -> None:
    unknown = sorted(set(request.args) - known)
    if unknown:
        raise InputError(f"Unknown query parameter '{unknown[0]}'")


def _once(name: str) -> str | None:
    """A query parameter that may be given at most once."""
    given = request.args.getlist(name)
    if len(given) > 1:
        raise InputError(f"request/query/{name} must be given once")
    return given[0] if given else None


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
    return jsonify(body)
