"""The catalog store interface: where stored entities live between requests.

A store holds ``StoredEntity`` records keyed by lower-cased entity ref.  The only
methods to implement are:

- ``snapshot()``: a consistent, read-only view of everything stored, fresh as of
  the call (a change committed by another worker is visible), cheap when nothing
  changed;
- ``transaction()``: a context manager that gives exclusive write access across
  every thread and every process sharing the store, loaded with the current state.
  Changes staged on it with ``put`` and ``delete`` are committed together when the
  block ends without an exception, and dropped otherwise.

A store must survive threads in one worker, several gunicorn workers, and a crash
at any instant: after a restart every record is whole, and a committed transaction
is either entirely there or not at all.  The mutation rules live in ``apply``;
a store never decides who may change what.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from ..errors import ServiceUnavailableError
from .relations import Incoming, sort_relations


class StoreCorrupted(ServiceUnavailableError):
    """A stored file this service did not write whole; nothing is written over it."""


@dataclass(frozen=True)
class StoredEntity:
    """One catalog entity as stored: the served entity plus its bookkeeping."""

    ref: str
    entity: dict
    location_key: str | None
    source: str
    hash: str

    @property
    def uid(self) -> str:
        return self.entity["metadata"]["uid"]

    def as_json(self) -> dict:
        return {
            "ref": self.ref,
            "locationKey": self.location_key,
            "source": self.source,
            "hash": self.hash,
            "entity": self.entity,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "StoredEntity":
        return cls(
            ref=data["ref"],
            entity=data["entity"],
            location_key=data["locationKey"],
            source=data["source"],
            hash=data["hash"],
        )


class CatalogSnapshot:
    """A read-only view of the catalog at one moment.

    ``entity(record)`` is the entity as served: the stored one with the inverse
    relations other entities give it, and an etag that changes with them.  Served
    entities are cached in ``served_cache``, which a store may share between its
    snapshots; an entry is used only while its record and relations are the same.
    """

    def __init__(
        self,
        by_ref: Mapping[str, StoredEntity],
        incoming: Incoming | None = None,
        served_cache: dict | None = None,
    ) -> None:
        self._by_ref = by_ref
        self._by_uid: dict[str, StoredEntity] | None = None
        self.incoming = incoming or {}
        self._served = {} if served_cache is None else served_cache

    def __len__(self) -> int:
        return len(self._by_ref)

    def get(self, ref: str) -> StoredEntity | None:
        return self._by_ref.get(ref.lower())

    def by_uid(self, uid: str) -> StoredEntity | None:
        if self._by_uid is None:
            self._by_uid = {r.uid: r for r in self._by_ref.values()}
        return self._by_uid.get(uid)

    def records(self) -> Iterator[StoredEntity]:
        return iter(self._by_ref.values())

    def entity(self, record: StoredEntity) -> dict:
        incoming = self.incoming.get(record.ref, frozenset())
        cached = self._served.get(record.ref)
        if cached is not None and cached[0] is record and cached[1] == incoming:
            return cached[2]
        served = _served_entity(record, incoming)
        self._served[record.ref] = (record, incoming, served)
        return served


def _served_entity(record: StoredEntity, incoming: frozenset) -> dict:
    entity = record.entity
    if not incoming:
        return entity
    own = {(r["type"], r["targetRef"]) for r in entity.get("relations", ())}
    metadata = entity["metadata"]
    extra = json.dumps(sorted(incoming)).encode()
    etag = hashlib.sha1(metadata["etag"].encode() + extra).hexdigest()
    return {
        **entity,
        "metadata": {**metadata, "etag": etag},
        "relations": sort_relations(own | incoming),
    }


class StoreTransaction(ABC):
    """Exclusive access to the store, with changes staged until commit."""

    @abstractmethod
    def get(self, ref: str) -> StoredEntity | None:
        """The record for ``ref`` as it stands in this transaction."""

    @abstractmethod
    def records(self) -> Iterable[StoredEntity]:
        """Every record as it stands in this transaction."""

    @abstractmethod
    def put(self, record: StoredEntity) -> None:
        """Stage a new or replaced record."""

    @abstractmethod
    def delete(self, ref: str) -> None:
        """Stage the removal of a record."""


class CatalogStore(ABC):
    @abstractmethod
    def snapshot(self) -> CatalogSnapshot:
        """The catalog as it stands now."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """Exclusive write access; commits when the block ends cleanly."""

    def check_writable(self) -> None:
        """Raise ``OSError`` when the store cannot be written."""
