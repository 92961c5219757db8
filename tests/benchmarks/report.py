"""Results: statistics over runs, the machine, the markdown table and the JSON.

``over_runs`` turns the per-run values of one figure into median, min and max.
``machine`` and ``git_commit`` describe where and what was measured;
``reference_ms`` times a fixed piece of work, so that runs on a machine whose
speed drifts (a virtual machine's does, up to twice) can be told apart.
``format_table`` renders the results as the markdown table the README's
"Performance" section is pasted from; ``write_json`` saves everything.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

from gunicorn_service import REPO_ROOT


def over_runs(values: list[float | None]) -> dict:
    """Median, min and max of the runs that gave a value, and every run's value."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "runs": values}
    return {
        "median": round(statistics.median(present), 4),
        "min": round(min(present), 4),
        "max": round(max(present), 4),
        "runs": values,
    }


def machine() -> dict:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "gunicorn": metadata.version("gunicorn"),
        "flask": metadata.version("flask"),
        "platform": platform.platform(),
    }


def reference_ms(rounds: int = 5) -> float:
    """Milliseconds a fixed piece of pure-Python work takes here (the median of
    ``rounds``): encoding, decoding and sorting what a small catalog holds.  It
    moves with the machine's speed and never with the service's code."""
    document = [
        {"kind": "Component", "metadata": {"name": f"frob-{i}"}, "tags": ["a", "b"]}
        for i in range(2000)
    ]
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        decoded = json.loads(json.dumps(document))
        sorted(decoded, key=lambda entity: entity["metadata"]["name"][::-1])
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 2)


def git_commit() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


# The table


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _row(figure: str, case: str, stat: dict | None, digits: int = 1) -> str:
    stat = stat or {}
    cells = [_number(stat.get(k), digits) for k in ("median", "min", "max")]
    return f"| {figure} | {case} | " + " | ".join(cells) + " |"


def _done(fig: dict) -> str:
    """Requests timed per run, as "n" or "n of planned" when fewer were."""
    done = fig.get("requests_done") or [0]
    planned = fig.get("requests_per_run")
    if min(done) >= (planned or 0):
        return str(planned)
    return f"{'/'.join(str(d) for d in done)} of {planned}"


def _size(n: int | str) -> str:
    return f"{int(n):,}"


def format_table(results: dict) -> str:
    """The figures as one markdown table: median, min and max over the runs."""
    figures = results.get("figures", {})
    lines = ["| figure | case | median | min | max |", "|---|---|---:|---:|---:|"]
    samples = results.get("machine", {}).get("reference_ms")
    if samples:
        lines.append(
            _row(
                "machine",
                "reference Python work, ms (lower is faster; between sizes)",
                over_runs(samples),
                2,
            )
        )

    for size, fig in figures.get("event_to_visible", {}).items():
        events = fig.get("events_per_run")
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            lines.append(
                _row(
                    "event to visible",
                    f"{_size(size)} stored, {label} ms ({events} events)",
                    fig.get(key),
                )
            )

    ingest = figures.get("ingest_throughput", {})
    if ingest:
        events = ingest.get("events_per_run")
        stored = ingest.get("stored")
        lines.append(
            _row(
                "ingest throughput",
                f"service, events/s ({events} add/modify, {_size(stored or 0)} stored)",
                ingest.get("service_events_per_s"),
                0,
            )
        )
        lines.append(
            _row(
                "ingest throughput",
                f"floor: bare Flask, requests/s ({ingest.get('floor_events_per_run')})",
                ingest.get("floor_events_per_s"),
                0,
            )
        )
        lines.append(
            _row(
                "ingest throughput",
                "service / floor",
                ingest.get("ratio"),
                3,
            )
        )
        for key, case in (
            ("service_cpu_ms_per_event", "service CPU, ms per add/modify"),
            ("floor_cpu_ms_per_request", "floor CPU, ms per request"),
            ("benchmark_cpu_ms_per_event", "webhook senders CPU, ms per event"),
            ("source_cpu_ms_per_event", "Frobs source CPU, ms per event"),
        ):
            if ingest.get(key):
                lines.append(_row("ingest throughput", case, ingest.get(key), 2))

    for size, fig in figures.get("full_sync", {}).items():
        for key, label in (
            ("first", "first (empty catalog)"),
            ("noop", "no-op resync"),
            ("one_percent", "1% changed"),
        ):
            lines.append(
                _row(
                    "full sync",
                    f"{_size(size)} frobs, {label}, s",
                    (fig.get(key) or {}).get("trigger_to_end_s"),
                    2,
                )
            )

    reads = figures.get("reads", {})
    labels = {
        "by_name": "by name",
        "filtered_list_100": "list, filter owner (100)",
        "by_query_pages": "by-query pages of 100",
        "by_query_filtered_pages": "by-query pages, filtered",
        "facets": "facets spec.type, kind",
    }
    for kind, label in labels.items():
        fig = reads.get("kinds", {}).get(kind)
        if not fig:
            continue
        for key, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
            lines.append(
                _row(
                    f"reads at {_size(reads['stored'])}",
                    f"{label}, {name} ms ({_done(fig)} req)",
                    fig.get(key),
                )
            )

    for size, fig in figures.get("memory", {}).items():
        worker = fig.get("max_worker_vmhwm_mib")
        master = fig.get("master_vmhwm_mib")
        stat = {"median": worker, "min": worker, "max": worker}
        lines.append(
            _row("peak memory", f"{_size(size)} stored, max worker VmHWM MiB", stat, 0)
        )
        stat = {"median": master, "min": master, "max": master}
        lines.append(
            _row("peak memory", f"{_size(size)} stored, master VmHWM MiB", stat, 0)
        )
    return "\n".join(lines)


def format_comparison(results: list[dict]) -> str:
    """Several runs' medians side by side, a column each, named by its store."""
    columns = [r.get("settings", {}).get("store", "file") for r in results]
    medians: list[dict[tuple[str, str], str]] = []
    cases: dict[tuple[str, str], str] = {}
    for result in results:
        found = {}
        for line in format_table(result).splitlines()[2:]:
            figure, case, median = [c.strip() for c in line.strip("|").split("|")][:3]
            key = (figure, case.rsplit(" (", 1)[0])  # counts in brackets may differ
            cases.setdefault(key, case)
            found[key] = median
        medians.append(found)
    lines = [
        "| figure | case | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for key, case in cases.items():
        cells = [found.get(key, "-") for found in medians]
        lines.append(f"| {key[0]} | {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
