"""``apply_mutation``: the catalog's rules for changing what it holds.

The rules, as Backstage applies them and stricter where Backstage loses data:

- every entity is validated first; an invalid one is refused on its own
  (``invalid``, naming the field and the rule), its siblings still apply, and a
  version already stored is kept;
- a ref named twice in one mutation: the first is applied, later ones are
  ``invalid``;
- ownership by location key: a ref stored with key A is not taken by an emission
  with key B (``conflict``, naming A, logged); a ref stored without a key, or with
  the same key, is taken over and keeps its uid; the same provider moving its own
  entity to a new key gets a new uid;
- an entity identical to the stored one is ``unchanged``: no write, same etag;
- ``full`` removes what the same provider stored before and no longer emits, and
  nothing of anyone else's;
- ``delta`` removes by entity or by ref (parsed and lower-cased); removing a ref
  another provider holds is refused as a ``conflict``; a ref both added and
  removed in one delta is kept, updated.

All of a mutation is decided and written in one store transaction, so concurrent
mutations from other threads or workers never interleave with it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import uuid

from .entity_ref import (
    DEFAULT_NAMESPACE,
    EntityRefError,
    entity_ref_of,
    parse_entity_ref,
)
from .mutation import (
    DeferredEntity,
    DeltaMutation,
    EntityRefRemoval,
    EntityResult,
    FullMutation,
    Mutation,
    MutationResult,
    Outcome,
)
from .store import CatalogStore, StoredEntity, StoreTransaction
from .validation import validate_entity

logger = logging.getLogger(__name__)


def apply_mutation(
    store: CatalogStore, source: str, mutation: Mutation
) -> MutationResult:
    """Apply ``mutation`` from the provider named ``source``; report every entity."""
    result = MutationResult()
    incoming = (
        mutation.entities if isinstance(mutation, FullMutation) else mutation.added
    )
    accepted, named = _prepare(incoming, result)

    with store.transaction() as transaction:
        for ref, entity, location_key in accepted:
            result.results.append(
                _upsert(transaction, source, ref, entity, location_key)
            )
        if isinstance(mutation, FullMutation):
            _remove_missing(transaction, source, named, result)
        else:
            _remove_listed(transaction, source, mutation, named, result)

    _log(source, mutation, result)
    return result


def content_hash(entity: dict) -> str:
    encoded = json.dumps(
        entity, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha1(encoded.encode()).hexdigest()


def _prepare(
    items: list[DeferredEntity], result: MutationResult
) -> tuple[list[tuple[str, dict, str | None]], set[str]]:
    """Validate each entity; return the acceptable ones and every ref named."""
    accepted = []
    named: set[str] = set()
    for item in items:
        problems = validate_entity(item.entity)
        if problems:
            ref = _best_ref(item.entity)
            if ref:
                named.add(ref)
            result.results.append(
                EntityResult(
                    ref or "(unnamed)", Outcome.INVALID, "; ".join(map(str, problems))
                )
            )
            continue

        ref = entity_ref_of(item.entity)
        if ref in named:
            result.results.append(
                EntityResult(
                    ref,
                    Outcome.INVALID,
                    "named more than once in one mutation; the first was applied",
                )
            )
            continue
        named.add(ref)
        accepted.append((ref, _normalized(item.entity), item.location_key))
    return accepted, named


def _best_ref(entity: object) -> str | None:
    try:
        return entity_ref_of(entity)  # type: ignore[arg-type]
    except (KeyError, TypeError, AttributeError):
        return None


def _normalized(entity: dict) -> dict:
    """The entity as emitted, with the default namespace filled in."""
    entity = copy.deepcopy(entity)
    metadata = entity["metadata"]
    metadata.pop("uid", None)
    metadata.pop("etag", None)
    if not metadata.get("namespace"):
        metadata["namespace"] = DEFAULT_NAMESPACE
    return entity


def _stored(
    ref: str, entity: dict, location_key: str | None, source: str, uid: str
) -> StoredEntity:
    served = copy.deepcopy(entity)
    served["metadata"]["uid"] = uid
    served.setdefault("relations", [])
    served["metadata"]["etag"] = content_hash(served)
    return StoredEntity(ref, served, location_key, source, content_hash(entity))


def _upsert(
    transaction: StoreTransaction,
    source: str,
    ref: str,
    entity: dict,
    location_key: str | None,
) -> EntityResult:
    current = transaction.get(ref)
    if current is None:
        transaction.put(_stored(ref, entity, location_key, source, str(uuid.uuid4())))
        return EntityResult(ref, Outcome.ADDED)

    if current.location_key is None or current.location_key == location_key:
        if (
            current.hash == content_hash(entity)
            and current.location_key == location_key
            and current.source == source
        ):
            return EntityResult(ref, Outcome.UNCHANGED)
        transaction.put(_stored(ref, entity, location_key, source, current.uid))
        return EntityResult(ref, Outcome.UPDATED)

    if current.source == source:
        transaction.put(_stored(ref, entity, location_key, source, str(uuid.uuid4())))
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
        f"already stored with location key {current.location_key!r}",
        held_by=current.location_key,
    )


def _remove_missing(
    transaction: StoreTransaction, source: str, named: set[str], result: MutationResult
) -> None:
    gone = [
        r.ref
        for r in transaction.records()
        if r.source == source and r.ref not in named
    ]
    for ref in gone:
        transaction.delete(ref)
        result.results.append(EntityResult(ref, Outcome.REMOVED))


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

        current = transaction.get(ref)
        if current is None:
            result.results.append(EntityResult(ref, Outcome.UNCHANGED, "not stored"))
        elif current.source != source:
            logger.warning(
                "Source %s may not remove %s, which is held by location key %s",
                source,
                ref,
                current.location_key,
            )
            result.results.append(
                EntityResult(
                    ref,
                    Outcome.CONFLICT,
                    "held by another provider",
                    held_by=current.location_key,
                )
            )
        else:
            transaction.delete(ref)
            result.results.append(EntityResult(ref, Outcome.REMOVED))


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
    logger.info("Applied %s mutation from %s: %s", kind, source, counts or "nothing")
    for item in result.of(Outcome.INVALID):
        logger.warning("Refused %s from %s: %s", item.ref, source, item.message)
