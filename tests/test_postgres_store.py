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
from concurrent.futures import ThreadPoolExecutor
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
    wait_until_serving,
)
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


def test_an_unreachable_database_is_a_clear_error():
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")


def test_a_postgres_store_without_a_url_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = Config(
        data={"catalog": {"store": {"type": "postgres", "path": str(tmp_path)}}}
    )
    with pytest.raises(ConfigError, match="catalog.store.url.*DATABASE_URL"):
        create_app(config, start_background=False)


# Two service instances sharing one database


def write_config(folder: Path, source_port: int, database_url: str) -> Path:
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
                        "schedule": {
                            "initialDelay": {"hours": 1},
                            "frequency": {"hours": 1},
                            "timeout": {"seconds": 30},
                        },
                    }
                }
            },
        },
    }
    path = folder / "app-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_two_instances_sharing_a_database_end_with_the_exact_catalog(
    postgres_url, tmp_path
):
    def answer(request: Request) -> Response:
        frob_id = request.path.rsplit("/", 1)[-1]
        return json_response({"frobs": [component_frob(frob_id, owner="team-pg")]}, 200)

    servers = serve_frobs(answer)
    source = next(servers)
    instances = []
    try:
        for number in range(2):
            folder = tmp_path / f"instance-{number}"
            folder.mkdir()
            config = write_config(folder, source.port, postgres_url)
            port, log = free_port(), folder / "gunicorn.log"
            process = spawn_gunicorn(config, port, log, WORKERS)
            base_url = f"http://127.0.0.1:{port}"
            instances.append((base_url, process, log))
            wait_until_serving(
                process,
                base_url,
                log,
                WORKERS,
                30,
                lambda: last_lines(read_log(log), 40),
            )

        def send(number: int) -> int:
            base_url = instances[number % 2][0]
            body = {"type": "add", "id": f"burst-{number:02d}"}
            return http(
                "POST", f"{base_url}/api/events/http/frobs", json=body
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(60)))
        assert statuses == [202] * 60

        expected = [f"burst-{n:02d}" for n in range(60)]
        for base_url, _, _ in instances:
            names = sorted(
                e["metadata"]["name"]
                for e in http("GET", f"{base_url}/api/catalog/entities").json()
            )
            assert names == expected
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(
                "SELECT ref, entity::text FROM catalog_entities ORDER BY ref"
            ).fetchall()
        assert [ref for ref, _ in rows] == [f"component:default/{n}" for n in expected]
        assert all(json.loads(text)["spec"]["owner"] == "team-pg" for _, text in rows)
    finally:
        for _, process, _ in instances:
            stop_process(process)
        next(servers, None)


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
