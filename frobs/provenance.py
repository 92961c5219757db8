"""What caused the work in progress: an event being handled, or a task run.

The events service marks each subscriber call with the event's topic and
delivery id, the scheduler marks each run with its task id and start time, and
the catalog reads the mark when it writes, so every stored entity tells what
last wrote it.  The mark lives in a context variable: it follows the work on its
own thread and never leaks into another request.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_cause: ContextVar[dict | None] = ContextVar("frobs_cause", default=None)


@contextmanager
def caused_by(**fields: str | None) -> Iterator[None]:
    """Mark the work inside the block; fields that are None are left out."""
    token = _cause.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _cause.reset(token)


def current_cause() -> dict:
    """The mark of the work in progress, or an empty dict outside any."""
    return dict(_cause.get() or {})
