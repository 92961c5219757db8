"""``LayeredMap``: every version reads as the dict it stands for, and old versions
never change, whatever the order of updates, removals and folds."""

from __future__ import annotations

import random

import pytest

from frobs.catalog import layered
from frobs.catalog.layered import LayeredMap


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
