"""The catalog's mutation rules, pinned case by case against a real file store."""

from __future__ import annotations

import copy
import threading

import pytest
from catalog_entities import component

from frobs.catalog.apply import _Candidate, _stored, apply_mutation
from frobs.catalog.mutation import (
    DeferredEntity as D,
)
from frobs.catalog.mutation import (
    DeltaMutation,
    FullMutation,
    MutationRefused,
    Outcome,
)
from frobs.catalog.mutation import (
    EntityRefRemoval as R,
)


@pytest.fixture
def store(open_store):
    return open_store()


def outcomes(result) -> dict[str, str]:
    """Each ref's outcomes, sorted and joined with '+' when there are several."""
    seen: dict[str, list[str]] = {}
    for r in result.results:
        seen.setdefault(r.ref, []).append(r.outcome.value)
    return {ref: "+".join(sorted(values)) for ref, values in seen.items()}


def refs(store) -> dict[str, tuple[str, str | None]]:
    return {r.ref: (r.source, r.location_key) for r in store.snapshot().records()}


# Each case: steps of (source, mutation), then the expected outcomes of the last
# step and the expected catalog (ref -> (source, location key)).
CASES = {
    "full adds everything new": (
        [("a", FullMutation([D(component("one"), "ka"), D(component("two"), "ka")]))],
        {"component:default/one": "added", "component:default/two": "added"},
        {"component:default/one": ("a", "ka"), "component:default/two": ("a", "ka")},
    ),
    "full removes what the same provider emitted before and no longer emits": (
        [
            ("a", FullMutation([D(component("one"), "ka"), D(component("two"), "ka")])),
            ("a", FullMutation([D(component("one"), "ka")])),
        ],
        {"component:default/one": "unchanged", "component:default/two": "removed"},
        {"component:default/one": ("a", "ka")},
    ),
    "full never removes another provider's entities": (
        [
            ("b", DeltaMutation(added=[D(component("theirs"), "kb")])),
            ("a", FullMutation([])),
        ],
        {},
        {"component:default/theirs": ("b", "kb")},
    ),
    "full keeps delta-added entities of the same provider only if emitted": (
        [
            ("a", DeltaMutation(added=[D(component("by-event"), "ka")])),
            ("a", FullMutation([D(component("listed"), "ka")])),
        ],
        {"component:default/listed": "added", "component:default/by-event": "removed"},
        {"component:default/listed": ("a", "ka")},
    ),
    "delta upserts added and removes removed": (
        [
            (
                "a",
                DeltaMutation(
                    added=[D(component("one"), "ka"), D(component("two"), "ka")]
                ),
            ),
            (
                "a",
                DeltaMutation(
                    added=[D(component("one", "new"), "ka")],
                    removed=[D(component("two"), "ka")],
                ),
            ),
        ],
        {"component:default/one": "updated", "component:default/two": "removed"},
        {"component:default/one": ("a", "ka")},
    ),
    "delta removal by entityRef is case-insensitive and defaults the namespace": (
        [
            ("a", DeltaMutation(added=[D(component("MyService_1.x"), "ka")])),
            ("a", DeltaMutation(removed=[R("Component:MyService_1.X")])),
        ],
        {"component:default/myservice_1.x": "removed"},
        {},
    ),
    "delta removal with or without a location key": (
        [
            (
                "a",
                DeltaMutation(
                    added=[D(component("one"), "ka"), D(component("two"), "ka")]
                ),
            ),
            (
                "a",
                DeltaMutation(
                    removed=[
                        R("component:default/one", "ka"),
                        R("component:default/two"),
                    ]
                ),
            ),
        ],
        {"component:default/one": "removed", "component:default/two": "removed"},
        {},
    ),
    "an entity both added and removed in one delta is kept, updated": (
        [
            ("a", DeltaMutation(added=[D(component("one"), "ka")])),
            (
                "a",
                DeltaMutation(
                    added=[D(component("one", "v2"), "ka")],
                    removed=[R("component:default/one")],
                ),
            ),
        ],
        {"component:default/one": "updated"},
        {"component:default/one": ("a", "ka")},
    ),
    "removing an entity another provider holds is refused": (
        [
            ("b", DeltaMutation(added=[D(component("theirs"), "kb")])),
            ("a", DeltaMutation(removed=[R("component:default/theirs")])),
        ],
        {"component:default/theirs": "conflict"},
        {"component:default/theirs": ("b", "kb")},
    ),
    "an emission with another location key is a conflict and the owner stays": (
        [
            ("b", DeltaMutation(added=[D(component("shared", "b's"), "kb")])),
            ("a", DeltaMutation(added=[D(component("shared", "a's"), "ka")])),
        ],
        {"component:default/shared": "conflict"},
        {"component:default/shared": ("b", "kb")},
    ),
    "an emission without a key does not take a keyed entity": (
        [
            ("b", DeltaMutation(added=[D(component("shared"), "kb")])),
            ("a", FullMutation([D(component("shared", "mine"), None)])),
        ],
        {"component:default/shared": "conflict"},
        {"component:default/shared": ("b", "kb")},
    ),
    "an entity stored without a key is taken over": (
        [
            ("b", DeltaMutation(added=[D(component("loose"), None)])),
            ("a", DeltaMutation(added=[D(component("loose", "mine"), "ka")])),
        ],
        {"component:default/loose": "updated"},
        {"component:default/loose": ("a", "ka")},
    ),
    "the same location key from another provider takes over": (
        [
            ("b", DeltaMutation(added=[D(component("same"), "k")])),
            ("a", DeltaMutation(added=[D(component("same", "mine"), "k")])),
        ],
        {"component:default/same": "updated"},
        {"component:default/same": ("a", "k")},
    ),
    "a ref named twice in one mutation: the first applies, the later is invalid": (
        [
            (
                "a",
                FullMutation(
                    [
                        D(component("twice", "first"), "ka"),
                        D(component("Twice", "second"), "ka"),
                    ]
                ),
            )
        ],
        {"component:default/twice": "added+invalid"},
        {"component:default/twice": ("a", "ka")},
    ),
    "an invalid entity is refused alone and its siblings apply": (
        [
            (
                "a",
                FullMutation(
                    [D(component("good"), "ka"), D(component("bad name"), "ka")]
                ),
            )
        ],
        {"component:default/good": "added", "component:default/bad name": "invalid"},
        {"component:default/good": ("a", "ka")},
    ),
    "an invalid update keeps the last good version through a full": (
        [
            ("a", FullMutation([D(component("kept"), "ka")])),
            ("a", FullMutation([D({**component("kept"), "status": {}}, "ka")])),
        ],
        {"component:default/kept": "invalid"},
        {"component:default/kept": ("a", "ka")},
    ),
    "removing what is not stored changes nothing": (
        [("a", DeltaMutation(removed=[R("component:default/ghost")]))],
        {"component:default/ghost": "unchanged"},
        {},
    ),
}


