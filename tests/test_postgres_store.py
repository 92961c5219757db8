"""The PostgreSQL store: its schema comes from versioned migrations applied once,
every instance sees every commit on its next snapshot and installs only what
changed (or everything, when it fell behind the changes kept), an unreachable
database is a clear error, and two service instances (separate gunicorn
processes) sharing one database end with the exact catalog after a burst of
events split between them.

The semantics every store shares run on both stores in ``test_mutation_rules``
and ``test_search_index``.  Tests here skip, saying why, without a database."""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import yaml
from catalog_entities import component
from frob_sources import component_frob, json_response, serve_frobs
from gunicorn_service import (
    free_port,
    http,
    last_lines,
    read_log,
    spawn_gunicorn,
    stop_process,
    wait_until,
    wait_until_serving,
)
from stores import fresh_schema, postgres_or_skip
from werkzeug.wrappers import Request, Response

from frobs.app import create_app
from frobs.catalog import postgres_store
from frobs.catalog.apply import apply_mutation
from frobs.catalog.mutation import DeferredEntity, DeltaMutation, FullMutation
from frobs.catalog.postgres_store import PostgresStore
from frobs.database import Database, DatabaseUnavailable
from frobs.config import ConfigError, Config

WORKERS = 2


def entities(*names: str) -> FullMutation:
    return FullMutation([DeferredEntity(component(n), "k") for n in names])


def test_migrations_are_applied_once_and_recorded(postgres_url):
    PostgresStore(postgres_url).close()
    PostgresStore(postgres_url).close()  # a second instance applies nothing
    with psycopg.connect(postgres_url) as connection:
        applied = connection.execute("SELECT name FROM schema_migrations").fetchall()
        assert applied == [
            (p.name,) for p in sorted(postgres_store.MIGRATIONS.glob("*.sql"))
        ]
        assert postgres_store.migrate(connection) == []


def test_pending_migrations_lists_what_a_start_would_apply_and_changes_nothing(
    postgres_url,
):
    every = [p.name for p in sorted(postgres_store.MIGRATIONS.glob("*.sql"))]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert postgres_store.pending_migrations(connection) == every
        assert postgres_store.pending_migrations(connection) == every
        (tables,) = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        assert tables == 0

        postgres_store.migrate(connection)
        assert postgres_store.pending_migrations(connection) == []
        connection.execute(
            "DELETE FROM schema_migrations WHERE name = %s", (every[-1],)
        )
        assert postgres_store.pending_migrations(connection) == [every[-1]]


def test_another_instance_installs_only_what_a_commit_changed(postgres_url):
    writer, reader = PostgresStore(postgres_url), PostgresStore(postgres_url)
    apply_mutation(writer, "p", entities("a", "b", "c"))
    before = reader.snapshot()
    assert len(before) == 3

    apply_mutation(writer, "p", entities("a", "b", "d"))  # c removed, d added
    after = reader.snapshot()

    assert sorted(r.ref for r in after.records()) == [
        "component:default/a",
        "component:default/b",
        "component:default/d",
    ]
    changed = reader.changes_since(before.version)
    assert {"component:default/c", "component:default/d"} <= changed
    assert not {"component:default/a", "component:default/b"} & changed
    assert after.get("component:default/a") is before.get("component:default/a")
    writer.close(), reader.close()


def test_an_instance_behind_the_changes_kept_reads_everything_again(
    postgres_url, monkeypatch
):
    monkeypatch.setattr(postgres_store, "KEPT_VERSIONS", 2)
    writer, reader = PostgresStore(postgres_url), PostgresStore(postgres_url)
    apply_mutation(writer, "p", entities("a"))
    reader.snapshot()
    for name in "bcde":
        apply_mutation(
            writer, "events", DeltaMutation([DeferredEntity(component(name), "e")])
        )
    refs = sorted(r.ref for r in reader.snapshot().records())
    assert refs == [f"component:default/{n}" for n in "abcde"]
    with psycopg.connect(postgres_url) as connection:
        (kept,) = connection.execute(
            "SELECT count(DISTINCT version) FROM catalog_changes"
        ).fetchone()
    assert kept == 2
    writer.close(), reader.close()


