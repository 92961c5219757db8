"""The command line, run as a user would, against the same store as the service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from gunicorn_service import free_port

from frobs.catalog.postgres_store import MIGRATIONS, PostgresStore

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "frobs", *args],
        cwd=REPO,
        env={**os.environ, "APP_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_letters_can_be_listed_and_replayed_from_the_command_line(tmp_path):
    source = tmp_path / "config"
    (source / "frobs").mkdir(parents=True)
    (source / "frobs" / "late.json").write_text('{"frobs": [')
    config = source / "app.yaml"
    config.write_text(
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "  providers:\n    frobs:\n      dev:\n"
        "        dataUrl: file:data.json\n        itemUrl: file:frobs/{id}.json\n"
        "events:\n  retry:\n    maxAttempts: 1\n"
    )
    from frobs.app import create_app
    from frobs.config import load_config

    app = create_app(load_config({"APP_CONFIG": str(config)}, source), False)
    app.test_client().post("/api/events/http/frobs", json={"type": "add", "id": "late"})

    listed = run_cli("dead-letters", "list", config=config)
    assert listed.returncode == 0, listed.stderr
    (letter,) = json.loads(listed.stdout)["items"]
    assert letter["payload"] == {"type": "add", "id": "late"}

    still_broken = run_cli("dead-letters", "replay", letter["id"], config=config)
    assert still_broken.returncode == 1
    assert json.loads(still_broken.stdout)["items"][0]["outcome"] == "dead letter"

    usage = run_cli("dead-letters", "replay", config=config)
    assert usage.returncode == 2 and "--all" in usage.stderr


def test_a_broken_configuration_is_reported_on_stderr(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("events:\n  htp: 1\n")
    result = run_cli("dead-letters", "list", config=config)
    assert result.returncode == 1
    assert "unknown key 'events.htp'" in result.stderr


def source_config(tmp_path: Path, extra: str = "") -> Path:
    source = tmp_path / "config"
    (source / "frobs").mkdir(parents=True, exist_ok=True)
    (source / "data.json").write_text(
        json.dumps(
            {
                "frobs": [
                    {
                        "id": "cart",
                        "type": "service",
                        "lifecycle": "production",
                        "owner": "team-a",
                    },
                    {
                        "id": "docs",
                        "type": "website",
                        "lifecycle": "production",
                        "owner": "team-b",
                    },
                ]
            }
        )
    )
    config = source / "app.yaml"
    config.write_text(
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "  providers:\n    frobs:\n      dev:\n"
        "        dataUrl: file:data.json\n        itemUrl: file:frobs/{id}.json\n"
        + extra
    )
    return config


def test_check_config_masks_secrets(tmp_path):
    config = source_config(
        tmp_path,
        "events:\n  modules:\n    github:\n      webhookSecret: hush-hush\n"
        "backend:\n  auth:\n    adminToken: also-secret\n",
    )
    result = run_cli("check-config", config=config)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config"]["events"]["modules"]["github"]["webhookSecret"] == "****"
    assert "hush-hush" not in result.stdout and "also-secret" not in result.stdout
    assert shown["files"] == [str(config)]


def test_check_config_lists_every_problem_with_key_and_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "events:\n  htp: 1\n  http:\n    maxBodyBytes: lots\n"
        "catalog:\n  store:\n    path: ${NOT_SET_ANYWHERE}\n"
    )
    result = run_cli("check-config", config=config)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(str(config)) for line in lines)
    assert "events.htp" in result.stderr and "events.http.maxBodyBytes" in result.stderr
    assert "NOT_SET_ANYWHERE" in result.stderr


def test_check_config_on_the_file_store_does_not_create_the_folder(tmp_path):
    config = source_config(tmp_path)
    result = run_cli("check-config", config=config)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "store").exists()
    assert json.loads(result.stdout)["store"]["exists"] is False
    assert "does not exist yet; the service creates it" in result.stderr


def postgres_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "app.yaml"
    config.write_text(
        "catalog:\n  store:\n    type: postgres\n"
        f"    url: '{url}'\n    path: {tmp_path / 'store'}\n"
    )
    return config


def test_check_config_lists_pending_migrations_and_applies_none(tmp_path, postgres_url):
    config = postgres_config(tmp_path, postgres_url)
    migrations = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))

    result = run_cli("check-config", config=config)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"]["pendingMigrations"] == migrations
    assert (
        f"catalog database: reachable, {len(migrations)} migrations pending "
        f"({', '.join(migrations)}); they are applied when the service starts"
    ) in result.stderr
    with psycopg.connect(postgres_url) as connection:
        (tables,) = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
    assert tables == 0
    assert not (tmp_path / "store").exists()

    PostgresStore(postgres_url).close()
    again = run_cli("check-config", config=config)
    assert "catalog database: reachable, up to date" in again.stderr


def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    config = postgres_config(tmp_path, url)
    for command in (["check-config"], ["entities"]):
        result = run_cli(*command, config=config)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "cannot reach" in result.stderr and "Traceback" not in result.stderr


def test_check_config_reports_problems_of_the_parts_it_does_not_build(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = tmp_path / "app.yaml"
    config.write_text(
        "catalog:\n  store:\n    type: postgres\n"
        "  providers:\n    frobs:\n      dev:\n"
        "        dataUrl: file:../../outside.json\n"
    )
    result = run_cli("check-config", config=config)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert any("catalog.store.url" in line for line in lines)
    assert any("catalog.providers.frobs.dev" in line for line in lines)


def test_sync_runs_a_full_sync_and_prints_a_summary(tmp_path):
    config = source_config(tmp_path)
    result = run_cli("sync", "frobs-dev", config=config)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["outcome"] == "succeeded" and summary["counts"]["added"] == 2
    assert "Syncing frobs-dev" in result.stderr

    unknown = run_cli("sync", "frobs-nope", config=config)
    assert unknown.returncode == 2 and "frobs-dev" in unknown.stderr


def test_entities_lists_filters_and_gets(tmp_path):
    config = source_config(tmp_path)
    run_cli("sync", "frobs-dev", config=config)

    everything = json.loads(run_cli("entities", config=config).stdout)
    assert {e["metadata"]["name"] for e in everything} == {"cart", "docs"}
    websites = run_cli("entities", "--filter", "spec.type=website", config=config)
    assert [e["metadata"]["name"] for e in json.loads(websites.stdout)] == ["docs"]
    one = json.loads(run_cli("entities", "component:cart", config=config).stdout)
    assert one["metadata"]["uid"] and one["metadata"]["name"] == "cart"
    assert run_cli("entities", "component:nope", config=config).returncode == 1


def test_send_signs_a_webhook_as_its_topic_requires(tmp_path, httpserver):
    import hashlib
    import hmac

    config = source_config(
        tmp_path,
        "events:\n  http:\n    topics: [frobs, github]\n"
        "  modules:\n    github:\n      webhookSecret: s3cret\n",
    )
    body = b'{"zen": "Keep it logically awesome."}'
    payload = tmp_path / "ping.json"
    payload.write_bytes(body)
    httpserver.expect_request(
        "/api/events/http/github", method="POST"
    ).respond_with_json({"status": "accepted"}, status=202)

    result = run_cli(
        "send",
        "github",
        str(payload),
        "--url",
        httpserver.url_for("/"),
        "--header",
        "X-GitHub-Event: ping",
        config=config,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("202")
    ((request, _),) = httpserver.log
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature-256"] == expected
    assert request.headers["X-GitHub-Event"] == "ping"
    assert request.get_data() == body


def test_log_format_json_writes_one_json_object_per_line(tmp_path):
    script = (
        "from frobs.app import create_app\n"
        "app = create_app(start_background=False)\n"
        "app.test_client().post('/api/events/http/frobs', "
        "json={'type': 'add', 'id': 'ledger'})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "LOG_FORMAT": "json", "STORE_PATH": str(tmp_path / "s")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line]
    assert records and all({"level", "name", "message"} <= set(r) for r in records)
    assert any("applied add of frob ledger" in r["message"] for r in records)


def test_send_with_nothing_listening_says_so_in_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % probe.getsockname()[1]
    payload = tmp_path / "add.json"
    payload.write_text('{"type": "add", "id": "cart"}')

    result = run_cli(
        "send", "frobs", str(payload), "--url", url, config=source_config(tmp_path, "")
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: cannot reach {url}: connection refused; is the service running?"
    ]


@pytest.mark.parametrize(
    "command",
    [("entities",), ("entities", "component:default/cart"), ("dead-letters", "list")],
)
def test_reading_commands_do_not_make_a_store_at_a_missing_path(tmp_path, command):
    config = source_config(tmp_path)
    result = run_cli(*command, config=config)
    assert result.returncode == 1
    assert "no catalog store at" in result.stderr
    assert "catalog.store.path" in result.stderr
    assert not (tmp_path / "store").exists()


def test_send_to_a_url_it_cannot_use_says_so_in_one_line(tmp_path):
    payload = tmp_path / "add.json"
    payload.write_text('{"type": "add", "id": "cart"}')
    result = run_cli(
        "send",
        "frobs",
        str(payload),
        "--url",
        "htp:/bad",
        config=source_config(tmp_path, ""),
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: cannot send to htp:/bad:")
