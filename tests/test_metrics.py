"""Metrics under gunicorn: what three workers handled, summed in every scrape."""

from __future__ import annotations

import re
from pathlib import Path

from gunicorn_service import (
    free_port,
    http,
    last_lines,
    read_log,
    spawn_gunicorn,
    stop_process,
    wait_until_serving,
)

WORKERS = 3


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_what_was_sent_across_all_workers(tmp_path: Path):
    config = tmp_path / "app.yaml"
    config.write_text(
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
        "events:\n  http:\n    topics: [frobs, plain]\n"
    )
    port, log = free_port(), tmp_path / "gunicorn.log"
    process = spawn_gunicorn(config, port, log, WORKERS)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(
            process, base, log, WORKERS, 20, lambda: last_lines(read_log(log), 60)
        )
        for number in range(30):
            response = http(
                "POST",
                f"{base}/api/events/http/plain",
                json={"n": number},
                headers={"X-Request-Id": f"m-{number}"},
            )
            assert response.status_code == 202
        for _ in range(7):
            bad = http(
                "POST",
                f"{base}/api/events/http/plain",
                data=b"{",
                headers={"Content-Type": "application/json"},
            )
            assert bad.status_code == 400
        # Whichever worker answers a scrape, it reports what all of them handled.
        for _ in range(12):
            text = http("GET", f"{base}/metrics").text
            assert (
                metric(text, "frobs_events_received_total", topic="plain", status="202")
                == 30
            )
            assert (
                metric(text, "frobs_events_received_total", topic="plain", status="400")
                == 7
            )
            assert metric(text, "frobs_events_unrouted_total", topic="plain") == 30
        pids = set(re.findall(r"Booting worker with pid: (\d+)", read_log(log)))
        assert len(pids) == WORKERS
    finally:
        stop_process(process)
