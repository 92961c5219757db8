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

from .apply import apply_mutation
from .mutation import Mutation, MutationResult
from .store import CatalogStore, StoredEntity


class EntityProviderConnection:
    def __init__(self, store: CatalogStore, provider_name: str) -> None:
        self.store = store
        self.provider_name = provider_name

    def apply_mutation(self, mutation: Mutation) -> MutationResult:
        return apply_mutation(self.store, self.provider_name, mutation)

    def held_entities(self) -> list[StoredEntity]:
        """Every entity this provider holds, as stored now."""
        return [
            r for r in self.store.snapshot().records() if r.source == self.provider_name
        ]


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
