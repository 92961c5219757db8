"""``FrobBatch``: the entities read from one Frobs document, and whose they are.

A batch keeps, for each entity, the frob it came from, so that every refusal can
name the frob; and the frobs that could not be mapped at all, as ``invalid``
results.  ``claim`` enforces that one frob never takes an entity that another
frob holds or already named in the same batch: the later claimant is refused as
a conflict naming the holder.  A batch only reads the catalog.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

from ..catalog.entity_ref import entity_ref_of
from ..catalog.mutation import DeferredEntity, EntityResult, Outcome
from ..catalog.store import CatalogSnapshot
from .mapping import ID_ANNOTATION, FrobError, entity_from_frob, frob_id_of

logger = logging.getLogger(__name__)


def frob_of(entity: dict) -> str | None:
    """The frob id an entity was made from."""
    return entity["metadata"].get("annotations", {}).get(ID_ANNOTATION)


@dataclass
class FrobBatch:
    entities: list[DeferredEntity] = field(default_factory=list)
    refusals: list[EntityResult] = field(default_factory=list)

    @classmethod
    def mapped(
        cls, frobs: Iterable, managed_by: str, location_key: str, provider: str
    ) -> "FrobBatch":
        batch = cls()
        for frob in frobs:
            try:
                entity = entity_from_frob(frob, managed_by)
            except FrobError as exc:
                frob_id = frob_id_of(frob) or "(no id)"
                batch.refuse(provider, f"frob {frob_id}", Outcome.INVALID, str(exc))
                continue
            batch.entities.append(DeferredEntity(entity, location_key))
        return batch

    def refs(self) -> set[str]:
        return {entity_ref_of(item.entity) for item in self.entities}

    def frob_of_item(self, index: int | None) -> str:
        if index is None or index >= len(self.entities):
            return "(unknown)"
        return frob_of(self.entities[index].entity) or "(unknown)"

    def claim(self, provider: str, snapshot: CatalogSnapshot | None = None) -> None:
        """Refuse entities another frob holds (in ``snapshot``) or named first."""
        named: dict[str, str] = {}
        kept = []
        for item in self.entities:
            ref, frob_id = entity_ref_of(item.entity), frob_of(item.entity)
            holder = named.get(ref)
            if holder is None and snapshot is not None:
                record = snapshot.get(ref)
                if record is not None and record.source == provider:
                    holder = frob_of(record.entity)
            if holder is not None and holder != frob_id:
                self.refuse(
                    provider,
                    ref,
                    Outcome.CONFLICT,
                    f"frob {frob_id} names {ref}, which belongs to frob {holder}",
                )
                continue
            named.setdefault(ref, frob_id)
            kept.append(item)
        self.entities = kept

    def refuse(self, provider: str, ref: str, outcome: Outcome, message: str) -> None:
        logger.warning("%s refused %s: %s", provider, ref, message)
        self.refusals.append(EntityResult(ref, outcome, message))
