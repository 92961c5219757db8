"""``PostgresEventOrder``: ``EventOrder`` in the database, for several instances.

The same contract as the file one (see ``ordering``): a turn per key, exclusive
across every worker of every instance (an advisory lock held while the event's
work runs), refused to an event received before the newest
one already handled for the key; the newest receive time per key is a row of
``event_order``, written before the work starts, so a full sync on any instance
sees which keys changed after it read its source.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..database import Database


class PostgresEventOrder:
    def __init__(self, database: Database) -> None:
        self.database = database

    @contextmanager
    def turn(self, key: str, received_at: int) -> Iterator[bool]:
        with self.database.advisory_lock(f"frobs order: {key}"):
            with self.database.connection() as connection:
                row = connection.execute(
                    "SELECT received_at FROM event_order WHERE key = %s", (key,)
                ).fetchone()
                if row is None or received_at >= row[0]:
                    connection.execute(
                        "INSERT INTO event_order (key, received_at) VALUES (%s, %s)"
                        " ON CONFLICT (key) DO UPDATE"
                        " SET received_at = EXCLUDED.received_at",
                        (key, received_at),
                    )
            yield row is None or received_at >= row[0]

    def changed_since(self, nanoseconds: int) -> set[str]:
        """The keys whose newest event was received after ``nanoseconds``."""
        with self.database.connection() as connection:
            rows = connection.execute(
                "SELECT key FROM event_order WHERE received_at > %s", (nanoseconds,)
            ).fetchall()
        return {key for (key,) in rows}
