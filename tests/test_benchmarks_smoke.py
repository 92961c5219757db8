"""The benchmark suite runs: ``tests/benchmarks/run.py --smoke`` in a subprocess.

Checks only that it finished and that its JSON holds every figure, the machine
and the commit; it says nothing about speed (the smoke sizes are tiny and the
machine may be busy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.report import format_comparison, format_table
from stores import postgres_or_skip

REPO = Path(__file__).resolve().parent.parent
FIGURES = ("event_to_visible", "ingest_throughput", "full_sync", "reads", "memory")


def run_suite(arguments: list[str]) -> subprocess.CompletedProcess:
    """Run the suite; stopped (a timeout, Ctrl-C), it gets SIGTERM first, so
    it stops its services and removes its temp folder before it exits."""
    command = [sys.executable, "tests/benchmarks/run.py", *arguments]
    with subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as suite:
        try:
            stdout, stderr = suite.communicate(timeout=180)
        except BaseException:
            suite.terminate()
            try:
                suite.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                suite.kill()
            raise
    return subprocess.CompletedProcess(command, suite.returncode, stdout, stderr)


@pytest.mark.parametrize("store", ["file", "postgres"])
def test_the_benchmark_suite_runs_in_smoke_mode_and_writes_every_figure(
    tmp_path, store
):
    if store == "postgres":
        postgres_or_skip()
    results_path = tmp_path / "results.json"
    finished = run_suite(
        [
            "--smoke",
            "--store",
            store,
            "--json",
            str(results_path),
            "--timeout",
            "120",
        ]
    )
    output = f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr[-4000:]}"
    # 0, or 1 when it reports problems (a slow machine may run out of budgets);
    # anything else means it crashed or its watchdog stopped it.
    assert finished.returncode in (0, 1), output
    assert results_path.exists(), output
    results = json.loads(results_path.read_text())
    assert results["machine"]["cores"] and results["machine"]["gunicorn"], output
    assert "commit" in results["git"], output

    figures = results["figures"]
    assert set(FIGURES) <= set(figures), output
    for size in ("50", "200"):
        sync = figures["full_sync"][size]
        for kind in ("first", "noop", "one_percent"):
            assert sync[kind]["trigger_to_end_s"]["median"] is not None, output
        assert figures["event_to_visible"][size]["p50_ms"]["median"], output
        assert figures["memory"][size]["max_worker_vmhwm_mib"], output
    ingest = figures["ingest_throughput"]
    for key in ("service_events_per_s", "floor_events_per_s", "ratio"):
        assert ingest[key]["median"], output
    for kind in figures["reads"]["kinds"].values():
        assert kind["p50_ms"]["median"] and kind["p99_ms"]["median"], output
    assert len(figures["reads"]["kinds"]) == 5, output
    assert "| figure |" in finished.stdout, output
    assert results["settings"]["store"] == store, output

    compared = format_comparison([results, results]).splitlines()
    assert compared[0] == f"| figure | case | {store} | {store} |"
    assert len(compared) == len(format_table(results).splitlines())
