"""Finding entities: filters, ordering, full-text search and facets over a snapshot.

``CatalogQuery`` keeps each served entity's search rows (see ``search``) until
its etag changes, so a query re-flattens only what changed since the last one.
It reads snapshots only, and is safe to share between the threads of a worker.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import InputError
from .search import Alternative, Order, Rows, matches, search_rows, sort_key_value
from .store import CatalogSnapshot, CatalogStore


@dataclass(frozen=True)
class Found:
    ref: str
    entity: dict
    rows: Rows


class CatalogQuery:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self._rows: dict[str, tuple[str, Rows]] = {}

    def rows(self, ref: str, entity: dict) -> Rows:
        """Search rows of a served entity, cached until its etag changes."""
        etag = entity["metadata"]["etag"]
        cached = self._rows.get(ref)
        if cached is None or cached[0] != etag:
            cached = (etag, search_rows(entity))
            self._rows[ref] = cached
        return cached[1]

    def find(
        self, filters: list[Alternative], snapshot: CatalogSnapshot | None = None
    ) -> list[Found]:
        """Every entity matching ``filters``, by entity ref."""
        snapshot = snapshot or self.store.snapshot()
        found = []
        for record in snapshot.records():
            entity = snapshot.entity(record)
            rows = self.rows(record.ref, entity)
            if matches(rows, filters):
                found.append(Found(record.ref, entity, rows))
        found.sort(key=lambda f: f.ref)
        if len(self._rows) > 2 * len(snapshot) + 1000:
            # Forget the rows of entities no longer stored.
            self._rows = {
                ref: rows for ref, rows in self._rows.items() if snapshot.get(ref)
            }
        return found


def ordered(found: list[Found], orders: list[Order], keep_missing: bool) -> list[Found]:
    """Sort by each order in turn; entities lacking a field go last, or are dropped."""
    for order in reversed(orders):
        present = [f for f in found if sort_key_value(f.rows, order.field)]
        absent = [f for f in found if not sort_key_value(f.rows, order.field)]
        present.sort(
            key=lambda f: sort_key_value(f.rows, order.field) or "",
            reverse=order.descending,
        )
        found = present + (absent if keep_missing else [])
    return found


def full_text(found: list[Found], term: str, fields: list[str]) -> list[Found]:
    """Entities with ``term`` inside one of ``fields`` (case-insensitive)."""
    term = term.lower()
    return [
        f
        for f in found
        if any(
            value is not None and term in value
            for field in fields
            for value in f.rows.get(field, ())
        )
    ]


def facet_counts(found: Iterable[Found], facet: str) -> list[dict]:
    """How many entities have each value of ``facet``, values as written."""
    counts: dict[str, int] = {}
    for item in found:
        for value in set(_values(item.entity, facet)):
            if len(value) <= 200:
                counts[value] = counts.get(value, 0) + 1
    return [{"value": v, "count": counts[v]} for v in sorted(counts)]


def _values(entity: dict, path: str) -> list[str]:
    """Primitive values at a dotted path (keys matched case-insensitively)."""
    head, _, rest = path.partition(".")
    if head.lower() == "relations" and rest:
        return [
            r["targetRef"]
            for r in entity.get("relations", ())
            if r["type"].lower() == rest.lower()
        ]
    return list(_walk(entity, path.lower()))


def _walk(node: Any, path: str) -> Iterable[str]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
        return
    if not path:
        if node is not None and not isinstance(node, dict):
            yield str(node).lower() if isinstance(node, bool) else str(node)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        lowered = key.lower()
        if path == lowered:
            yield from _walk(value, "")
        elif path.startswith(lowered + "."):
            yield from _walk(value, path[len(lowered) + 1 :])


def encode_cursor(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, what: str = "cursor") -> dict:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise InputError(f"Malformed {what}, could not be parsed")
    return data
