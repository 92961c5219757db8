"""``EntityProvider`` and ``EntityProviderConnection``: how entities get in.

A provider is anything that knows a part of the catalog: the only methods to
implement are ``get_provider_name`` (unique and stable: it names the provider's
share of the catalog) and ``connect``, which hands it the connection it applies
mutations through, and usually ``full_sync`` for its scheduled full sync.

The connection applies mutations in the provider's name, and lets it read back
the entities it holds (to delete by its own annotations, say).  It may be used
from any thread; each mutation is one store transaction.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Iterable

from .apply import apply_mutation
from .mutation import Mutation, MutationResult
from .query import CatalogQuery
from .search import parse_filters
from .store import CatalogStore, StoredEntity


class EntityProviderConnection:
    def __init__(
        self, store: CatalogStore, provider_name: str, query: CatalogQuery | None = None
    ) -> None:
        self.store = store
        self.provider_name = provider_name
        self.query = query or CatalogQuery(store)

    def apply_mutation(self, mutation: Mutation) -> MutationResult:
        return apply_mutation(self.store, self.provider_name, mutation)

    def will_filter_on(self, *keys: str) -> None:
        """Have the search index build these keys in the background now, so the
        first ``held_entities`` filtering on them does not wait for it."""
        self.query.index.want(keys)

    def held_entities(self, where: str | None = None) -> list[StoredEntity]:
        """The entities this provider holds, as stored now; with ``where``, a
        Backstage filter such as ``metadata.annotations.x=y``, only those matching
        it, found through the search index rather than a scan."""
        snapshot = self.store.snapshot()
        if where is None:
            records: Iterable[StoredEntity] = snapshot.records()
        else:
            found = self.query.find(parse_filters([where]), snapshot)
            records = (f.record for f in found)
        return [r for r in records if r.source == self.provider_name]


class EntityProvider(ABC):
    @abstractmethod
    def get_provider_name(self) -> str:
        """A unique, stable name for this provider."""

    @abstractmethod
    def connect(self, connection: EntityProviderConnection) -> None:
        """Receive the connection; called once, before any event or sync."""

    def full_sync(self, cancelled: threading.Event) -> MutationResult | None:
        """Make this provider's share of the catalog match its source.

        ``cancelled`` is set when the run has outlived its timeout: stop, and
        apply nothing.  Providers without a source they can list keep the default.
        """
        return None
