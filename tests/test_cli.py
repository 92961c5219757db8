"""The command line, run as a user would, against the same store as the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
