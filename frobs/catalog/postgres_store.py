"""The PostgreSQL store: the catalog in a database that several instances share.

Tables, created and migrated at startup by the versioned SQL files in
``migrations/`` (each applied once, in order, under an advisory lock, and
recorded in ``schema_migrations``; ``pending_migrations`` lists what a start
would apply, without applying it)::

    catalog_entities   a row per stored entity: ref, location key, source,
                       content hash, and the entity as JSON text
    catalog_changes    the refs each committed version changed
    catalog_state      the latest version, and up to which changes were pruned

A commit is one database transaction: it locks the state row, so that writers
of every worker and instance take turns (a dead writer's lock goes with its
connection), writes its rows, records the refs it changed under the next
version, and commits, all or nothing.  Each worker keeps the catalog in a
``MemoryCatalog``; a snapshot asks the database for the latest version and
installs only the changes after its own, so its cost follows what changed.  A
worker further behind than the changes kept reads every row again.

Connections come from a ``Database`` pool, made in the process that uses it.
The store decides nothing about what may be written: the mutation rules live in
``apply``.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

from .. import jsoncodec
from ..bulk import BULK, collection_paused, settle
from ..database import Database
from ..errors import DatabaseUnavailable
from ..metrics import STORE_WRITE_SECONDS
from .memory import Change, MemoryCatalog, StagedTransaction
from .packed import unpack
from .store import CatalogSnapshot, CatalogStore, StoredEntity, StoreTransaction

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

#: Changes of this many latest versions are kept for workers catching up.
KEPT_VERSIONS = 10_000

# Any fixed number: the advisory lock every instance takes to migrate.
_MIGRATION_LOCK = 7_007_001

_COLUMNS = "ref, location_key, source, hash, entity::text"

#: Rows written per statement: a full sync's are never all encoded at once.
_BATCH = 1000


class PostgresStore(CatalogStore):
    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        self.database = Database(url, pool_size, name="frobs-catalog")
        self._cache_lock = threading.Lock()
        self._memory = MemoryCatalog()
        self._version = -1  # the database version the memory holds; -1: none
        with self.database.dedicated() as connection:
            try:
                migrate(connection)
            except psycopg.errors.InsufficientPrivilege as exc:
                reason = str(exc).splitlines()[0]  # not the statement quoted
                raise DatabaseUnavailable(_cannot_create(reason)) from None

    def close(self) -> None:
        self.database.close()

    def check_writable(self) -> None:
        with self.database.connection() as connection:
            connection.execute("SELECT 1 FROM catalog_state FOR SHARE")

    # Reading

    def snapshot(self) -> CatalogSnapshot:
        with self.database.connection() as connection:
            (latest,) = connection.execute(
                "SELECT version FROM catalog_state WHERE id = 1"
            ).fetchone()
            with self._cache_lock:
                if latest == self._version:
                    return self._memory.snapshot  # one query: nothing new
            with connection.transaction():
                connection.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                )
                with self._cache_lock:
                    self._catch_up(connection)
                    return self._memory.snapshot

    def changes_since(self, version: int) -> set[str] | None:
        with self._cache_lock:
            return self._memory.changes_since(version)

    def _catch_up(self, connection: psycopg.Connection) -> None:
        """Install what was committed after the version in memory (under the
        cache lock, in a transaction that sees one state of the database)."""
        latest, pruned_up_to = connection.execute(
            "SELECT version, pruned_up_to FROM catalog_state WHERE id = 1"
        ).fetchone()
        if latest == self._version:
            return  # what nearly every request finds: nothing new
        with collection_paused():
            if self._version < pruned_up_to or self._version < 0:
                rows = _streamed(connection, f"SELECT {_COLUMNS} FROM catalog_entities")
                self._memory.replace(_record(row) for row in rows)
                installed = BULK
            else:
                rows = _streamed(
                    connection,
                    f"SELECT c.ref, {_COLUMNS.replace('ref, ', '')} "
                    "FROM catalog_changes c LEFT JOIN catalog_entities e "
                    "ON e.ref = c.ref WHERE c.version > %s ORDER BY c.version",
                    (self._version,),
                )
                changes: list[Change] = [
                    (row[0], None if row[2] is None else _record(row)) for row in rows
                ]
                self._memory.install(changes)
                installed = len(changes)
            self._version = latest
        if installed >= BULK:
            settle()

    # Writing

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        with self.database.connection() as connection:
            with connection.transaction():
                # The write lock, across every worker and instance, till commit.
                connection.execute(
                    "SELECT 1 FROM catalog_state WHERE id = 1 FOR UPDATE"
                )
                with self._cache_lock:
                    self._catch_up(connection)
                    staged = StagedTransaction(self._memory.snapshot)
                    version = self._version + 1
                yield staged
                if not staged.staged:
                    return
                with STORE_WRITE_SECONDS.time():
                    self._write(connection, staged, version)
            # Committed: installed here at once, unless a snapshot of another
            # thread has read it from the database meanwhile.
            with self._cache_lock:
                if self._version < version:
                    self._memory.install(list(staged.staged.items()))
                    self._version = version

    def _write(
        self, connection: psycopg.Connection, staged: StagedTransaction, version: int
    ) -> None:
        puts = [r for r in staged.staged.values() if r is not None]
        deletes = [ref for ref, r in staged.staged.items() if r is None]
        with connection.cursor() as cursor:
            for start in range(0, len(puts), _BATCH):  # a batch at a time
                cursor.executemany(
                    "INSERT INTO catalog_entities"
                    " (ref, location_key, source, hash, entity)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (ref) DO UPDATE SET"
                    " location_key = EXCLUDED.location_key, source = EXCLUDED.source,"
                    " hash = EXCLUDED.hash, entity = EXCLUDED.entity",
                    [
                        (r.ref, r.location_key, r.source, r.hash, _text(r))
                        for r in puts[start : start + _BATCH]
                    ],
                )
            if deletes:
                cursor.execute(
                    "DELETE FROM catalog_entities WHERE ref = ANY(%s)", (deletes,)
                )
            with cursor.copy("COPY catalog_changes (version, ref) FROM STDIN") as copy:
                for ref in staged.staged:
                    copy.write_row((version, ref))
            pruned = version - KEPT_VERSIONS
            if pruned > 0:
                cursor.execute(
                    "DELETE FROM catalog_changes WHERE version <= %s", (pruned,)
                )
            cursor.execute(
                "UPDATE catalog_state SET version = %s,"
                " pruned_up_to = GREATEST(pruned_up_to, %s) WHERE id = 1",
                (version, max(pruned, 0)),
            )


def migrate(connection: psycopg.Connection) -> list[str]:
    """Apply the migrations this database lacks, in order; return their names."""
    applied_now = []
    with connection.transaction():
        require_schema(connection)
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            name for (name,) in connection.execute("SELECT name FROM schema_migrations")
        }
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            connection.execute(path.read_text())
            connection.execute(
                "INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,)
            )
            applied_now.append(path.name)
            logger.info("Applied database migration %s", path.name)
    return applied_now


def require_schema(connection: psycopg.Connection) -> None:
    """Raise ``DatabaseUnavailable`` when no schema on the connection's search
    path exists: the service's tables could be neither found nor created."""
    (schema,) = connection.execute("SELECT current_schema()").fetchone()
    if schema is None:
        (path,) = connection.execute("SHOW search_path").fetchone()
        raise DatabaseUnavailable(
            f"the database has no schema for the service's tables: none of its "
            f"search_path ({path}) exists; create it (CREATE SCHEMA), or correct "
            "the options of catalog.store.url (or DATABASE_URL)"
        )


