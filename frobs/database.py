"""``Database``: connections to the PostgreSQL database the service is given.

One pool per process (made on first use in that process, so a forked worker
never shares its parent's connections), and, for a lock that must live as long
as a piece of work, a connection of its own.  A database that does not answer
is a ``DatabaseUnavailable`` naming the cause.  Nothing here knows any table:
the schema is the migrations' (``catalog/migrations``), its use the store's,
the inbox's and the scheduler's.
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg_pool import ConnectionPool

from .errors import DatabaseUnavailable


class Database:
    def __init__(self, url: str, pool_size: int = 4, name: str = "frobs") -> None:
        self.url = url
        self.pool_size = pool_size
        self.name = name
        self._pool: ConnectionPool | None = None
        self._pool_pid: int | None = None
        self._lock = threading.Lock()
        self._schema: str | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, in autocommit: use ``transaction()`` on it."""
        try:
            with self._pool_here().connection() as connection:
                yield connection
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"the database did not answer: {exc}") from None

    @contextmanager
    def advisory_lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the session advisory lock ``name`` on a pooled connection for the
        block (yields False when not ``blocking`` and it is taken).  A dead
        holder's lock goes with its connection."""
        key = self.lock_key(name)
        with self.connection() as connection:
            if blocking:
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
                held = True
            else:
                (held,) = connection.execute(
                    "SELECT pg_try_advisory_lock(%s)", (key,)
                ).fetchone()
            try:
                yield bool(held)
            finally:
                if held:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def try_lock(self, connection: psycopg.Connection, name: str) -> bool:
        """Take the session advisory lock ``name`` on ``connection`` if it is free."""
        (taken,) = connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (self.lock_key(name),)
        ).fetchone()
        return bool(taken)

    def lock_key(self, name: str) -> int:
        """The advisory lock key for ``name`` in this service's schema.

        Advisory locks are shared by the whole database, so the key is made of
        the schema and the name: services on their own schemas of one database
        never hold each other's locks.
        """
        if self._schema is None:
            with self.connection() as connection:
                (schema,) = connection.execute("SELECT current_schema()").fetchone()
            self._schema = schema or ""
        return lock_key(f"{self._schema}\0{name}")

    def dedicated(self) -> psycopg.Connection:
        """A connection of its own, in autocommit, for the caller to close."""
        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot reach the database: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None

    def _pool_here(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    open=True,
                    name=self.name,
                    kwargs={"autocommit": True},
                )
                self._pool_pid = os.getpid()
            return self._pool


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) for ``name``."""
    return int.from_bytes(
        hashlib.sha256(name.encode()).digest()[:8], "big", signed=True
    )
