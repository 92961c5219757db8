"""``apply_mutation``: the catalog's rules for changing what it holds.

The rules, as Backstage applies them and stricter where Backstage loses data:

- every entity is validated first; an invalid one is refused on its own
  (``invalid``, naming the ref, the field and the rule), its siblings still
  apply, and a version already stored is kept;
- a ref named twice in one mutation: the first is applied, later ones are
  ``invalid``;
- ownership by location key: a ref stored with key A is not taken by an emission
  with key B (``conflict``, naming A, logged with both keys); a ref stored without
  a key, or with the same key, is taken over and keeps its uid; the same provider
  moving its own entity to a new key gets a new uid;
- an entity identical to the stored one is ``unchanged``: no write, same etag;
- ``full`` removes what the same provider stored before and no longer emits, and
  nothing of anyone else's; it is refused whole when it would remove more than
  its deletion ratio allows, or empty a provider from an empty source;
- ``delta`` removes by entity or by ref (parsed and lower-cased); removing a ref
  another provider holds, or one stored under another location key than the
  removal names, is refused as a ``conflict``; a ref both added and removed in
  one delta is kept, updated.

What the catalog adds to each stored entity: the default namespace, a uid, an
etag, the relations derived from its spec (sorted, as are the reference arrays
Backstage sorts), and ``metadata.provenance``: the provider, location key, time,
and the event or task run that wrote it.

All of a mutation is decided and written in one store transaction, so concurrent
mutations from other threads or workers never interleave with it.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .. import jsoncodec
from ..metrics import ENTITIES_WRITTEN, MUTATIONS
from ..provenance import current_cause
from .entity_ref import (
    DEFAULT_NAMESPACE,
    EntityRefError,
    entity_ref_of,
    parse_entity_ref,
)
from .mutation import (
    DeferredEntity,
    DeltaMutation,
    EncodedEntities,
    EntityRefRemoval,
    EntityResult,
    FullMutation,
    Mutation,
    MutationRefused,
    MutationResult,
    Outcome,
)
from .problem import Problem
from .relations import sort_spec_arrays, spec_relations
from .store import CatalogSnapshot, CatalogStore, StoredEntity, StoreTransaction
from .validation import validate_entity

logger = logging.getLogger(__name__)

#: A full mutation's deletion ratio is checked only above this many held entities.
GUARD_MIN_HELD = 10

#: What the catalog writes into every stored entity's metadata.
_CATALOG_OWNED = ("uid", "etag", "provenance")


@dataclass(frozen=True)
class _Candidate:
    """An entity that passed validation, kept small until it is written: a full
    sync holds tens of thousands of them at once."""

    ref: str
    data: bytes | None  # the normalized entity as JSON; None when ``stored``
    content: str  # its content hash
    location_key: str | None
    relations: tuple[tuple[str, str], ...]
    item: int | None = None
    # Set when the entity is exactly what this record stores: not validated.
    stored: StoredEntity | None = None

    @classmethod
    def checked(
        cls,
        ref: str,
        entity: dict,
        relations: list[dict],
        location_key: str | None,
        item: int | None = None,
    ) -> "_Candidate":
        """Of an entity and its relations as ``_checked`` gives them."""
        return cls(
            ref,
            jsoncodec.encode_kept(entity),
            content_hash(entity),
            location_key,
            tuple(
                (sys.intern(r["type"]), sys.intern(r["targetRef"])) for r in relations
            ),
            item,
        )


def apply_mutation(
    store: CatalogStore, source: str, mutation: Mutation
) -> MutationResult:
    """Apply ``mutation`` from the provider named ``source``; report every entity.

    Raises ``MutationRefused`` (and changes nothing) when a full mutation trips
    the mass-deletion guard.
    """
    result = MutationResult()
    full = isinstance(mutation, FullMutation)
    items = mutation.entities if full else mutation.added
    candidates, named = _prepare(items, result, source, store.snapshot())

    with store.transaction() as transaction:
        if full and mutation.frozen is not None:
            frozen = mutation.frozen(transaction)
            for candidate in candidates:
                if candidate.ref in frozen:
                    result.results.append(
                        EntityResult(
                            candidate.ref,
                            Outcome.UNCHANGED,
                            "left as it is: changed by an event newer than this "
                            "mutation's source",
                            item=candidate.item,
                        )
                    )
            candidates = [c for c in candidates if c.ref not in frozen]
            named = named | frozen
        gone = _missing(transaction, source, mutation, named) if full else []
        # Taken from the end, in order, so each is dropped once it is written.
        candidates.reverse()
        while candidates:
            result.results.append(_upsert(transaction, source, candidates.pop()))
        if full:
            for ref in gone:
                transaction.delete(ref)
                result.results.append(EntityResult(ref, Outcome.REMOVED))
        else:
            _remove_listed(transaction, source, mutation, named, result)

    _log(source, mutation, result)
    return result


def content_hash(entity: Any) -> str:
    return hashlib.sha1(jsoncodec.canonical(entity)).hexdigest()


def entity_problems(entity: object) -> list[Problem]:
    """Every reason the catalog would refuse ``entity``; empty when it may be stored."""
    return _checked(entity)[2]


def _checked(entity: object) -> tuple[dict | None, list[dict], list[Problem]]:
    """The entity as it would be stored, its relations, and its problems."""
    problems = validate_entity(entity)
    if problems:
        return None, [], problems
    normalized = _normalized(entity)  # type: ignore[arg-type]
    relations, problems = spec_relations(normalized)
    return normalized, relations, problems


def _prepare(
    items: list[DeferredEntity],
    result: MutationResult,
    source: str,
    snapshot: CatalogSnapshot,
) -> tuple[list[_Candidate], set[str]]:
    """Validate each entity; return the acceptable ones and every ref named.

    A ref whose entity is invalid is still named, so a full mutation keeps the
    version already stored; it does not stop a later valid entity with that ref.
    An entity exactly as ``source`` stored it is not validated again here: a
    resync of an unchanged source costs a comparison per entity.
    """
    candidates = []
    named: set[str] = set()
    accepted: set[str] = set()
    for index, item in enumerate(items):
        ref = _best_ref(item.entity)
        stored = _stored_as_is(item, source, snapshot.get(ref) if ref else None)
        if stored is not None:
            entity, relations, problems = item.entity, [], []
        else:
            entity, relations, problems = _checked(item.entity)
        if ref:
            named.add(ref)
        if problems or entity is None:
            message = f"{ref or 'an entity without kind and name'}: " + "; ".join(
                map(str, problems)
            )
            result.results.append(
                EntityResult(ref or "(unnamed)", Outcome.INVALID, message, item=index)
            )
            continue

        if ref in accepted:
            result.results.append(
                EntityResult(
                    ref,
                    Outcome.INVALID,
                    f"{ref}: named more than once in one mutation; the first was "
                    "applied",
                    item=index,
                )
            )
            continue
        accepted.add(ref)
        if stored is not None:
            candidates.append(
                _Candidate(ref, None, stored.hash, item.location_key, (), index, stored)
            )
        else:
            candidates.append(
                _Candidate.checked(ref, entity, relations, item.location_key, index)
            )
    return candidates, named


def _stored_as_is(
    item: DeferredEntity, source: str, record: StoredEntity | None
) -> StoredEntity | None:
    """``record`` when it stores exactly ``item``, from ``source``, with its key."""
    if (
        record is None
        or record.source != source
        or record.location_key != item.location_key
    ):
        return None
    emitted = item.entity
    metadata = emitted.get("metadata")
    if (
        metadata.__class__ is not dict
        or not metadata.get("namespace")
        or not metadata.keys().isdisjoint(_CATALOG_OWNED)
    ):
        return None  # not as the catalog stores it: normalize and compare
    try:
        digest = content_hash(emitted)
    except (TypeError, ValueError):
        return None  # not JSON: validation says what is wrong
    # The stored hash is of the normalized entity: equal, it is the same entity.
    return record if digest == record.hash else None


def _best_ref(entity: object) -> str | None:
    try:
        return entity_ref_of(entity)  # type: ignore[arg-type]
    except (KeyError, TypeError, AttributeError):
        return None


def _normalized(entity: dict) -> dict:
    """The entity as emitted, with what the catalog owns taken out or filled in.

    A new entity, which shares with the one emitted only what it leaves as it
    is: nothing here or after changes what a provider emitted, and what is
    stored is encoded as JSON text at once.
    """
    metadata = {
        key: value
        for key, value in entity["metadata"].items()
        if key not in _CATALOG_OWNED
    }
    if not metadata.get("namespace"):
        metadata["namespace"] = DEFAULT_NAMESPACE
    entity = {**entity, "metadata": metadata}
    if isinstance(entity.get("spec"), dict):
        entity["spec"] = dict(entity["spec"])
        sort_spec_arrays(entity["spec"])  # puts new lists in place of the old
    return entity


def _as_emitted(record: StoredEntity) -> dict:
    """The entity a provider emitted to have ``record`` stored, as normalized."""
    entity = record.entity
    del entity["relations"]
    for key in _CATALOG_OWNED:
        entity["metadata"].pop(key, None)
    return entity


def _stored(candidate: _Candidate, source: str, uid: str) -> StoredEntity:
    assert candidate.data is not None
    served = jsoncodec.decode(candidate.data)
    metadata = served["metadata"]
    metadata["uid"] = uid
    metadata["provenance"] = {
        "provider": source,
        "locationKey": candidate.location_key,
        "writtenAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        **current_cause(),
    }
    served["relations"] = [
        {"type": kind, "targetRef": target} for kind, target in candidate.relations
    ]
    content = candidate.content
    # The etag changes with the content (relations come from it) and each write.
    metadata["etag"] = content_hash([content, uid, metadata["provenance"]])
    return StoredEntity(candidate.ref, served, candidate.location_key, source, content)


def _upsert(
    transaction: StoreTransaction, source: str, candidate: _Candidate
) -> EntityResult:
    result = _upserted(transaction, source, candidate)
    return EntityResult(
        result.ref, result.outcome, result.message, result.held_by, candidate.item
    )


def _upserted(
    transaction: StoreTransaction, source: str, candidate: _Candidate
) -> EntityResult:
    ref, location_key = candidate.ref, candidate.location_key
    current = transaction.get(ref)
    if candidate.stored is not None:
        if current is candidate.stored:
            return EntityResult(ref, Outcome.UNCHANGED)
        # Changed since it was compared: check it as any other entity.
        entity, relations, problems = _checked(_as_emitted(candidate.stored))
        if problems or entity is None:
            return EntityResult(
                ref, Outcome.INVALID, f"{ref}: " + "; ".join(map(str, problems))
            )
        candidate = _Candidate.checked(
            ref, entity, relations, location_key, candidate.item
        )
    if current is None:
        transaction.put(_stored(candidate, source, str(uuid.uuid4())))
        return EntityResult(ref, Outcome.ADDED)

    if current.location_key is None or current.location_key == location_key:
        if (
            current.hash == candidate.content
            and current.location_key == location_key
            and current.source == source
        ):
            return EntityResult(ref, Outcome.UNCHANGED)
        transaction.put(_stored(candidate, source, current.uid))
        return EntityResult(ref, Outcome.UPDATED)

    if current.source == source:
        transaction.put(_stored(candidate, source, str(uuid.uuid4())))
        return EntityResult(ref, Outcome.UPDATED, "moved to a new location key")

    logger.warning(
        "Source %s detected conflicting entityRef %s already referenced by %s "
        "and now also %s",
        source,
        ref,
        current.location_key,
        location_key,
    )
    return EntityResult(
        ref,
        Outcome.CONFLICT,
        f"{ref} is already stored with location key {current.location_key!r}",
        held_by=current.location_key,
    )


def _missing(
    transaction: StoreTransaction,
    source: str,
    mutation: FullMutation,
    named: set[str],
) -> list[str]:
    """What a full mutation removes: what the provider holds and no longer names."""
    held = [r.ref for r in transaction.records() if r.source == source]
    gone = [ref for ref in held if ref not in named]
    _guard(source, mutation, len(held), len(gone))
    return gone


def _guard(source: str, mutation: FullMutation, held: int, gone: int) -> None:
    """Refuse a full mutation that would empty or gut the provider's share."""
    if not mutation.entities and held and not mutation.allow_empty_source:
        raise MutationRefused(
            f"{source} emitted no entities, which would remove all {held} it holds; "
            "an empty source is refused unless allowEmptySource is set"
        )
    ratio = mutation.max_deletion_ratio
    if held > GUARD_MIN_HELD and ratio is not None and gone / held > ratio:
        raise MutationRefused(
            f"{source} would remove {gone} of the {held} entities it holds "
            f"({gone / held:.0%}), more than maxDeletionRatio {ratio}; nothing "
            "was changed (raise maxDeletionRatio if this is intended)"
        )


