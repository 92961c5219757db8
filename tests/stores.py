"""The catalog stores the semantic suites run against: the file store, and the
PostgreSQL store when a database is reachable (each test in a schema of its
own, dropped after it).  ``open_store()`` opens another instance on the same
data, as another worker or instance would (keyword arguments go to the file
store only)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg
import pytest

from frobs.catalog.file_store import FileStore
from frobs.catalog.postgres_store import PostgresStore

POSTGRES_URL = os.environ.get(
    "FROBS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
STORE_KINDS = ["file", "postgres"]


def postgres_or_skip() -> str:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"no PostgreSQL at {POSTGRES_URL} ({str(exc).strip()}); start one or "
            "set FROBS_TEST_DATABASE_URL to run the PostgreSQL store's tests"
        )
    return POSTGRES_URL


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A database URL whose tables live in a schema of their own, dropped after."""
    base = postgres_or_skip()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url():
    """A database URL whose tables live in a fresh schema."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(params=STORE_KINDS)
def open_store(request, tmp_path) -> Callable:
    opened = []

    def open_one(**file_options):
        if request.param == "file":
            store = FileStore(tmp_path / "store", **file_options)
        else:
            store = PostgresStore(request.getfixturevalue("postgres_url"))
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        if isinstance(store, PostgresStore):
            store.close()
