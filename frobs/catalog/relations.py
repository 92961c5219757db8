"""Relations Backstage derives from an entity's ``spec``, and their inverses.

Each built-in kind names the spec fields that point at other entities (a
Component's ``owner``, ``system``, ``providesApis``, ...).  Every reference is
parsed as an entity ref with the field's default kind and the entity's own
namespace, and gives a forward relation on the entity (``ownedBy``) and an inverse
one on the target (``ownerOf``), which shows once the target is stored.  A
reference that is not a ref is a validation problem, as in Backstage, where
such an entity never becomes visible.

Relations are sorted by type, then target ref, with duplicates dropped.  Nothing
here reads the store.
"""

from __future__ import annotations

from typing import Any, Iterable

from .entity_ref import EntityRefError, parse_entity_ref
from .layered import LayeredMap, LayeredSet
from .problem import Problem

INVERSE = {
    "ownedBy": "ownerOf",
    "partOf": "hasPart",
    "providesApi": "apiProvidedBy",
    "consumesApi": "apiConsumedBy",
    "dependsOn": "dependencyOf",
    "memberOf": "hasMember",
    "childOf": "parentOf",
}
INVERSE.update({inverse: forward for forward, inverse in list(INVERSE.items())})

# kind -> (spec field, default kind of the target, relation type)
_OWNER = ("owner", "Group", "ownedBy")
_SYSTEM = ("system", "System", "partOf")
_DEPENDS = [("dependsOn", None, "dependsOn"), ("dependencyOf", None, "dependencyOf")]
RULES: dict[str, list[tuple[str, str | None, str]]] = {
    "component": [
        _OWNER,
        _SYSTEM,
        ("subcomponentOf", "Component", "partOf"),
        ("providesApis", "API", "providesApi"),
        ("consumesApis", "API", "consumesApi"),
        *_DEPENDS,
    ],
    "api": [_OWNER, _SYSTEM],
    "resource": [_OWNER, _SYSTEM, *_DEPENDS],
    "system": [_OWNER, ("domain", "Domain", "partOf")],
    "domain": [_OWNER, ("subdomainOf", "Domain", "partOf")],
    "user": [("memberOf", "Group", "memberOf")],
    "group": [
        ("parent", "Group", "childOf"),
        ("children", "Group", "parentOf"),
        ("members", "User", "hasMember"),
    ],
}

#: Spec arrays Backstage sorts before it stores an entity.
SORTED_FIELDS = (
    "providesApis",
    "consumesApis",
    "dependsOn",
    "dependencyOf",
    "memberOf",
    "children",
    "members",
)


def spec_relations(entity: dict) -> tuple[list[dict], list[Problem]]:
    """The forward relations of an entity, and the references that are not refs."""
    spec = entity.get("spec")
    rules = RULES.get(str(entity.get("kind", "")).lower())
    if not isinstance(spec, dict) or not rules:
        return [], []

    namespace = entity["metadata"].get("namespace") or "default"
    pairs, problems = set(), []
    for field, default_kind, relation in rules:
        values = spec.get(field)
        if values is None:
            continue
        for index, value in _references(values):
            where = f"spec.{field}" + ("" if index is None else f".{index}")
            try:
                target = parse_entity_ref(value, default_kind, namespace)
            except EntityRefError as exc:
                problems.append(Problem(where, str(exc)))
                continue
            pairs.add((relation, str(target)))
    return sort_relations(pairs), problems


def _references(values: Any) -> Iterable[tuple[int | None, Any]]:
    if isinstance(values, list):
        return enumerate(values)
    return [(None, values)]


def sort_relations(pairs: Iterable[tuple[str, str]]) -> list[dict]:
    return [{"type": t, "targetRef": ref} for t, ref in sorted(set(pairs))]


def sort_spec_arrays(spec: dict) -> None:
    """Sort the reference arrays Backstage sorts, in place."""
    for field in SORTED_FIELDS:
        values = spec.get(field)
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            spec[field] = sorted(values)


_EMPTY: LayeredSet = LayeredSet()

Incoming = LayeredMap[str, LayeredSet[tuple[str, str]]]


def update_incoming(
    incoming: Incoming, removed: Iterable, added: Iterable
) -> tuple[Incoming, set[str]]:
    """The inverse relations by target after some stored records left or came,
    and the targets whose inverse relations changed.

    ``incoming[target]`` holds ``(inverse type, source ref)`` for each stored
    entity whose forward relations point at ``target``.  The mapping given is not
    changed: a new version is returned.  A target's set is copied only when it
    changes, so a record replaced with the same relations costs no copy, however
    many entities point at its targets, and a set that changes costs what
    changed in it (``LayeredSet``), not its size.
    """
    gone: dict[str, set[tuple[str, str]]] = {}
    came: dict[str, set[tuple[str, str]]] = {}
    for pairs_by_target, records in ((gone, removed), (came, added)):
        for record in records:
            for kind, target in record.relations:
                pair = (INVERSE[kind], record.ref)
                pairs_by_target.setdefault(target, set()).add(pair)

    updates, removals, touched = [], [], set()
    for target in gone.keys() | came.keys():
        current = incoming.get(target, _EMPTY)
        plus = came.get(target, set())
        drop = {pair for pair in gone.get(target, set()) - plus if pair in current}
        add = {pair for pair in plus if pair not in current}
        if not drop and not add:
            continue
        touched.add(target)
        if len(drop) < len(current):
            updates.append((target, current.changed(add, drop)))
        elif add:
            updates.append((target, LayeredSet(frozenset(add))))
        else:
            removals.append(target)
    return incoming.changed(updates, removals), touched
