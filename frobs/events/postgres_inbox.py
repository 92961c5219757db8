"""``PostgresInbox``: the durable inbox in the database, for several instances.

The same contract as ``FileInbox`` (see ``inbox``): an accepted event is a row
of ``event_inbox`` until every subscriber has it, a dead letter is the same row
marked dead, a delivery id done is a row of ``event_done``.  An entry being
delivered is held by an advisory lock, so no two workers of any instance deliver
it at once, and a dead holder's lock goes with its connection.  A record that
need not survive a power loss is written with ``synchronous_commit`` off.  The
inbox only stores and finds entries; ``EventProcessor`` decides what happens to
them.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from typing import Iterator

from ..database import Database
from .inbox import InboxEntry


class PostgresInbox:
    def __init__(self, database: Database) -> None:
        self.database = database

    # Entries

    def record(self, entry: InboxEntry, durable: bool = True) -> None:
        with self.database.connection() as connection, connection.transaction():
            if not durable:
                connection.execute("SET LOCAL synchronous_commit = off")
            connection.execute(
                "INSERT INTO event_inbox (id, entry) VALUES (%s, %s)"
                " ON CONFLICT (id) DO UPDATE SET entry = EXCLUDED.entry, dead = false",
                (entry.id, entry.encode().decode()),
            )

    def load(self, entry_id: str) -> InboxEntry | None:
        return self._one(entry_id, dead=False)

    def remove(self, entry: InboxEntry) -> None:
        with self.database.connection() as connection:
            connection.execute(
                "DELETE FROM event_inbox WHERE id = %s AND NOT dead", (entry.id,)
            )

    def entries(self) -> Iterator[InboxEntry]:
        yield from self._all(dead=False)

    def lock(self, entry_id: str, blocking: bool) -> AbstractContextManager[bool]:
        """Held while an entry is delivered, so no two workers deliver it at once."""
        return self.database.advisory_lock(f"frobs inbox: {entry_id}", blocking)

    # Dead letters

    def bury(self, entry: InboxEntry) -> None:
        with self.database.connection() as connection:
            connection.execute(
                "UPDATE event_inbox SET entry = %s, dead = true WHERE id = %s",
                (entry.encode().decode(), entry.id),
            )

    def dead_letters(self) -> list[InboxEntry]:
        return list(self._all(dead=True))

    def revive(self, entry_id: str) -> InboxEntry | None:
        """Move a dead letter back to the inbox, its failure counts reset."""
        entry = self._one(entry_id, dead=True)
        if entry is None:
            return None
        entry.failures = {}
        entry.next_attempt_at = None
        self.record(entry)
        return entry

    # Deduplication

    def is_done(self, dedup_key: str, window_seconds: float) -> bool:
        with self.database.connection() as connection:
            row = connection.execute(
                "SELECT 1 FROM event_done WHERE key = %s"
                " AND done_at >= now() - make_interval(secs => %s)",
                (_digest(dedup_key), window_seconds),
            ).fetchone()
        return row is not None

    def mark_done(self, dedup_key: str) -> None:
        with self.database.connection() as connection:
            connection.execute(
                "INSERT INTO event_done (key, done_at) VALUES (%s, now())"
                " ON CONFLICT (key) DO UPDATE SET done_at = now()",
                (_digest(dedup_key),),
            )

    def forget_done(self, older_than_seconds: float) -> int:
        with self.database.connection() as connection:
            cursor = connection.execute(
                "DELETE FROM event_done"
                " WHERE done_at < now() - make_interval(secs => %s)",
                (older_than_seconds,),
            )
            return cursor.rowcount

    # Recovery

    def remove_stale_temporary_files(self) -> None:
        """Nothing to do: a database transaction leaves no half-written entry."""

    def _one(self, entry_id: str, dead: bool) -> InboxEntry | None:
        with self.database.connection() as connection:
            row = connection.execute(
                "SELECT entry::text FROM event_inbox WHERE id = %s AND dead = %s",
                (entry_id, dead),
            ).fetchone()
        return None if row is None else InboxEntry.decode(row[0])

    def _all(self, dead: bool) -> Iterator[InboxEntry]:
        with self.database.connection() as connection:
            rows = connection.execute(
                "SELECT entry::text FROM event_inbox WHERE dead = %s ORDER BY id",
                (dead,),
            ).fetchall()
        for (text,) in rows:
            yield InboxEntry.decode(text)


def _digest(dedup_key: str) -> str:
    """What ``event_done`` keeps of a key (which may hold a NUL, that text cannot)."""
    return hashlib.sha256(dedup_key.encode()).hexdigest()
