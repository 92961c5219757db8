"""The benchmark suite's command line, the order of its measurements, its guards.

For each size (smallest first), ``--runs`` times: a fresh service on an empty
temp store, then three full syncs triggered through the scheduler API (first,
no-op, 1 % changed), each once the workers are idle (as a scheduled resync
minutes after the last one would find them).  The last run's service stays up
for the figures measured at that size: at the smallest size, event to visible
and the ingest throughput, each ingest run followed by a run of the bare Flask
floor (loaded the same way, started beside the service); at
the largest, the reads, event to visible at scale, and the peak memory of the
workers (recorded at every size).

Time guards: every wait has a budget (``service.Deadline``); a figure that runs
out of it is recorded as a problem with what it measured so far, and the suite
goes on.  Past ``--timeout`` seconds the figures not started are skipped, and a
watchdog stops everything and writes what was measured 60 s later at the
latest.  The table is printed and the JSON written in every case.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from benchmarks import figures
from benchmarks.frob_generator import FrobsSource, frob_name, teams
from benchmarks.report import (
    format_table,
    git_commit,
    machine,
    over_runs,
    reference_ms,
    write_json,
)
from benchmarks.service import (
    BenchTimeout,
    Deadline,
    Gunicorn,
    Service,
    floor_app,
)

FIGURES = ("event_to_visible", "ingest_throughput", "full_sync", "reads", "memory")
START_BUDGET = 60.0
WATCHDOG_GRACE = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tests/benchmarks/run.py",
        description="Benchmark the service under gunicorn (loopback only).",
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000,50000",
        help="frob counts for the full syncs; the smallest and the largest also "
        "serve the other figures (default 1000,10000,50000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes (50,200), 1 run, few requests: checks the suite works",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("benchmark-results.json"),
        help="where to write the results (default ./benchmark-results.json)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="seconds after which figures not started are skipped (default 1200)",
    )
    parser.add_argument(
        "--events", type=int, default=200, help="events per event-to-visible run"
    )
    parser.add_argument(
        "--ingest-events", type=int, default=600, help="events per ingest run"
    )
    parser.add_argument(
        "--reads", type=int, default=300, help="requests per kind of read and run"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=40.0,
        help="seconds each event-to-visible or ingest run may take (default 40)",
    )
    parser.add_argument(
        "--read-budget",
        type=float,
        default=10.0,
        help="seconds each kind of read may take per run (default 10)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp folder (stores, logs)"
    )
    parser.add_argument(
        "--store",
        choices=("file", "postgres"),
        default="file",
        help="the catalog store to measure (default file); postgres uses "
        "--database-url, a fresh schema per service",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FROBS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="the PostgreSQL database for --store postgres "
        "(default $FROBS_BENCH_DATABASE_URL or the local test database)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.runs = "50,200", 1
        args.events, args.ingest_events, args.reads = 5, 48, 5
        args.budget, args.read_budget = min(args.budget, 10.0), 5.0
    args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not args.size_list or min(args.size_list) < 1 or args.runs < 1:
        parser.error("--sizes needs positive counts and --runs at least 1")
    return args


class Suite:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.source = FrobsSource()
        self.overall = Deadline.after(args.timeout, "the whole suite")
        self.running: list[Gunicorn] = []
        self.schemas: list[str] = []
        self.results: dict = {
            "machine": machine(),
            "git": git_commit(),
            "settings": {
                "sizes": args.size_list,
                "runs": args.runs,
                "smoke": args.smoke,
                "workers": 4,
                "events_per_batch": args.events,
                "ingest_events_per_run": args.ingest_events,
                "reads_per_kind": args.reads,
                "budget_s": args.budget,
                "read_budget_s": args.read_budget,
                "timeout_s": args.timeout,
                "store": args.store,
            },
            "started_at": datetime.now(timezone.utc).isoformat(),
            "figures": {name: {} for name in FIGURES},
            "problems": [],
        }

    @property
    def figures(self) -> dict:
        return self.results["figures"]

    def problem(self, text: str) -> None:
        print(f"  problem: {text}", file=sys.stderr, flush=True)
        self.results["problems"].append(text)

    def say(self, text: str) -> None:
        elapsed = self.args.timeout - self.overall.left()
        print(f"[{elapsed:7.1f}s] {text}", file=sys.stderr, flush=True)

    def budget(self, what: str, seconds: float | None = None) -> Deadline:
        return self.overall.sooner(seconds or self.args.budget, what)

    # Services

    def start(self, server: Gunicorn, ready_path: str | None = None) -> None:
        self.running.append(server)
        server.start(self.overall.sooner(START_BUDGET, "start"), ready_path)

    def stop(self, server: Gunicorn) -> None:
        for line in server.errors_in_log()[:20]:
            self.problem(f"log of {server.app} on :{server.port}: {line}")
        server.stop()
        if server in self.running:
            self.running.remove(server)

    def store_url(self) -> str | None:
        """For ``--store postgres``, a database URL on a schema of its own."""
        if self.args.store != "postgres":
            return None
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.args.database_url, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        return f"{self.args.database_url}?options=-csearch_path%3D{schema}"

    def drop_schemas(self) -> None:
        if not self.schemas:
            return
        with psycopg.connect(self.args.database_url, autocommit=True) as connection:
            for schema in self.schemas:
                connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        self.schemas.clear()

    def stop_all(self) -> None:
        for server in list(self.running):
            server.stop()
        self.running.clear()

    def take_reference(self) -> None:
        """Time the reference work once more (the machine's speed, now), while
        no service runs."""
        samples = self.results["machine"].setdefault("reference_ms", [])
        samples.append(reference_ms())

    # The order of things

    def run(self) -> None:
        self.source.start()
        self.take_reference()
        sizes = self.args.size_list
        for size in sizes:
            if self.overall.passed():
                self.problem(f"size {size}: skipped, past --timeout")
                continue
            service = self.full_syncs(size)
            if service is None:
                continue
            try:
                self.at_size(service, size, sizes[0], sizes[-1])
            finally:
                self.stop(service)
            self.take_reference()

    def full_syncs(self, size: int) -> Service | None:
        """``--runs`` fresh services, three syncs each; the last one is returned."""
        kinds = ("first", "noop", "one_percent")
        runs: dict[str, list] = {kind: [] for kind in kinds}
        kept = None
        for r in range(self.args.runs):
            if self.overall.passed():
                self.problem(f"full sync of {size}: run {r + 1} skipped")
                break
            self.source.reset(size)
            service = Service(
                self.folder / f"size-{size}-run-{r + 1}",
                self.source,
                self.args.timeout,
                self.store_url(),
            )
            try:
                self.start(service)
                scheduler = service.scheduler()
                for kind in kinds:
                    if kind == "one_percent":
                        self.source.change_one_percent(f"c{r + 1}", offset=r)
                    budget = self.budget(f"full sync of {size}, {kind}", 600)
                    # As a scheduled resync minutes later would: every worker
                    # has caught up with the previous sync and indexed it.
                    service.wait_until_idle(self.budget(f"idle before {kind}", 120))
                    run = scheduler.sync(budget)
                    self.say(
                        f"sync {size} run {r + 1} {kind}: {run.trigger_to_end_s:.2f}s "
                        f"{run.outcome} {run.counts}"
                    )
                    if run.outcome != "succeeded":
                        self.problem(f"sync {size} {kind}: outcome {run.outcome}")
                    runs[kind].append(run)
            except Exception as exc:
                self.problem(f"full sync of {size}, run {r + 1}: {describe(exc)}")
                self.stop(service)
                break
            if r == self.args.runs - 1:
                kept = service
            else:
                self.stop(service)
        self.figures["full_sync"][str(size)] = {
            kind: {
                "trigger_to_end_s": over_runs([x.trigger_to_end_s for x in done]),
                "run_s": over_runs([x.run_s for x in done]),
                "observed_s": over_runs([x.observed_s for x in done]),
                "outcomes": [x.outcome for x in done],
                "counts": [x.counts for x in done],
            }
            for kind, done in runs.items()
        }
        return kept

    def at_size(self, service: Service, size: int, smallest: int, largest: int):
        wanted = []
        if size == largest:
            wanted.append(self.reads)
        if size in (smallest, largest):
            wanted.append(self.event_to_visible)
        if size == smallest:
            wanted.append(self.ingest)
        for figure in wanted:
            if self.overall.passed():
                self.problem(f"{figure.__name__} at {size}: skipped, past --timeout")
                continue
            try:
                figure(service, size)
            except Exception as exc:
                self.problem(f"{figure.__name__} at {size}: {describe(exc)}")
        # Every worker loads the catalog before its memory is read.
        warm_up = self.overall.sooner(120, f"warm-up at {size}")
        url = service.base_url + figures.BY_NAME.format(frob_name(0))
        figures.warm_up_workers(url, None, warm_up)
        self.figures["memory"][str(size)] = service.memory()
        self.say(f"memory at {size}: {self.figures['memory'][str(size)]}")

    # The figures

    def event_to_visible(self, service: Service, size: int) -> None:
        runs, statuses = [], Counter()
        for r in range(self.args.runs):
            first = size + 100_000 + r * self.args.events
            indexes = list(range(first, first + self.args.events))
            budget = self.budget(f"event to visible at {size}, run {r + 1}")
            try:
                summary, seen = figures.event_to_visible(
                    service.base_url, indexes, budget
                )
            except BenchTimeout as exc:
                self.problem(str(exc))
                break
            statuses += seen
            runs.append(summary)
            self.say(f"event to visible at {size}, run {r + 1}: {summary}")
            if summary["n"] < len(indexes):
                self.problem(
                    f"event to visible at {size}, run {r + 1}: only "
                    f"{summary['n']} of {len(indexes)} events in the time budget"
                )
        self.figures["event_to_visible"][str(size)] = {
            "events_per_run": self.args.events,
            "events_done": [x["n"] for x in runs],
            "p50_ms": over_runs([x["p50_ms"] for x in runs]),
            "p99_ms": over_runs([x["p99_ms"] for x in runs]),
            "webhook_answer_p50_ms": over_runs([x["ack"]["p50_ms"] for x in runs]),
            "webhook_answer_p99_ms": over_runs([x["ack"]["p99_ms"] for x in runs]),
            "statuses": dict(statuses),
        }
        self.check_statuses("event to visible", statuses, "webhook 202")

    def ingest_events(self, size: int, r: int) -> tuple[list, str]:
        """Half ``add`` of new frobs, half ``modify`` of listed ones, interleaved,
        every frob given the run's revision label."""
        revision = f"ingest{r + 1}"
        count = self.args.ingest_events
        added = [size + 500_000 + r * count + k for k in range(count - count // 2)]
        modified = [(r * count + k * 3) % size for k in range(count // 2)]
        modified = list(dict.fromkeys(modified))
        self.source.set_revision(added + modified, revision)
        events = []
        for k in range(max(len(added), len(modified))):
            if k < len(added):
                events.append(("add", frob_name(added[k])))
            if k < len(modified):
                events.append(("modify", frob_name(modified[k])))
        return events, revision

    def ingest(self, service: Service, size: int) -> None:
        """Ingest runs, each followed at once by a run of the bare Flask floor
        (started beside the service): the machine's speed drifts, so each
        ratio compares two runs taken moments apart."""
        floor = floor_app(self.folder / "floor", service.config_path)
        floor.folder.mkdir(exist_ok=True)
        try:
            self.start(floor, ready_path=figures.INGRESS)
        except Exception as exc:
            self.problem(f"floor: {describe(exc)}")
            self.stop(floor)
            floor = None
        ingest = self.figures["ingest_throughput"]
        rates, statuses = [], Counter()
        service_cpu, bench_cpu, source_cpu = [], [], []
        floor_rates, floor_statuses, floor_cpu = [], Counter(), []
        floor_count = max(self.args.ingest_events, 2000 if not self.args.smoke else 48)
        try:
            for r in range(self.args.runs):
                applied = self.ingest_run(
                    service,
                    size,
                    r,
                    rates,
                    statuses,
                    (service_cpu, bench_cpu, source_cpu),
                )
                if floor is not None:
                    self.floor_run(
                        floor, floor_count, r, floor_rates, floor_statuses, floor_cpu
                    )
                if applied < self.args.ingest_events:
                    break  # what is still in flight would spoil the next run
        finally:
            if floor is not None:
                self.stop(floor)
        ingest.update(
            {
                "stored": size,
                "sender_threads": figures.SENDER_THREADS,
                "events_per_run": self.args.ingest_events,
                "service_events_per_s": over_runs(rates),
                "service_cpu_ms_per_event": over_runs(service_cpu),
                "benchmark_cpu_ms_per_event": over_runs(bench_cpu),
                "source_cpu_ms_per_event": over_runs(source_cpu),
                "service_statuses": dict(statuses),
                "floor_events_per_run": floor_count,
                "floor_events_per_s": over_runs(floor_rates),
                "floor_cpu_ms_per_request": over_runs(floor_cpu),
                "floor_statuses": dict(floor_statuses),
                "ratio": over_runs(
                    [s / f for s, f in zip(rates, floor_rates) if s and f]
                ),
            }
        )
        self.check_statuses("ingest", statuses, 202)
        if floor is not None:
            self.check_statuses("floor", floor_statuses, 202)

    def ingest_run(
        self,
        service: Service,
        size: int,
        r: int,
        rates,
        statuses,
        cpu_lists,
    ) -> int:
        """One ingest run; returns how many of its events were applied.
        ``cpu_lists`` get the CPU per event of the service, of this process
        (the webhook senders) and of the Frobs source."""
        events, revision = self.ingest_events(size, r)
        budget = self.budget(f"ingest at {size}, run {r + 1}")
        service.wait_until_idle(self.budget(f"idle before ingest run {r + 1}"))
        clocks = (service.cpu_seconds, own_cpu_seconds, self.source.cpu_seconds)
        cpu = [clock() for clock in clocks]
        began = time.perf_counter()
        sent_s, seen = figures.send_events(service.base_url, events, budget)
        statuses += seen
        try:
            figures.wait_applied(service.base_url, revision, len(events), budget)
            applied = len(events)
        except BenchTimeout as exc:
            applied = figures.applied(service.base_url, revision)
            self.problem(f"{exc}: {applied} of {len(events)} in the time budget")
        elapsed = time.perf_counter() - began
        rates.append(applied / elapsed)
        if applied:
            for clock, used, runs in zip(clocks, cpu, cpu_lists):
                runs.append((clock() - used) * 1000 / applied)
        self.say(
            f"ingest run {r + 1}: {applied} events applied in {elapsed:.2f}s "
            f"(answered in {sent_s:.2f}s), {dict(seen)}"
        )
        return applied

    def floor_run(self, floor: Gunicorn, count: int, r: int, rates, statuses, cpu):
        """One run of the bare Flask floor: ``count`` requests."""
        events = [("add", frob_name(k)) for k in range(count)]
        budget = self.budget(f"floor, run {r + 1}")
        used = floor.cpu_seconds()
        elapsed, seen = figures.send_events(floor.base_url, events, budget)
        statuses += seen
        rates.append(seen[202] / elapsed)
        if seen[202]:
            cpu.append((floor.cpu_seconds() - used) * 1000 / seen[202])
        self.say(f"floor run {r + 1}: {count} requests in {elapsed:.2f}s")

    def reads(self, service: Service, size: int) -> None:
        kinds: dict[str, dict] = {}
        for kind in figures.read_plans(size, teams(size)):
            runs, statuses = [], Counter()
            for r in range(self.args.runs):
                plan = figures.read_plans(size, teams(size))[kind]
                what = f"reads {kind} at {size}, run {r + 1}"
                warm_up = self.budget(f"warm-up for {what}", 120)
                summary, seen = figures.reads(
                    service.base_url,
                    plan,
                    self.args.reads,
                    lambda: self.budget(what, self.args.read_budget),
                    warm_up,
                )
                statuses += seen
                runs.append(summary)
                self.say(f"reads {kind} at {size}, run {r + 1}: {summary}")
            kinds[kind] = {
                "requests_per_run": self.args.reads,
                "requests_done": [x["n"] for x in runs],
                "p50_ms": over_runs([x["p50_ms"] for x in runs]),
                "p99_ms": over_runs([x["p99_ms"] for x in runs]),
                "warm_up_s": [x["warm_up_s"] for x in runs],
                "statuses": dict(statuses),
            }
            self.check_statuses(f"reads {kind}", statuses, 200)
            if any(x["n"] < self.args.reads for x in runs):
                self.problem(
                    f"reads {kind} at {size}: fewer requests than planned "
                    f"({[x['n'] for x in runs]}) in the time budget"
                )
        self.figures["reads"] = {"stored": size, "kinds": kinds}

    def check_statuses(self, what: str, statuses: Counter, expected) -> None:
        others = {k: v for k, v in statuses.items() if k != expected}
        if others:
            self.problem(f"{what}: unexpected answers {others}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, BenchTimeout):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def finish(suite: Suite, json_path: Path, began: float) -> None:
    suite.results["duration_s"] = round(time.monotonic() - began, 1)
    write_json(suite.results, json_path)
    print(format_table(suite.results))
    store = suite.results["settings"]["store"]
    print(f"\n{suite.results['duration_s']} s, {store} store; results in {json_path}")
    for problem in suite.results["problems"]:
        print(f"problem: {problem}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="frobs-bench-"))
    suite = Suite(args, folder)
    json_path = args.json.resolve()
    done = threading.Event()

    def watchdog() -> None:
        if done.wait(args.timeout + WATCHDOG_GRACE):
            return
        suite.problem("watchdog: the suite ran past --timeout and was stopped")
        suite.stop_all()
        finish(suite, json_path, began)
        sys.stdout.flush()
        os._exit(3)

    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        suite.run()
    except KeyboardInterrupt:
        suite.problem("interrupted")
    except Exception as exc:
        suite.problem(f"suite failed: {describe(exc)}")
    finally:
        done.set()
        suite.stop_all()
        suite.drop_schemas()
        suite.source.stop()
        finish(suite, json_path, began)
        if args.keep:
            print(f"temp folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if suite.results["problems"] else 0


def own_cpu_seconds() -> float:
    """User and system CPU time of this process (the webhook senders)."""
    times = os.times()
    return times.user + times.system
