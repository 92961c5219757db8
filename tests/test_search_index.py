"""The search index answers every filter as a scan of every served entity would,
after any sequence of adds, updates, moves and removals, and read from another
store instance that learns the changes from the log."""

from __future__ import annotations

import random

import pytest

from catalog_entities import component

from frobs.catalog.apply import apply_mutation
from frobs.catalog.mutation import DeferredEntity, DeltaMutation, EntityRefRemoval
from frobs.catalog.query import CatalogQuery
from frobs.catalog.search import matches, parse_filters, search_rows

FILTERS = [
    "kind=component",
    "kind=Component,spec.owner=team-1",
    "spec.owner=team-2,spec.owner=team-3",
    "metadata.tags=blue",
    "metadata.tags.red",
    "metadata.tags.red=true",
    "relations.dependencyof",
    "relations.dependencyof=component:default/c3",
    "relations.dependencyof=component:default/c5",
    "relations.dependson=component:default/c2",
    "relations.ownedby=group:default/team-0",
    "metadata.description",
    "spec.dependson=component:c1,kind=component",
    "metadata.annotations.example.com/flavour=sweet",
    "metadata.name=c0",
    "kind=group",
]


def random_component(chance: random.Random, name: str) -> dict:
    entity = component(name, description=chance.choice(["", "once", "twice"]))
    entity["spec"]["owner"] = f"team-{chance.randint(0, 3)}"
    entity["spec"]["dependsOn"] = [
        f"component:c{chance.randint(0, 9)}" for _ in range(chance.randint(0, 2))
    ]
    if chance.random() < 0.5:  # its own dependencyOf, as others may give it too
        entity["spec"]["dependencyOf"] = [f"component:c{chance.randint(0, 9)}"]
    entity["metadata"]["tags"] = chance.sample(["red", "blue", "green"], 2)
    entity["metadata"]["annotations"]["example.com/flavour"] = chance.choice(
        ["sweet", "sour"]
    )
    return entity


def scanned(store, filters) -> list[str]:
    snapshot = store.snapshot()
    return sorted(
        record.ref
        for record in snapshot.records()
        if matches(search_rows(snapshot.entity(record)), filters)
    )


@pytest.mark.parametrize("relations_from", [0, 100], ids=["always", "later"])
def test_the_index_answers_as_a_scan_after_random_changes(open_store, relations_from):
    """``relations_from``: the step from which filters name relations; before it
    the index skips the work of keeping inverse relations."""
    chance = random.Random(11)
    writer, reader = open_store(compact_min_bytes=20_000), open_store()
    queries = {store: CatalogQuery(store) for store in (writer, reader)}
    for step in range(200):
        names = [f"c{chance.randint(0, 9)}" for _ in range(chance.randint(1, 3))]
        if chance.random() < 0.25:
            mutation = DeltaMutation(
                removed=[EntityRefRemoval(f"component:default/{n}") for n in names]
            )
        else:
            mutation = DeltaMutation(
                added=[DeferredEntity(random_component(chance, n), "k") for n in names]
            )
        apply_mutation(writer, "events", mutation)
        for store, query in queries.items():
            # Some asked twice, and now and then all of them, more than are kept
            # from one version to the next.
            usable = [
                f for f in FILTERS if step >= relations_from or "relations" not in f
            ]
            texts = chance.sample(usable, 3) * 2 if step % 20 else usable * 2
            for text in texts:
                filters = parse_filters([text])
                found = [f.ref for f in query.find(filters)]
                assert found == scanned(store, filters), (step, text)
    assert any(
        query.find(parse_filters(["kind=component"])) for query in queries.values()
    )
