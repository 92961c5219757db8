"""Inverse relations kept in step: ``update_incoming`` gives what a rebuild from
every stored record would, and names exactly the targets whose inverse relations
changed."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from frobs.catalog import layered
from frobs.catalog.layered import LayeredMap, LayeredSet
from frobs.catalog.relations import INVERSE, update_incoming


@dataclass(frozen=True)
class Record:
    ref: str
    relations: tuple[tuple[str, str], ...]


def rebuilt(records: dict[str, Record]) -> dict[str, frozenset]:
    incoming: dict[str, set] = {}
    for record in records.values():
        for kind, target in record.relations:
            incoming.setdefault(target, set()).add((INVERSE[kind], record.ref))
    return {target: frozenset(pairs) for target, pairs in incoming.items()}


A_OWNED = Record("component:default/a", (("ownedBy", "group:default/t"),))
B_OWNED = Record("component:default/b", (("ownedBy", "group:default/t"),))
A_MOVED = Record("component:default/a", (("ownedBy", "group:default/u"),))
A_BOTH = Record(
    "component:default/a",
    (("ownedBy", "group:default/t"), ("partOf", "system:default/s")),
)
A_NONE = Record("component:default/a", ())


@pytest.mark.parametrize(
    "stored, removed, added, touched",
    [
        ([], [], [A_OWNED], {"group:default/t"}),
        ([A_OWNED], [A_OWNED], [], {"group:default/t"}),
        ([A_OWNED, B_OWNED], [A_OWNED], [A_OWNED], set()),
        (
            [A_OWNED, B_OWNED],
            [A_OWNED],
            [A_MOVED],
            {"group:default/t", "group:default/u"},
        ),
        ([A_OWNED], [A_OWNED], [A_BOTH], {"system:default/s"}),
        ([A_BOTH], [A_BOTH], [A_NONE], {"group:default/t", "system:default/s"}),
        ([B_OWNED], [A_OWNED], [], set()),  # removing what was never there
        ([], [], [A_OWNED, B_OWNED], {"group:default/t"}),
    ],
    ids=[
        "added",
        "removed",
        "same relations again",
        "moved to another owner",
        "one relation more",
        "every relation dropped",
        "removal of an absent record",
        "two records, one target",
    ],
)
def test_update_incoming(stored, removed, added, touched):
    before = LayeredMap(
        {
            t: LayeredSet(pairs)
            for t, pairs in rebuilt({r.ref: r for r in stored}).items()
        }
    )
    after, changed = update_incoming(before, removed, added)
    records = {r.ref: r for r in stored}
    for record in removed:
        records.pop(record.ref, None)
    records.update({r.ref: r for r in added})
    assert dict(after) == rebuilt(records)
    assert changed == touched
    assert dict(before) == rebuilt({r.ref: r for r in stored}), "the old version moved"


def test_random_batches_agree_with_a_rebuild(monkeypatch):
    monkeypatch.setattr(layered, "_MIN_SET_TOP", 2)  # fold often
    chance = random.Random(5)
    refs = [f"component:default/c{i}" for i in range(12)]
    targets = ["group:default/t", "group:default/u", "system:default/s", *refs[:4]]
    kinds = ["ownedBy", "partOf", "dependsOn", "dependencyOf"]
    records: dict[str, Record] = {}
    incoming = LayeredMap()
    for _ in range(400):
        removed, added = [], []
        for ref in chance.sample(refs, chance.randint(1, 4)):
            if ref in records and chance.random() < 0.3:
                removed.append(records.pop(ref))
                continue
            if ref in records:
                removed.append(records[ref])
            pairs = {
                (chance.choice(kinds), chance.choice(targets))
                for _ in range(chance.randint(0, 3))
            }
            records[ref] = Record(ref, tuple(sorted(pairs)))
            added.append(records[ref])
        expected_before = dict(incoming)
        incoming, changed = update_incoming(incoming, removed, added)
        expected = rebuilt(records)
        assert dict(incoming) == expected
        assert changed == {
            t
            for t in expected.keys() | expected_before.keys()
            if expected.get(t) != expected_before.get(t)
        }