def pending_migrations(connection: psycopg.Connection) -> list[str]:
    """The migrations ``migrate`` would apply to this database, in order, found
    in a read-only transaction: nothing is created or changed."""
    with connection.transaction():
        connection.execute("SET TRANSACTION READ ONLY")
        require_schema(connection)
        (table,) = connection.execute(
            "SELECT to_regclass('schema_migrations')"
        ).fetchone()
        done = set()
        if table is not None:
            done = {
                name
                for (name,) in connection.execute("SELECT name FROM schema_migrations")
            }
        pending = [
            p.name for p in sorted(MIGRATIONS.glob("*.sql")) if p.name not in done
        ]
        (may_create,) = connection.execute(
            "SELECT has_schema_privilege(current_schema(), 'CREATE')"
        ).fetchone()
    if pending and not may_create:
        raise DatabaseUnavailable(_cannot_create("no CREATE privilege"))
    return pending


def _cannot_create(reason: object) -> str:
    return (
        f"the database does not let the service create its tables ({reason}); "
        "grant its role CREATE on the schema, or name a schema of its own in "
        "the options of catalog.store.url (or DATABASE_URL)"
    )


def _streamed(
    connection: psycopg.Connection, query: str, params: tuple = ()
) -> Iterator[tuple]:
    """The rows of ``query``, fetched a few thousand at a time (a server-side
    cursor, inside the caller's transaction), never all at once."""
    with connection.cursor(name="frobs_catalog_rows") as cursor:
        cursor.itersize = 2000
        cursor.execute(query, params)
        yield from cursor


def _text(record: StoredEntity) -> str:
    return unpack(record.packed).decode()


def _record(row: tuple) -> StoredEntity:
    ref, location_key, source, hash_, entity = row
    return StoredEntity(ref, jsoncodec.decode(entity), location_key, source, hash_)