def test_advisory_locks_are_scoped_to_the_schema(postgres_url):
    """Services on their own schemas of one database never hold each other's
    locks; workers of one service (one schema) do."""
    with fresh_schema() as other_url:
        ours, same, other = (
            Database(postgres_url),
            Database(postgres_url),
            Database(other_url),
        )
        held = ours.dedicated()
        try:
            assert ours.try_lock(held, "frobs scheduler: lead")
            with same.dedicated() as connection:
                assert not same.try_lock(connection, "frobs scheduler: lead")
            with other.dedicated() as connection:
                assert other.try_lock(connection, "frobs scheduler: lead")
            with other.advisory_lock("frobs order: x", blocking=False) as taken:
                assert taken
        finally:
            held.close()
            for database in (ours, same, other):
                database.close()


def test_an_unreachable_database_is_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")


def test_a_search_path_naming_no_schema_is_a_clear_error_and_creates_nothing():
    base = postgres_or_skip()
    url = f"{base}?options=-csearch_path%3Dno_such_schema_here"
    with pytest.raises(
        DatabaseUnavailable, match=r"no schema .* \(no_such_schema_here\)"
    ):
        PostgresStore(url)
    with psycopg.connect(url, autocommit=True) as connection:
        with pytest.raises(DatabaseUnavailable, match="CREATE SCHEMA"):
            postgres_store.pending_migrations(connection)


def test_a_postgres_store_without_a_url_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = Config(
        data={"catalog": {"store": {"type": "postgres", "path": str(tmp_path)}}}
    )
    with pytest.raises(ConfigError, match="catalog.store.url.*DATABASE_URL"):
        create_app(config, start_background=False)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("mysql://frobs:s3cret@127.0.0.1/catalog", "its scheme is 'mysql'"),
        ("postgresql://127.0.0.1:5432/test?bogus=1", "bogus"),
    ],
)
def test_a_url_the_driver_cannot_use_names_the_setting_and_not_the_password(
    monkeypatch, tmp_path, url, reason
):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = Config(
        data={
            "catalog": {
                "store": {"type": "postgres", "url": url, "path": str(tmp_path)}
            }
        }
    )
    with pytest.raises(ConfigError) as raised:
        create_app(config, start_background=False)
    message = str(raised.value)
    assert "catalog.store.url (or DATABASE_URL) is no PostgreSQL URL" in message
    assert reason in message and "s3cret" not in message


def test_a_role_that_may_not_create_tables_is_a_clear_error():
    base = postgres_or_skip()
    name = f"test_nocreate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f"CREATE SCHEMA {name}")
        admin.execute(f"GRANT USAGE ON SCHEMA {name} TO {name}")
    url = re.sub(r"//[^@/]*@", "//", base).replace("//", f"//{name}@", 1)
    url = f"{url}?options=-csearch_path%3D{name}"
    try:
        with pytest.raises(DatabaseUnavailable, match="grant its role CREATE"):
            PostgresStore(url)
        with psycopg.connect(url, autocommit=True) as connection:
            with pytest.raises(DatabaseUnavailable, match="no CREATE privilege"):
                postgres_store.pending_migrations(connection)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {name} CASCADE")
            admin.execute(f"DROP OWNED BY {name}")
            admin.execute(f"DROP ROLE {name}")


def test_readiness_says_not_ready_when_the_database_stops_answering(
    postgres_url, tmp_path
):
    config = Config(
        data={
            "catalog": {
                "store": {
                    "type": "postgres",
                    "url": postgres_url,
                    "path": str(tmp_path),
                }
            }
        }
    )
    app = create_app(config, start_background=False)
    client = app.test_client()
    assert client.get("/.backstage/health/v1/readiness").status_code == 200
    store = app.extensions["frobs"].store
    store.close()
    store.database = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/gone")
    store.database._pool_here().timeout = 1  # fail fast; the default is 30 s
    response = client.get("/.backstage/health/v1/readiness")
    assert response.status_code == 503
    assert response.get_json()["message"] == "the store is not writable"
    store.close()


# Two service instances sharing one database