def _remove_listed(
    transaction: StoreTransaction,
    source: str,
    mutation: DeltaMutation,
    named: set[str],
    result: MutationResult,
) -> None:
    for item in mutation.removed:
        ref = _removal_ref(item)
        if ref is None:
            result.results.append(
                EntityResult(
                    str(getattr(item, "entity_ref", "(unnamed)")),
                    Outcome.INVALID,
                    "not an entity ref of the form kind:namespace/name",
                )
            )
            continue
        if ref in named:
            continue
        result.results.append(_remove(transaction, source, ref, item.location_key))


def _remove(
    transaction: StoreTransaction, source: str, ref: str, location_key: str | None
) -> EntityResult:
    current = transaction.get(ref)
    if current is None:
        return EntityResult(ref, Outcome.UNCHANGED, f"{ref} is not stored")

    if current.source != source or (
        location_key is not None and location_key != current.location_key
    ):
        logger.warning(
            "Source %s may not remove %s with location key %s: it is held by "
            "location key %s",
            source,
            ref,
            location_key,
            current.location_key,
        )
        return EntityResult(
            ref,
            Outcome.CONFLICT,
            f"{ref} is held by location key {current.location_key!r}",
            held_by=current.location_key,
        )

    transaction.delete(ref)
    return EntityResult(ref, Outcome.REMOVED)