@pytest.mark.parametrize("steps, expected, catalog", CASES.values(), ids=CASES.keys())
def test_mutation_rule(store, steps, expected, catalog):
    for source, mutation in steps:
        result = apply_mutation(store, source, mutation)

    got = outcomes(result)
    for ref, outcome in expected.items():
        assert got.get(ref) == outcome, (ref, result.results)
    assert refs(store) == catalog


def test_first_of_a_duplicated_ref_is_the_one_stored(store):
    apply_mutation(
        store,
        "a",
        FullMutation(
            [
                D(component("twice", "first"), "ka"),
                D(component("twice", "second"), "ka"),
            ]
        ),
    )
    stored = store.snapshot().get("component:default/twice")
    assert stored.entity["metadata"]["description"] == "first"


def test_unchanged_entity_causes_no_write_and_keeps_its_etag(store):
    apply_mutation(store, "a", FullMutation([D(component("one"), "ka")]))
    before = store.snapshot().get("component:default/one").entity["metadata"]
    version = store.snapshot().version

    result = apply_mutation(store, "a", FullMutation([D(component("one"), "ka")]))

    assert outcomes(result) == {"component:default/one": "unchanged"}
    assert store.snapshot().version == version, "something was committed"
    after = store.snapshot().get("component:default/one").entity["metadata"]
    assert (after["uid"], after["etag"]) == (before["uid"], before["etag"])


def test_update_keeps_uid_and_changes_etag(store):
    apply_mutation(store, "a", FullMutation([D(component("one"), "ka")]))
    before = store.snapshot().get("component:default/one").entity["metadata"]
    apply_mutation(store, "a", FullMutation([D(component("one", "changed"), "ka")]))
    after = store.snapshot().get("component:default/one").entity["metadata"]
    assert after["uid"] == before["uid"]
    assert after["etag"] != before["etag"]


def test_takeover_keeps_uid(store):
    apply_mutation(store, "b", DeltaMutation(added=[D(component("loose"), None)]))
    uid = store.snapshot().get("component:default/loose").uid
    apply_mutation(store, "a", DeltaMutation(added=[D(component("loose"), "ka")]))
    assert store.snapshot().get("component:default/loose").uid == uid


