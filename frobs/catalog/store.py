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
import sys
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import AbstractSet, Iterable, Iterator, Mapping

from .. import jsoncodec
from ..errors import ServiceUnavailableError
from .layered import LayeredMap
from .packed import pack, unpack
from .relations import sort_relations


class StoreCorrupted(ServiceUnavailableError):
    """A stored file this service did not write whole; nothing is written over it."""


class StoredEntity:
    """One catalog entity as stored: the served entity plus its bookkeeping.

    The entity is kept as JSON, packed (see ``packed``): a small fraction of
    the memory its dicts would take in a catalog of tens of thousands.
    ``entity`` parses it at each access, so every caller gets its own copy and
    none can change the store's.  Its kind, uid and forward relations are kept
    parsed, for the indexes.
    """

    __slots__ = (
        "ref",
        "packed",
        "location_key",
        "source",
        "hash",
        "kind",
        "uid",
        "relations",
    )

    def __init__(
        self,
        ref: str,
        entity: dict,
        location_key: str | None,
        source: str,
        hash: str,
    ) -> None:
        # Refs and relation types are shared with every record naming them.
        self.ref = sys.intern(ref)
        self.packed = pack(jsoncodec.encode(entity))
        self.location_key = None if location_key is None else sys.intern(location_key)
        self.source = sys.intern(source)
        self.hash = hash
        self.kind: str = sys.intern(entity["kind"])
        self.uid: str = entity["metadata"]["uid"]
        self.relations: tuple[tuple[str, str], ...] = tuple(
            (sys.intern(r["type"]), sys.intern(r["targetRef"]))
            for r in entity.get("relations", ())
        )

    @property
    def entity(self) -> dict:
        return jsoncodec.decode(unpack(self.packed))

    def __repr__(self) -> str:
        return f"StoredEntity({self.ref!r}, source={self.source!r})"

    def as_json(self) -> dict:
        return {
            "ref": self.ref,
            "locationKey": self.location_key,
            "source": self.source,
            "hash": self.hash,
            "entity": self.entity,
        }

    def as_json_bytes(self) -> bytes:
        """``as_json()`` encoded, without parsing the entity."""
        head = jsoncodec.encode(
            {
                "ref": self.ref,
                "locationKey": self.location_key,
                "source": self.source,
                "hash": self.hash,
            }
        )
        return head[:-1] + b',"entity":' + unpack(self.packed) + b"}"

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
    relations other entities give it, and an etag that changes with them; each
    call makes a new one.

    ``version`` grows with every change a store installs; with the store's
    ``changes_since`` it lets an index catch up by touching only what changed.
    """

    def __init__(
        self,
        by_ref: Mapping[str, StoredEntity],
        incoming: Mapping[str, AbstractSet] | None = None,
        by_uid: Mapping[str, StoredEntity] | None = None,
        version: int = 0,
    ) -> None:
        self._by_ref = by_ref
        self._by_uid = by_uid
        self.incoming = LayeredMap() if incoming is None else incoming
        self.version = version

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
        return served_entity(record, self.incoming.get(record.ref, frozenset()))


def served_entity(record: StoredEntity, incoming: AbstractSet) -> dict:
    """The entity as served: with the inverse relations ``incoming`` gives it."""
    entity = record.entity
    if not incoming:
        return entity
    own = set(record.relations)
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

    def changes_since(self, version: int) -> set[str] | None:
        """Refs whose served entity may differ between the snapshot of
        ``version`` and the latest, or None when the store cannot tell."""
        return None

    def check_writable(self) -> None:
        """Raise ``OSError`` (or ``ServiceUnavailableError``, for a database
        that does not answer) when the store cannot be written."""
