"""``SearchIndex``: which entities have which search row, kept in step cheaply.

For each search key a filter has used (see ``search``), the index holds the
refs of the served entities with each value: ``postings[key][value]`` is one
ref, or a set of them when several share it (one ref alone costs no set).  A
filter is answered with set operations on those postings instead of a scan of
every entity.  A key is indexed the first time a filter names it, by one pass
over the catalog; only the keys filters use cost memory, and a change costs
one parse of the changed entity, whatever the number of keys.

``sync(snapshot)`` brings the index to a snapshot: it asks the store which refs
changed since the version it last saw and re-indexes only those, or rebuilds
when the store cannot tell.  For each indexed ref it keeps the record and the
inverse relations it indexed, so it can take out exactly the rows it put in.
A ref the store reports changed more than once is simply indexed again, so the
index is never behind the snapshot it was synced to; it may be ahead of an
older snapshot, and callers check each ref against theirs.

The index only reads snapshots.  One lock guards it; every method takes it.
"""

from __future__ import annotations

import threading
from typing import AbstractSet, Iterable

from ..bulk import collection_paused, settle
from .layered import set_changes
from .search import Alternative, search_pairs
from .store import CatalogSnapshot, CatalogStore, StoredEntity

Postings = dict[str, dict[str | None, "str | set[str]"]]


class SearchIndex:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._version = -1
        self._postings: Postings = {}
        self._wanted = Wanted(())
        self._requested: set[str] = set()
        self._indexed: dict[str, tuple[StoredEntity, AbstractSet]] = {}

    def want(self, keys: Iterable[str]) -> None:
        """Index ``keys`` at the next ``sync``, before any filter names them."""
        with self._lock:
            self._requested |= {key.lower() for key in keys}

    def sync(self, snapshot: CatalogSnapshot) -> None:
        """Bring the index up to ``snapshot``, with every key wanted."""
        with self._lock:
            self._sync(snapshot)
            if not self._requested <= self._wanted.keys:
                self._index_keys(self._requested - self._wanted.keys, snapshot)

    def matching(
        self, alternatives: list[Alternative], snapshot: CatalogSnapshot
    ) -> set[str]:
        """Refs whose entity matches one of ``alternatives`` (at least one given)."""
        with self._lock:
            self._sync(snapshot)
            keys = {key for alternative in alternatives for key in alternative}
            if not keys <= self._wanted.keys:
                self._index_keys(keys - self._wanted.keys, snapshot)
            found: set[str] = set()
            for alternative in alternatives:
                found |= self._matching_all(alternative)
            return found

    def _matching_all(self, alternative: Alternative) -> set[str]:
        candidates: set[str] | None = None
        # Equalities first: they are usually the narrowest.
        for key, statements in sorted(
            alternative.items(), key=lambda item: _is_existence(item[1])
        ):
            refs: set[str] = set()
            for statement in statements:
                if statement.value is None:
                    refs |= self._having(key)
                else:
                    refs |= _as_set(self._postings.get(key, {}).get(statement.value))
            candidates = refs if candidates is None else candidates & refs
            if not candidates:
                return set()
        return candidates or set()

    def _having(self, key: str) -> set[str]:
        refs: set[str] = set()
        for held in self._postings.get(key, {}).values():
            if isinstance(held, str):
                refs.add(held)
            else:
                refs |= held
        return refs

    # Keeping in step

    def _sync(self, snapshot: CatalogSnapshot) -> None:
        if snapshot.version == self._version:
            return
        changed = None
        if self._version >= 0:
            changed = self.store.changes_since(self._version)
        if not self._wanted.keys:
            self._version = snapshot.version  # nothing to keep in step
            return
        if changed is None:
            keys = self._wanted.keys
            self._postings, self._wanted, self._indexed = {}, Wanted(()), {}
            self._index_keys(keys, snapshot)
            return
        wanted = self._wanted
        for ref in changed:
            held = self._indexed.pop(ref, None)
            record = snapshot.get(ref)
            incoming = snapshot.incoming.get(ref, frozenset())
            if held is not None and record is held[0]:
                # Only relations other entities give it changed: no parsing.
                # (A relation it also has of its own stays.)
                if wanted.relations:
                    left, came = set_changes(held[1], incoming)
                    own = set(record.relations)
                    self._remove(ref, _relation_pairs(left - own, wanted))
                    self._add(ref, _relation_pairs(came, wanted))
            else:
                if held is not None:
                    self._remove(ref, _pairs(*held, wanted))
                if record is not None:
                    self._add(ref, _pairs(record, incoming, wanted))
            if record is not None:
                self._indexed[ref] = (record, incoming)
        self._version = snapshot.version

    def _index_keys(self, keys: Iterable[str], snapshot: CatalogSnapshot) -> None:
        """Start indexing ``keys``: one pass over ``snapshot``, the index's own."""
        with collection_paused():
            self._index_all(Wanted(keys), snapshot)
        settle()

    def _index_all(self, new: "Wanted", snapshot: CatalogSnapshot) -> None:
        for key in new.keys:
            self._postings.setdefault(key, {})
        indexed = {}
        for record in snapshot.records():
            incoming = snapshot.incoming.get(record.ref, frozenset())
            self._add(record.ref, _pairs(record, incoming, new))
            indexed[record.ref] = (record, incoming)
        self._indexed = indexed
        self._wanted = Wanted(self._wanted.keys | new.keys)
        self._version = snapshot.version

    def _add(self, ref: str, pairs: list[tuple[str, str | None]]) -> None:
        postings = self._postings
        for key, value in pairs:
            by_value = postings.get(key)
            if by_value is None:
                by_value = postings[key] = {}
            held = by_value.get(value)
            if held is None:
                by_value[value] = ref
            elif held.__class__ is str:
                if held != ref:
                    by_value[value] = {held, ref}
            else:
                held.add(ref)  # type: ignore[union-attr]

    def _remove(self, ref: str, pairs: list[tuple[str, str | None]]) -> None:
        postings = self._postings
        for key, value in pairs:
            by_value = postings.get(key)
            if by_value is None:
                continue
            held = by_value.get(value)
            if held == ref:
                del by_value[value]
                if not by_value:
                    del postings[key]
            elif isinstance(held, set):
                held.discard(ref)
                if len(held) == 1:
                    by_value[value] = next(iter(held))


class Wanted:
    """The search keys to index, and every dotted prefix of them (the paths a
    walk of an entity must enter to reach them)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)
        #: Whether any key is a relation, which other entities' changes move.
        self.relations = any(key.startswith("relations.") for key in self.keys)
        self.prefixes = frozenset(
            key[:end]
            for key in self.keys
            for end in [i for i, c in enumerate(key) if c == "."] + [len(key)]
        )


def _pairs(
    record: StoredEntity, incoming: AbstractSet, wanted: Wanted
) -> list[tuple[str, str | None]]:
    """The wanted search rows of a record as served: its own, and its inverse
    relations."""
    return search_pairs(record.entity, wanted) + _relation_pairs(incoming, wanted)


def _relation_pairs(
    incoming: Iterable[tuple[str, str]], wanted: Wanted
) -> list[tuple[str, str | None]]:
    if not wanted.relations:
        return []
    pairs = [(f"relations.{kind.lower()}", ref.lower()) for kind, ref in incoming]
    return [pair for pair in pairs if pair[0] in wanted.keys]


def _as_set(held: "str | set[str] | None") -> set[str]:
    if held is None:
        return set()
    if isinstance(held, str):
        return {held}
    return set(held)


def _is_existence(statements) -> bool:
    return all(statement.value is None for statement in statements)