def test_stored_entity_keeps_its_spelling_and_gets_the_default_namespace(store):
    apply_mutation(store, "a", FullMutation([D(component("MyService"), "ka")]))
    stored = store.snapshot().get("Component:Default/MYSERVICE")
    assert stored.entity["metadata"]["name"] == "MyService"
    assert stored.entity["metadata"]["namespace"] == "default"


def test_conflict_names_the_key_that_holds_the_entity(store, caplog):
    apply_mutation(store, "b", DeltaMutation(added=[D(component("shared"), "kb")]))
    result = apply_mutation(
        store, "a", DeltaMutation(added=[D(component("shared"), "ka")])
    )
    (conflict,) = result.of(Outcome.CONFLICT)
    assert conflict.held_by == "kb"
    assert "kb" in caplog.text and "ka" in caplog.text


def test_invalid_result_names_the_field_and_rule(store):
    result = apply_mutation(store, "a", FullMutation([D(component("-bad"), "ka")]))
    (invalid,) = result.of(Outcome.INVALID)
    assert "metadata.name" in invalid.message
    assert "[a-zA-Z0-9]" in invalid.message


def test_a_failed_transaction_writes_nothing(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as transaction:
            candidate = _Candidate.checked(
                "component:default/x", component("x"), [], "k"
            )
            transaction.put(_stored(candidate, "a", "u"))
            raise RuntimeError("boom")
    assert len(store.snapshot()) == 0


def held(count: int, prefix: str = "e") -> list[D]:
    return [D(component(f"{prefix}{i}"), "ka") for i in range(count)]


# Each case: how many entities the provider holds, the full mutation it then
# applies, and whether the guard refuses it.
GUARD = {
    "removing half of 20 is allowed": (20, FullMutation(held(10)), False),
    "removing 11 of 20 is refused": (20, FullMutation(held(9)), True),
    "ten or fewer held are not guarded": (10, FullMutation(held(1)), False),
    "a higher ratio allows more": (
        20,
        FullMutation(held(2), max_deletion_ratio=0.9),
        False,
    ),
    "no ratio turns the ratio check off": (
        20,
        FullMutation(held(1), max_deletion_ratio=None),
        False,
    ),
    "an empty source is refused": (3, FullMutation([]), True),
    "an empty source is allowed when said so": (
        3,
        FullMutation([], allow_empty_source=True, max_deletion_ratio=None),
        False,
    ),
    "an empty source holding nothing is fine": (0, FullMutation([]), False),
    "replacing every entity counts as removing them": (
        20,
        FullMutation(held(20, prefix="new")),
        True,
    ),
}


@pytest.mark.parametrize("count, mutation, refused", GUARD.values(), ids=GUARD.keys())
def test_mass_deletion_guard(store, count, mutation, refused):
    if count:
        apply_mutation(store, "a", FullMutation(held(count)))
    before = refs(store)

    if refused:
        with pytest.raises(MutationRefused, match="nothing|empty source"):
            apply_mutation(store, "a", mutation)
        assert refs(store) == before
    else:
        apply_mutation(store, "a", mutation)


def test_guard_message_says_why(store):
    apply_mutation(store, "a", FullMutation(held(20)))
    with pytest.raises(MutationRefused) as refused:
        apply_mutation(store, "a", FullMutation(held(5)))
    assert "would remove 15 of the 20" in str(refused.value)
    assert "maxDeletionRatio 0.5" in str(refused.value)


def test_removal_naming_another_location_key_is_refused(store):
    apply_mutation(store, "a", DeltaMutation(added=[D(component("one"), "ka")]))
    result = apply_mutation(
        store, "a", DeltaMutation(removed=[R("component:default/one", "kb")])
    )
    assert outcomes(result) == {"component:default/one": "conflict"}
    assert "component:default/one" in [r.ref for r in store.snapshot().records()]


def test_a_full_sync_racing_a_delta_ends_in_one_of_the_two_orders(open_store):
    """Whatever the interleaving, the result is full-then-delta or delta-then-full,
    with each mutation applied by another instance of the store."""
    store, one, other, reader = (open_store() for _ in range(4))
    for attempt in range(20):
        x, y = f"x{attempt}", f"y{attempt}"
        source = f"a{attempt}"  # a provider of its own: each attempt starts afresh
        apply_mutation(store, source, FullMutation([D(component(x, "v0"), "ka")]))
        full = FullMutation(
            [D(component(x, "from sync"), "ka"), D(component(y, "from sync"), "ka")]
        )
        delta = DeltaMutation(
            added=[D(component(x, "from event"), "ka")],
            removed=[R(f"component:default/{y}")],
        )
        threads = [
            threading.Thread(target=apply_mutation, args=(instance, source, m))
            for instance, m in ((one, full), (other, delta))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        final = {
            r.ref: r.entity["metadata"]["description"]
            for r in reader.snapshot().records()
            if r.source == source
        }
        full_then_delta = {f"component:default/{x}": "from event"}
        delta_then_full = {
            f"component:default/{x}": "from sync",
            f"component:default/{y}": "from sync",
        }
        assert final in (full_then_delta, delta_then_full), final


def test_the_target_of_a_relation_gets_the_inverse_and_a_new_etag(store):
    group = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {**component("team-a")["metadata"]},
        "spec": {"type": "team", "children": []},
    }
    apply_mutation(store, "a", DeltaMutation(added=[D(group, "ka")]))
    snapshot = store.snapshot()
    alone = snapshot.entity(snapshot.get("group:default/team-a"))
    assert alone["relations"] == []

    apply_mutation(store, "a", DeltaMutation(added=[D(component("svc"), "ka")]))
    snapshot = store.snapshot()
    owned = snapshot.entity(snapshot.get("group:default/team-a"))
    assert owned["relations"] == [
        {"type": "ownerOf", "targetRef": "component:default/svc"}
    ]
    assert owned["metadata"]["etag"] != alone["metadata"]["etag"]
    assert owned["metadata"]["uid"] == alone["metadata"]["uid"]
    svc = snapshot.entity(snapshot.get("component:default/svc"))
    assert svc["relations"] == [
        {"type": "ownedBy", "targetRef": "group:default/team-a"}
    ]

    apply_mutation(store, "a", DeltaMutation(removed=[R("component:default/svc")]))
    snapshot = store.snapshot()
    again = snapshot.entity(snapshot.get("group:default/team-a"))
    assert (
        again["relations"] == []
        and again["metadata"]["etag"] == alone["metadata"]["etag"]
    )


def test_an_unparsable_reference_makes_the_entity_invalid(store):
    entity = component("svc")
    entity["spec"]["dependsOn"] = ["db"]  # dependsOn needs a kind
    result = apply_mutation(store, "a", DeltaMutation(added=[D(entity, "ka")]))
    (invalid,) = result.of(Outcome.INVALID)
    assert "spec.dependsOn.0" in invalid.message and "kind" in invalid.message


def test_reference_arrays_are_sorted_as_backstage_sorts_them(store):
    entity = component("svc")
    entity["spec"]["providesApis"] = ["zeta", "alpha"]
    apply_mutation(store, "a", DeltaMutation(added=[D(entity, "ka")]))
    stored = store.snapshot().get("component:default/svc").entity
    assert stored["spec"]["providesApis"] == ["alpha", "zeta"]


def test_provenance_says_who_wrote_an_entity_and_why(store):
    from frobs.provenance import caused_by

    with caused_by(topic="frobs.add", deliveryId="d-1"):
        apply_mutation(
            store, "frobs-dev", DeltaMutation(added=[D(component("x"), "k")])
        )
    provenance = (
        store.snapshot().get("component:default/x").entity["metadata"]["provenance"]
    )
    assert provenance["provider"] == "frobs-dev"
    assert provenance["locationKey"] == "k"
    assert (provenance["topic"], provenance["deliveryId"]) == ("frobs.add", "d-1")
    assert provenance["writtenAt"].endswith("+00:00")


def test_an_unchanged_entity_keeps_the_provenance_of_its_last_write(store):
    from frobs.provenance import caused_by

    with caused_by(topic="frobs.add", deliveryId="first"):
        apply_mutation(store, "a", DeltaMutation(added=[D(component("x"), "k")]))
    with caused_by(task="a:refresh"):
        apply_mutation(store, "a", FullMutation([D(component("x"), "k")]))
    provenance = (
        store.snapshot().get("component:default/x").entity["metadata"]["provenance"]
    )
    assert provenance["deliveryId"] == "first" and "task" not in provenance


def test_what_a_provider_emits_is_never_changed(store):
    emitted = component("one")
    emitted["metadata"]["etag"] = "mine"
    emitted["spec"]["dependsOn"] = ["component:b", "component:a"]
    emitted["metadata"]["tags"] = ["x"]
    before = copy.deepcopy(emitted)
    for mutation in (
        FullMutation([D(emitted, "ka")]),
        FullMutation([D(emitted, "ka")]),
        DeltaMutation(added=[D(emitted, "ka")]),
    ):
        result = apply_mutation(store, "a", mutation)
        assert emitted == before
        assert not result.of(Outcome.INVALID), result
    stored = store.snapshot().get("component:default/one").entity
    assert stored["spec"]["dependsOn"] == ["component:a", "component:b"]
