"""``MemoryCatalog``: a process's own copy of the stored catalog.

Every store keeps the whole catalog in each worker's memory and brings it up to
date by installing the changes other workers committed.  This is that copy: it
installs a batch of changes (or replaces everything), publishes a new
``CatalogSnapshot`` for each, at a cost that grows with the change and not with
the catalog, and remembers which refs each version touched, for
``changes_since``.  ``StagedTransaction`` is the transaction stores hand out:
changes staged over the snapshot a writer started from.

It holds no lock and reads no file or database: its store serializes access and
decides what to install.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from .layered import LayeredMap
from .relations import Incoming, update_incoming
from .store import CatalogSnapshot, StoredEntity, StoreTransaction

#: How many installed versions a copy remembers for ``changes_since``.
CHANGE_FEED_LENGTH = 4096

Change = tuple[str, StoredEntity | None]  # a ref, and its record or None if gone


class MemoryCatalog:
    def __init__(self) -> None:
        self.snapshot = CatalogSnapshot(LayeredMap(), LayeredMap())
        self._by_ref: LayeredMap[str, StoredEntity] = LayeredMap()
        self._by_uid: LayeredMap[str, StoredEntity] = LayeredMap()
        self._feed: deque[tuple[int, frozenset[str] | None]] = deque(
            maxlen=CHANGE_FEED_LENGTH
        )

    def replace(self, records: Iterable[StoredEntity]) -> None:
        """Hold exactly ``records`` from now on."""
        by_ref = {record.ref: record for record in records}
        incoming, _ = update_incoming(LayeredMap(), (), by_ref.values())
        self._by_uid = LayeredMap({r.uid: r for r in by_ref.values()})
        self._by_ref = LayeredMap(by_ref)
        self._publish(incoming, None)

    def install(
        self, changes: Iterable[Change]
    ) -> tuple[list[StoredEntity], list[StoredEntity]]:
        """Apply ``changes`` in order (the last one for a ref wins); return the
        records they replaced or removed, and the records they brought."""
        final: dict[str, StoredEntity | None] = {}
        for ref, record in changes:
            final[ref] = record
        removed = [r for r in map(self._by_ref.get, final) if r is not None]
        added = [r for r in final.values() if r is not None]
        self._by_ref = self._by_ref.changed(
            [(r.ref, r) for r in added], [ref for ref, r in final.items() if not r]
        )
        kept_uids = {r.uid for r in added}
        self._by_uid = self._by_uid.changed(
            [(r.uid, r) for r in added],
            [r.uid for r in removed if r.uid not in kept_uids],
        )
        incoming, targets = update_incoming(self.snapshot.incoming, removed, added)
        self._publish(incoming, set(final) | targets)
        return removed, added

    def changes_since(self, version: int) -> set[str] | None:
        """Refs whose served entity may have changed after ``version``, or None
        when this copy no longer knows (it was replaced, or it is too old)."""
        if version == self.snapshot.version:
            return set()
        if not self._feed or self._feed[0][0] > version + 1:
            return None
        refs: set[str] = set()
        # Versions in the feed are consecutive: walk back only over the newer.
        for installed, changed in reversed(self._feed):
            if installed <= version:
                break
            if changed is None:
                return None
            refs |= changed
        return refs

    def _publish(self, incoming: Incoming, changed: set[str] | None) -> None:
        version = self.snapshot.version + 1
        self._feed.append((version, None if changed is None else frozenset(changed)))
        self.snapshot = CatalogSnapshot(self._by_ref, incoming, self._by_uid, version)


class StagedTransaction(StoreTransaction):
    """Changes staged over ``base``, the snapshot the writer started from."""

    def __init__(self, base: CatalogSnapshot) -> None:
        self.base = base
        self.staged: dict[str, StoredEntity | None] = {}

    def get(self, ref: str) -> StoredEntity | None:
        if ref in self.staged:
            return self.staged[ref]
        return self.base.get(ref)

    def records(self) -> Iterable[StoredEntity]:
        for record in self.base.records():
            if record.ref not in self.staged:
                yield record
        for record in self.staged.values():
            if record is not None:
                yield record

    def put(self, record: StoredEntity) -> None:
        self.staged[record.ref] = record

    def delete(self, ref: str) -> None:
        self.staged[ref] = None
