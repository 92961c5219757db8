"""``Delivery``: one accepted event being handed to its subscribers.

While the events service delivers an event, the current ``Delivery`` records
which subscribers succeeded and which failed with what, and names the ones to
skip because an earlier attempt already ran them.  Routers are never recorded
nor skipped: they only pass the event on, so a retry always routes again and
reaches exactly the subscribers still owed the event.

The delivery lives in a context variable: it follows the work on its thread.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

_current: ContextVar["Delivery | None"] = ContextVar("frobs_delivery", default=None)


@dataclass
class Delivery:
    received_at: int  # nanoseconds since the epoch, when the ingress accepted it
    delivery_id: str | None = None
    skip: frozenset[str] = frozenset()
    succeeded: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)


@contextmanager
def delivering(delivery: Delivery) -> Iterator[Delivery]:
    token = _current.set(delivery)
    try:
        yield delivery
    finally:
        _current.reset(token)


def current_delivery() -> Delivery | None:
    return _current.get()
