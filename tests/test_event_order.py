"""Event order marks on files: the later-received event wins, a full sync learns
which keys changed after it read, and marks left empty by a crash or written by
an older version are read and rewritten, all in the same file."""

from __future__ import annotations

import os

import pytest

from frobs.events.ordering import EventOrder

T = 1_764_000_000_000_000_000  # a receive time in nanoseconds


def turns(order: EventOrder, key: str, times: list[int]) -> list[bool]:
    taken = []
    for received_at in times:
        with order.turn(key, received_at) as ours:
            taken.append(ours)
    return taken


@pytest.mark.parametrize(
    "times, expected",
    [
        ([T], [True]),
        ([T, T + 1], [True, True]),
        ([T + 1, T], [True, False]),
        ([T, T], [True, True]),  # a redelivery of the same event still runs
        ([T + 5, T + 1, T + 9, T + 7], [True, False, True, False]),
    ],
    ids=["first", "newer", "older", "same time", "interleaved"],
)
def test_the_later_received_event_wins(tmp_path, times, expected):
    assert turns(EventOrder(tmp_path), "frobs-a:x", times) == expected


def test_changed_since_names_the_keys_marked_later(tmp_path):
    order = EventOrder(tmp_path)
    turns(order, "frobs-a:early", [T])
    turns(order, "frobs-a:late", [T + 10])
    turns(order, "frobs-a:again", [T, T + 20])
    assert order.changed_since(T + 5) == {"frobs-a:late", "frobs-a:again"}
    assert order.changed_since(T + 30) == set()


def test_a_mark_is_rewritten_in_place(tmp_path):
    order = EventOrder(tmp_path)
    turns(order, "frobs-a:x", [T])
    (path,) = order.marks.iterdir()
    inode = path.stat().st_ino
    turns(order, "frobs-a:x", [T + 1, T + 2])
    assert [p.stat().st_ino for p in order.marks.iterdir()] == [inode]
    assert path.read_bytes() == f"{T + 2:020d} frobs-a:x".encode()


@pytest.mark.parametrize(
    "left",
    [b"", b"1764", f"{T + 50}".encode()],
    ids=["empty", "digits cut short", "no key"],
)
def test_a_mark_left_unfinished_by_a_crash_counts_as_none(tmp_path, left):
    order = EventOrder(tmp_path)
    turns(order, "frobs-a:x", [T])
    (path,) = order.marks.iterdir()
    path.write_bytes(left)
    assert order.changed_since(T - 1) == set()
    assert turns(order, "frobs-a:x", [T - 100]) == [True]
    assert path.read_bytes() == f"{T - 100:020d} frobs-a:x".encode()


def test_a_mark_of_an_older_version_is_read_and_rewritten(tmp_path):
    order = EventOrder(tmp_path)
    turns(order, "frobs-a:x", [T])
    (path,) = order.marks.iterdir()
    newer = 1_800_000_000_000_000_000
    path.write_bytes(f"{newer} frobs-a:x".encode())  # 19 digits, no padding
    assert order.changed_since(T) == {"frobs-a:x"}
    assert turns(order, "frobs-a:x", [newer - 1, newer + 1]) == [False, True]
    assert path.read_bytes() == f"{newer + 1:020d} frobs-a:x".encode()
    path.write_bytes(b"5 frobs-a:x and more than a mark holds now")
    assert turns(order, "frobs-a:x", [T]) == [True]
    assert path.read_bytes() == f"{T:020d} frobs-a:x".encode()


def test_changed_since_reads_a_mark_whose_file_time_is_a_little_early(tmp_path):
    """File times tick coarser than ``time_ns``: a mark written just after the
    moment asked about may carry a time a few milliseconds before it."""
    order = EventOrder(tmp_path)
    turns(order, "frobs-a:x", [T + 1])
    (path,) = order.marks.iterdir()
    os.utime(path, ns=(T - 4_000_000, T - 4_000_000))
    assert order.changed_since(T) == {"frobs-a:x"}
