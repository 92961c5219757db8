"""``FrobBatch``: the entities read from one Frobs document, and whose they are.

A batch keeps, for each entity, the frob it came from, so that every refusal can
name the frob; and the frobs that could not be mapped at all, as ``invalid``
results.  ``claim`` enforces that one frob never takes an entity that another
frob holds or already named in the same batch: the later claimant is refused as
a conflict naming the holder.  A batch only reads the catalog.
"""

from __future__ import annotations

import logging
from typing import Iterable

from ..catalog.entity_ref import entity_ref_of
from ..catalog.mutation import EncodedEntities, EntityResult, Outcome
from ..catalog.store import CatalogSnapshot
from .mapping import ID_ANNOTATION, FrobError, entity_from_frob, frob_id_of

logger = logging.getLogger(__name__)


def frob_of(entity: dict) -> str | None:
    """The frob id an entity was made from."""
    return entity["metadata"].get("annotations", {}).get(ID_ANNOTATION)


class FrobBatch:
    """The entities mapped from a document's frobs, kept as JSON (a full sync
    maps tens of thousands), with each one's ref and frob."""

    def __init__(self, location_key: str) -> None:
        self.entities = EncodedEntities(location_key)
        self.refusals: list[EntityResult] = []
        self._refs: list[str] = []
        self._frobs: list[str | None] = []

    @classmethod
    def mapped(
        cls, frobs: Iterable, managed_by: str, location_key: str, provider: str
    ) -> "FrobBatch":
        batch = cls(location_key)
        for frob in frobs:
            try:
                entity = entity_from_frob(frob, managed_by)
            except FrobError as exc:
                frob_id = frob_id_of(frob) or "(no id)"
                batch.refuse(provider, f"frob {frob_id}", Outcome.INVALID, str(exc))
                continue
            batch.entities.append(entity)
            batch._refs.append(entity_ref_of(entity))
            batch._frobs.append(frob_of(entity))
        return batch

    def refs(self) -> set[str]:
        return set(self._refs)

    def refs_of(self, frob_ids: set[str]) -> set[str]:
        """The refs of the entities mapped from ``frob_ids``."""
        return {ref for ref, f in zip(self._refs, self._frobs) if f in frob_ids}

    def frob_of_item(self, index: int | None) -> str:
        if index is None or index >= len(self._frobs):
            return "(unknown)"
        return self._frobs[index] or "(unknown)"

    def claim(self, provider: str, snapshot: CatalogSnapshot | None = None) -> None:
        """Refuse entities another frob holds (in ``snapshot``) or named first."""
        named: dict[str, str | None] = {}
        kept = []
        for index, (ref, frob_id) in enumerate(zip(self._refs, self._frobs)):
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
            kept.append(index)
        if len(kept) < len(self._refs):
            self.entities = self.entities.only(kept)
            self._refs = [self._refs[i] for i in kept]
            self._frobs = [self._frobs[i] for i in kept]

    def refuse(self, provider: str, ref: str, outcome: Outcome, message: str) -> None:
        logger.warning("%s refused %s: %s", provider, ref, message)
        self.refusals.append(EntityResult(ref, outcome, message))
