"""Finding entities: filters, ordering, full-text search and facets over a snapshot.

``CatalogQuery`` answers filters from a ``SearchIndex`` kept in step with the
store, so a filtered read costs what it finds, not the size of the catalog; the
sorted list of every ref is kept per snapshot version for unfiltered reads, and
the records of the latest filters for filtered ones, so paging through a query
costs each page.  The index is brought up to date in the background every
second, except while bulk work (a sync, a reload) runs in the worker, so the
index of its result is never built on top of the memory that work still holds.
Served entities are made only for what is returned, ordered or searched.  It
reads snapshots only, and is safe to share between the threads of a worker.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from typing import Any, Iterable, Sequence, overload

from .. import bulk
from ..errors import InputError
from .index import SearchIndex
from .search import MAX_VALUE_LENGTH, Alternative, Order
from .store import CatalogSnapshot, CatalogStore, StoredEntity

logger = logging.getLogger(__name__)

#: Filtered results kept for the latest version, for clients paging through them.
KEPT_QUERIES = 16


class Found:
    """One entity found: its ref and record; ``entity`` makes the served entity
    at each access, so a long list of them holds no parsed entity."""

    __slots__ = ("ref", "record", "_snapshot")

    def __init__(self, record: StoredEntity, snapshot: CatalogSnapshot) -> None:
        self.ref = record.ref
        self.record = record
        self._snapshot = snapshot

    @property
    def entity(self) -> dict:
        return self._snapshot.entity(self.record)


class Results(Sequence[Found]):
    """Entities found, in ref order, each made ``Found`` as it is read: a page of
    a long list costs the page, not the list."""

    __slots__ = ("_records", "_snapshot")

    def __init__(self, records: list[StoredEntity], snapshot: CatalogSnapshot):
        self._records = records
        self._snapshot = snapshot

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> Found: ...
    @overload
    def __getitem__(self, index: slice) -> list[Found]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [Found(r, self._snapshot) for r in self._records[index]]
        return Found(self._records[index], self._snapshot)


class CatalogQuery:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self.index = SearchIndex(store)
        self._lock = threading.Lock()
        self._all: tuple[int, list[StoredEntity]] = (-1, [])
        self._facets: dict[tuple, dict] = {}
        self._found: dict[tuple, list[StoredEntity]] = {}
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def find(
        self, filters: list[Alternative], snapshot: CatalogSnapshot | None = None
    ) -> Results:
        """Every entity matching ``filters``, by entity ref."""
        snapshot = snapshot or self.store.snapshot()
        if not filters:
            return Results(self._sorted(snapshot), snapshot)
        return Results(self._matching(filters, snapshot), snapshot)

    def _matching(
        self, filters: list[Alternative], snapshot: CatalogSnapshot
    ) -> list[StoredEntity]:
        """The records ``filters`` match, kept for the snapshot's version: a
        client paging through one query asks the same again and again."""
        key = (snapshot.version, repr(filters))
        with self._lock:
            records = self._found.get(key)
        if records is None:
            refs = sorted(self.index.matching(filters, snapshot))
            records = [r for r in map(snapshot.get, refs) if r is not None]
            with self._lock:
                self._found = {
                    k: v for k, v in self._found.items() if k[0] == snapshot.version
                }
                if len(self._found) >= KEPT_QUERIES:
                    del self._found[next(iter(self._found))]
                self._found[key] = records
        return records

    def start(self, period: float = 1.0) -> None:
        """Keep the search index in step in the background, every ``period``
        seconds, so that no request waits while a large change is indexed."""
        if self._keeper is not None and self._keeper.is_alive():
            return
        self._stop.clear()
        self._keeper = threading.Thread(
            target=self._keep, args=(period,), name="frobs-index", daemon=True
        )
        self._keeper.start()

    def stop(self) -> None:
        self._stop.set()

    def _keep(self, period: float) -> None:
        while not self._stop.wait(period):
            if bulk.running():
                # A sync or reload is under way: indexing its result now would
                # add the index to the memory its work still holds (at 50,000
                # entities, tens of megabytes more at the worker's peak).
                continue
            try:
                self.index.sync(self.store.snapshot())
            except Exception:
                logger.exception("Indexing the catalog failed; trying again shortly")

    def facets(self, filters: list[Alternative], names: list[str]) -> dict:
        """Value counts of each facet in ``names`` over the entities found.

        The answers for the latest snapshot are kept: facets are asked often and
        count every entity found.
        """
        snapshot = self.store.snapshot()
        key = (snapshot.version, repr(filters), tuple(names))
        with self._lock:
            cached = self._facets.get(key)
        if cached is None:
            found = self.find(filters, snapshot)
            cached = {name: facet_counts(found, name) for name in names}
            with self._lock:
                self._facets = {
                    k: v for k, v in self._facets.items() if k[0] == snapshot.version
                }
                self._facets[key] = cached
        return cached

    def _sorted(self, snapshot: CatalogSnapshot) -> list[StoredEntity]:
        with self._lock:
            version, records = self._all
            if version != snapshot.version:
                records = sorted(snapshot.records(), key=lambda r: r.ref)
                self._all = (snapshot.version, records)
            return records


def ordered(
    found: Sequence[Found], orders: list[Order], keep_missing: bool
) -> list[Found]:
    """Sort by each order in turn; entities lacking a field go last, or are dropped."""
    for order in reversed(orders):
        keyed = [(sort_value(f.entity, order.field), f) for f in found]
        present = [(value, f) for value, f in keyed if value]
        present.sort(key=lambda pair: pair[0], reverse=order.descending)
        found = [f for _, f in present]
        if keep_missing:
            found += [f for value, f in keyed if not value]
    return found


def sort_value(entity: dict, field: str) -> str | None:
    """The value an entity is ordered by: its least searchable value at ``field``."""
    values = [v.lower() for v in _values(entity, field) if len(v) <= MAX_VALUE_LENGTH]
    return min(values) if values else None


def full_text(found: Sequence[Found], term: str, fields: list[str]) -> list[Found]:
    """Entities with ``term`` inside one of ``fields`` (case-insensitive)."""
    term = term.lower()
    return [
        f
        for f in found
        if any(
            term in value.lower()
            for field in fields
            for value in _values(f.entity, field)
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