def write_config(
    folder: Path, source_port: int, database_url: str, schedule: dict
) -> Path:
    base = f"http://127.0.0.1:{source_port}/pg"
    config = {
        "events": {"http": {"topics": ["frobs"]}},
        "catalog": {
            "store": {"type": "postgres", "url": database_url, "path": str(folder)},
            "providers": {
                "frobs": {
                    "pg": {
                        "dataUrl": f"{base}/data",
                        "itemUrl": f"{base}/items/{{id}}",
                        "schedule": {"timeout": {"seconds": 30}, **schedule},
                    }
                }
            },
        },
    }
    path = folder / "app-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def answer(request: Request) -> Response:
    """The Frobs stand-in: ``/pg/data`` lists two frobs; any other path is the
    frob its last segment names."""
    if request.path == "/pg/data":
        frobs = [component_frob(f"listed-{n}", owner="team-pg") for n in range(2)]
        return json_response({"frobs": frobs}, 200)
    frob_id = request.path.rsplit("/", 1)[-1]
    return json_response({"frobs": [component_frob(frob_id, owner="team-pg")]}, 200)


@contextmanager
def instances(tmp_path: Path, database_url: str, schedule: dict, count: int = 2):
    """``count`` gunicorn instances (base URL, process, log) on one database."""
    servers = serve_frobs(answer)
    source = next(servers)
    started = []
    try:
        for number in range(count):
            folder = tmp_path / f"instance-{number}"
            folder.mkdir()
            config = write_config(folder, source.port, database_url, schedule)
            port, log = free_port(), folder / "gunicorn.log"
            process = spawn_gunicorn(config, port, log, WORKERS)
            base_url = f"http://127.0.0.1:{port}"
            started.append((base_url, process, log))
            wait_until_serving(
                process,
                base_url,
                log,
                WORKERS,
                30,
                lambda: last_lines(read_log(log), 40),
            )
        yield started
    finally:
        for _, process, _ in started:
            stop_process(process)
        next(servers, None)


NO_SYNC = {"initialDelay": {"hours": 1}, "frequency": {"hours": 1}}


def test_two_instances_sharing_a_database_end_with_the_exact_catalog(
    postgres_url, tmp_path
):
    with instances(tmp_path, postgres_url, NO_SYNC) as started:

        def send(number: int) -> int:
            base_url = started[number % 2][0]
            body = {"type": "add", "id": f"burst-{number:02d}"}
            return http(
                "POST", f"{base_url}/api/events/http/frobs", json=body
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(60)))
        assert statuses == [202] * 60

        expected = [f"burst-{n:02d}" for n in range(60)]
        for base_url, _, _ in started:
            names = sorted(
                e["metadata"]["name"]
                for e in http("GET", f"{base_url}/api/catalog/entities").json()
            )
            assert names == expected
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(
                "SELECT ref, entity::text FROM catalog_entities ORDER BY ref"
            ).fetchall()
            waiting = connection.execute("SELECT count(*) FROM event_inbox").fetchone()
        assert [ref for ref, _ in rows] == [f"component:default/{n}" for n in expected]
        assert all(json.loads(text)["spec"]["owner"] == "team-pg" for _, text in rows)
        assert waiting == (0,)


def sync_starts(log: Path) -> list[int]:
    """The pids of the workers that started a full sync, in order."""
    return [
        int(match[1])
        for match in re.finditer(
            r"^\S+ \S+ (\d+) INFO \S+: Task frobs-pg:refresh started$",
            read_log(log),
            re.MULTILINE,
        )
    ]


def test_one_instance_runs_the_syncs_and_the_other_takes_over_when_it_is_killed(
    postgres_url, tmp_path
):
    every_second = {"initialDelay": {"seconds": 0}, "frequency": {"seconds": 1}}
    with instances(tmp_path, postgres_url, every_second) as started:
        logs = [log for _, _, log in started]
        wait_until(lambda: sum(len(sync_starts(log)) for log in logs) >= 3, 20, "syncs")
        leaders = [number for number, log in enumerate(logs) if sync_starts(log)]
        assert len(leaders) == 1, [sync_starts(log) for log in logs]
        (leader,) = leaders
        follower_log = logs[1 - leader]
        assert len(set(sync_starts(logs[leader]))) == 1  # one worker of that one

        os.killpg(started[leader][1].pid, signal.SIGKILL)  # master and workers
        started[leader][1].wait(10)
        wait_until(lambda: len(sync_starts(follower_log)) >= 2, 30, "a takeover")
        with psycopg.connect(postgres_url) as connection:
            names = connection.execute(
                "SELECT ref FROM catalog_entities ORDER BY ref"
            ).fetchall()
        assert names == [(f"component:default/listed-{n}",) for n in range(2)]
