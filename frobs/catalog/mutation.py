"""Mutations a provider applies to the catalog, and what became of each entity.

The shapes are Backstage's: a ``FullMutation`` carries every entity the provider
has now; a ``DeltaMutation`` carries ``added`` entities and ``removed`` ones, each
either a ``DeferredEntity`` or an ``EntityRefRemoval``.  Every item carries its
location key.

``apply_mutation`` answers with a ``MutationResult``: one ``EntityResult`` per
entity named, with one of the outcomes in ``Outcome``.  These are plain records:
nothing here reads or writes the store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable

from ..errors import RefusedError

if TYPE_CHECKING:
    from .store import StoreTransaction


class MutationRefused(RefusedError):
    """A mutation refused whole; nothing of it was applied."""


@dataclass(frozen=True)
class DeferredEntity:
    entity: dict
    location_key: str | None = None


@dataclass(frozen=True)
class EntityRefRemoval:
    entity_ref: str
    location_key: str | None = None


@dataclass(frozen=True)
class FullMutation:
    """Everything the provider has now.

    The mass-deletion guard refuses the whole mutation when it would remove more
    than ``max_deletion_ratio`` of the provider's entities (checked above ten
    held; None turns it off), or when it is empty while the provider holds
    entities, unless ``allow_empty_source``.

    ``frozen``, called inside the store transaction, names refs the mutation must
    leave as they are: entities changed by events newer than the source this
    mutation was read from.
    """

    entities: list[DeferredEntity]
    max_deletion_ratio: float | None = 0.5
    allow_empty_source: bool = False
    frozen: Callable[[StoreTransaction], set[str]] | None = None


@dataclass(frozen=True)
class DeltaMutation:
    added: list[DeferredEntity] = field(default_factory=list)
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