def _removal_ref(item: DeferredEntity | EntityRefRemoval) -> str | None:
    if isinstance(item, DeferredEntity):
        return _best_ref(item.entity)
    try:
        return str(parse_entity_ref(item.entity_ref))
    except EntityRefError:
        return None


def _log(source: str, mutation: Mutation, result: MutationResult) -> None:
    kind = "full" if isinstance(mutation, FullMutation) else "delta"
    counts = {k: v for k, v in result.counts().items() if v}
    MUTATIONS.labels(provider=source, type=kind).inc()
    for outcome, count in counts.items():
        ENTITIES_WRITTEN.labels(provider=source, outcome=outcome).inc(count)
    cause = current_cause()
    if isinstance(mutation, FullMutation):
        items = mutation.entities
    else:
        items = [*mutation.added, *mutation.removed]
    if isinstance(items, EncodedEntities):  # one key: no need to parse them all
        keys = [str(items.location_key)] if items else ["-"]
    else:
        keys = sorted({str(item.location_key) for item in items}) or ["-"]
    logger.info(
        "Applied %s mutation from %s, location key %s (%s): %s",
        kind,
        source,
        ", ".join(keys),
        ", ".join(f"{k} {v}" for k, v in cause.items()) or "direct call",
        counts or "nothing",
    )
    for item in result.of(Outcome.INVALID):
        # Providers log refusals with their own context (which frob, which file).
        logger.info("Refused an entity from %s: %s", source, item.message)
