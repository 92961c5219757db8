"""``LayeredMap`` and ``LayeredSet``: read-only versions that cost what changed.

A catalog snapshot must stay as it was while a request reads it, and the next
snapshot must not copy tens of thousands of entries to change one.  A
``LayeredMap`` is a large base dict shared between versions plus a small top
layer of the entries changed since; ``changed`` returns a new version and
leaves the old one as it was.  When the top layer outgrows the square root of
the base (with a floor), it is folded into a new base, so a change costs
O(sqrt n) amortized and a read at most two dict lookups.

A ``LayeredMap`` never changes after it is made, and never holds a deleted key:
removals are recorded in the top layer as tombstones until folded.

A ``LayeredSet`` does for a set what a ``LayeredMap`` does for a dict: a base
frozenset shared between versions, plus the members added and the base members
dropped since, folded into a new base when they outgrow the square root of the
base.  The catalog keeps one per entity that others point at (a group owning
thousands of entities), so that one more owned entity does not copy them all;
``set_changes`` tells what differs between two versions at the same cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from typing import AbstractSet, Iterable, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

_GONE = object()
_MIN_TOP = 256
_MIN_SET_TOP = 16


class LayeredMap(Mapping[K, V]):
    __slots__ = ("_base", "_top", "_len")

    def __init__(
        self, base: dict | None = None, top: dict | None = None, length: int = -1
    ) -> None:
        self._base = {} if base is None else base
        self._top = {} if top is None else top
        if length < 0:
            length = len(self._base) + sum(
                (v is not _GONE) - (k in self._base) for k, v in self._top.items()
            )
        self._len = length

    def __getitem__(self, key: K) -> V:
        value = self._top.get(key, self._top)
        if value is self._top:
            return self._base[key]
        if value is _GONE:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def get(self, key, default=None):
        value = self._top.get(key, self._top)
        if value is self._top:
            return self._base.get(key, default)
        return default if value is _GONE else value

    def __contains__(self, key: object) -> bool:
        value = self._top.get(key, self._top)
        if value is self._top:
            return key in self._base
        return value is not _GONE

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        top = self._top
        for key in self._base:
            if key not in top:
                yield key
        for key, value in top.items():
            if value is not _GONE:
                yield key

    def values(self) -> Iterator[V]:  # type: ignore[override]
        top = self._top
        if not top:
            yield from self._base.values()
            return
        for key, value in self._base.items():
            if key not in top:
                yield value
        for value in top.values():
            if value is not _GONE:
                yield value

    def changed(
        self, updates: Iterable[tuple[K, V]] = (), removals: Iterable[K] = ()
    ) -> "LayeredMap[K, V]":
        """A new version with ``updates`` set and ``removals`` taken out."""
        base, top = self._base, dict(self._top)
        length = self._len

        def present(key) -> bool:
            value = top.get(key, top)
            return key in base if value is top else value is not _GONE

        for key, value in updates:
            length += not present(key)
            top[key] = value
        for key in removals:
            if present(key):
                length -= 1
                if key in base:
                    top[key] = _GONE
                else:
                    del top[key]
        if len(top) > max(_MIN_TOP, int(len(self._base) ** 0.5) * 4):
            base = dict(base)
            for key, value in top.items():
                if value is _GONE:
                    base.pop(key, None)
                else:
                    base[key] = value
            return LayeredMap(base, {}, len(base))
        return LayeredMap(base, top, length)


class LayeredSet(Set[T]):
    """An immutable set; ``changed`` gives the next version.  Operators (``|``,
    ``-``, ...) give plain frozensets."""

    __slots__ = ("_base", "_added", "_dropped")

    def __init__(
        self,
        base: frozenset = frozenset(),
        added: frozenset = frozenset(),
        dropped: frozenset = frozenset(),
    ) -> None:
        # Always: ``added`` is disjoint from ``base``, ``dropped`` within it.
        self._base, self._added, self._dropped = base, added, dropped

    @classmethod
    def _from_iterable(cls, members: Iterable) -> frozenset:
        return frozenset(members)

    def __contains__(self, member: object) -> bool:
        if member in self._base:
            return member not in self._dropped
        return member in self._added

    def __iter__(self) -> Iterator[T]:
        dropped = self._dropped
        if dropped:
            yield from (member for member in self._base if member not in dropped)
        else:
            yield from self._base
        yield from self._added

    def __len__(self) -> int:
        return len(self._base) - len(self._dropped) + len(self._added)

    def __repr__(self) -> str:
        return f"LayeredSet({set(self)!r})"

    def changed(self, add: Iterable[T] = (), drop: Iterable[T] = ()) -> "LayeredSet[T]":
        """A new version with ``drop`` taken out, then ``add`` put in."""
        base = self._base
        added, dropped = set(self._added), set(self._dropped)
        for member in drop:
            if member in base:
                dropped.add(member)
            else:
                added.discard(member)
        for member in add:
            if member in base:
                dropped.discard(member)
            else:
                added.add(member)
        if len(added) + len(dropped) > max(_MIN_SET_TOP, math.isqrt(2 * len(base))):
            return LayeredSet(base.difference(dropped).union(added))
        return LayeredSet(base, frozenset(added), frozenset(dropped))


def set_changes(
    old: AbstractSet[T], new: AbstractSet[T]
) -> tuple[frozenset, frozenset]:
    """The members ``old`` has and ``new`` lacks, and those ``new`` brought.

    Two versions of one ``LayeredSet`` that share a base differ only in their
    top layers, so this costs what changed; otherwise it compares them whole.
    """
    if (
        isinstance(old, LayeredSet)
        and isinstance(new, LayeredSet)
        and old._base is new._base
    ):
        left = (old._added - new._added) | (new._dropped - old._dropped)
        came = (new._added - old._added) | (old._dropped - new._dropped)
        return left, came
    old_whole, new_whole = frozenset(old), frozenset(new)
    return old_whole - new_whole, new_whole - old_whole
