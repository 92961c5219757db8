"""``LayeredMap`` and ``LayeredSet``: every version reads as the dict or set it
stands for, and old versions never change, whatever the order of updates,
removals and folds."""

from __future__ import annotations

import random

import pytest

from frobs.catalog import layered
from frobs.catalog.layered import LayeredMap, LayeredSet, set_changes


@pytest.mark.parametrize(
    "steps, expected",
    [
        ([({"a": 1}, [])], {"a": 1}),
        ([({"a": 1}, []), ({}, ["a"])], {}),
        ([({"a": 1}, []), ({"a": 2}, [])], {"a": 2}),
        ([({"a": 1}, ["a"])], {}),  # removal wins inside one change
        ([({}, ["missing"])], {}),
        ([({"a": 1, "b": 2}, []), ({}, ["a"]), ({"a": 3}, [])], {"a": 3, "b": 2}),
    ],
)
def test_a_version_reads_as_its_dict(steps, expected):
    mapping: LayeredMap = LayeredMap()
    for updates, removals in steps:
        mapping = mapping.changed(updates.items(), removals)
    assert dict(mapping.items()) == expected
    assert len(mapping) == len(expected)
    assert sorted(mapping.values()) == sorted(expected.values())
    for key in ("a", "b", "missing"):
        assert (key in mapping) == (key in expected)
        assert mapping.get(key) == expected.get(key)


def test_random_changes_agree_with_a_dict_and_leave_old_versions_alone(monkeypatch):
    monkeypatch.setattr(layered, "_MIN_TOP", 4)  # fold often
    chance = random.Random(7)
    for _ in range(300):
        mapping: LayeredMap = LayeredMap()
        expected: dict = {}
        for _ in range(40):
            updates = [(chance.randint(0, 30), chance.random()) for _ in range(3)]
            removals = [chance.randint(0, 30) for _ in range(chance.randint(0, 3))]
            following = mapping.changed(updates, removals)
            now = dict(expected)
            now.update(updates)
            for key in removals:
                now.pop(key, None)
            assert dict(following.items()) == now and len(following) == len(now)
            assert dict(mapping.items()) == expected, "an old version changed"
            mapping, expected = following, now


@pytest.mark.parametrize(
    "steps, expected",
    [
        ([({"a"}, set())], {"a"}),
        ([({"a"}, set()), (set(), {"a"})], set()),
        ([({"a", "b"}, set()), (set(), {"a"}), ({"a"}, set())], {"a", "b"}),
        ([({"a"}, {"a"})], {"a"}),  # addition wins inside one change
        ([(set(), {"missing"})], set()),
        ([({"a"}, set()), ({"a"}, set())], {"a"}),
    ],
)
def test_a_set_version_reads_as_its_set(steps, expected):
    members: LayeredSet = LayeredSet()
    for add, drop in steps:
        members = members.changed(add, drop)
    assert set(members) == expected and len(members) == len(expected)
    assert members == frozenset(expected) and frozenset(expected) == members
    for member in ("a", "b", "missing"):
        assert (member in members) == (member in expected)
    assert {"z"} | members == expected | {"z"}
    assert frozenset(members - {"a"}) == expected - {"a"}
    assert {"a", "z"} - members == {"a", "z"} - expected
    assert bool(members) == bool(expected)


@pytest.mark.parametrize("fold_above", [1, 4, 1000])
def test_random_set_changes_agree_with_a_set_and_leave_old_versions_alone(
    monkeypatch, fold_above
):
    monkeypatch.setattr(layered, "_MIN_SET_TOP", fold_above)
    chance = random.Random(fold_above)
    for _ in range(200):
        members: LayeredSet = LayeredSet(frozenset(range(0, 30, 3)))
        expected = set(range(0, 30, 3))
        for _ in range(40):
            add = {chance.randint(0, 30) for _ in range(chance.randint(0, 3))}
            drop = {chance.randint(0, 30) for _ in range(chance.randint(0, 3))}
            following = members.changed(add, drop)
            now = (expected - drop) | add
            assert set(following) == now and len(following) == len(now)
            assert all(member in following for member in now)
            assert not any(member in following for member in set(range(31)) - now)
            assert set(members) == expected, "an old version changed"
            members, expected = following, now


@pytest.mark.parametrize("fold_above", [1, 4, 1000])
def test_set_changes_between_any_two_versions_are_what_differs(monkeypatch, fold_above):
    monkeypatch.setattr(layered, "_MIN_SET_TOP", fold_above)
    chance = random.Random(100 + fold_above)
    for _ in range(100):
        versions: list = [frozenset(range(0, 20, 2))]
        versions.append(LayeredSet(versions[0]))
        for _ in range(15):
            add = {chance.randint(0, 25) for _ in range(chance.randint(0, 3))}
            drop = {chance.randint(0, 25) for _ in range(chance.randint(0, 3))}
            versions.append(versions[-1].changed(add, drop))
        for old in versions:
            for new in versions:
                left, came = set_changes(old, new)
                assert left == set(old) - set(new) and came == set(new) - set(old)
