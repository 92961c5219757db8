"""Mutations a provider applies to the catalog, and what became of each entity.

The shapes are Backstage's: a ``FullMutation`` carries every entity the provider
has now; a ``DeltaMutation`` carries ``added`` entities and ``removed`` ones, each
either a ``DeferredEntity`` or an ``EntityRefRemoval``.  Every item carries its
location key.  ``EncodedEntities`` is a list of entities kept as JSON, for
mutations of tens of thousands.

``apply_mutation`` answers with a ``MutationResult``: one ``EntityResult`` per
entity named, with one of the outcomes in ``Outcome``.  These are plain records:
nothing here reads or writes the store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, overload

from .. import jsoncodec
from ..errors import RefusedError

if TYPE_CHECKING:
    from .store import StoreTransaction


class MutationRefused(RefusedError):
    """A mutation refused whole; nothing of it was applied."""


@dataclass(frozen=True)
class DeferredEntity:
    entity: dict
    location_key: str | None = None


class EncodedEntities(Sequence[DeferredEntity]):
    """Entities kept as compact JSON until they are applied, all with one
    location key: a full mutation of tens of thousands holds a fraction of the
    memory their dicts would.  Each item read is parsed anew, so it is the
    reader's own."""

    def __init__(self, location_key: str | None, data: list[bytes] | None = None):
        self.location_key = location_key
        self._data: list[bytes] = [] if data is None else data

    def append(self, entity: dict) -> None:
        self._data.append(jsoncodec.encode_kept(entity))

    def only(self, indexes: Iterable[int]) -> "EncodedEntities":
        """The items at ``indexes``, in that order."""
        return EncodedEntities(self.location_key, [self._data[i] for i in indexes])

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> DeferredEntity: ...
    @overload
    def __getitem__(self, index: slice) -> "EncodedEntities": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return EncodedEntities(self.location_key, self._data[index])
        return DeferredEntity(jsoncodec.decode(self._data[index]), self.location_key)


@dataclass(frozen=True)
class EntityRefRemoval:
    entity_ref: str
    location_key: str | None = None


@dataclass(frozen=True)
class FullMutation:
    """Everything the provider has now (a list, or ``EncodedEntities``).

    The mass-deletion guard refuses the whole mutation when it would remove more
    than ``max_deletion_ratio`` of the provider's entities (checked above ten
    held; None turns it off), or when it is empty while the provider holds
    entities, unless ``allow_empty_source``.

    ``frozen``, called inside the store transaction, names refs the mutation must
    leave as they are: entities changed by events newer than the source this
    mutation was read from.
    """

    entities: Sequence[DeferredEntity]
    max_deletion_ratio: float | None = 0.5
    allow_empty_source: bool = False
    frozen: Callable[[StoreTransaction], set[str]] | None = None


@dataclass(frozen=True)
class DeltaMutation:
    added: Sequence[DeferredEntity] = field(default_factory=list)
    removed: list[DeferredEntity | EntityRefRemoval] = field(default_factory=list)


Mutation = FullMutation | DeltaMutation


class Outcome(str, Enum):
    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True)
class EntityResult:
    """What became of one entity; ``item`` is its index among the incoming ones."""

    ref: str
    outcome: Outcome
    message: str = ""
    held_by: str | None = None
    item: int | None = None

    def as_dict(self) -> dict:
        data = {"entityRef": self.ref, "outcome": self.outcome.value}
        if self.message:
            data["message"] = self.message
        if self.outcome is Outcome.CONFLICT:
            data["heldBy"] = self.held_by
        return data


@dataclass
class MutationResult:
    results: list[EntityResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = Counter(r.outcome.value for r in self.results)
        return {outcome.value: counted.get(outcome.value, 0) for outcome in Outcome}

    def of(self, outcome: Outcome) -> list[EntityResult]:
        return [r for r in self.results if r.outcome is outcome]
