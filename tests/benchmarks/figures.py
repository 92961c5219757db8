"""The measurements: each function runs one batch against a running service.

- ``event_to_visible``: ``add`` webhooks one at a time, each timed from the send
  to the first 200 of ``GET /api/catalog/entities/by-name/...``, polled every
  millisecond by a client separate from the sender (a new connection per
  event, kept alive while it polls, so usually another worker than the one
  handling the webhook);
- ``send_events``: webhooks sent by 16 client threads as fast as they are
  answered, and ``wait_applied``: polling ``by-query`` until the catalog shows
  them all (the ingest throughput, and its floor with the bare Flask app);
- ``reads``: catalog reads of several kinds, each request timed, after
  untimed reads that make the workers load the catalog first (the time those
  took is returned as ``warm_up_s``);
- latency samples become ``p50_ms``/``p99_ms`` with ``latency_summary``.

Every loop stops at its ``Deadline`` and says how far it got; statuses other
than the expected ones are counted and returned, never hidden.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import requests
from gunicorn_service import HTTP_TIMEOUT

from benchmarks.frob_generator import frob_name
from benchmarks.service import BenchTimeout, Deadline, session

INGRESS = "/api/events/http/frobs"
BY_NAME = "/api/catalog/entities/by-name/component/default/{}"
SENDER_THREADS = 16
POLL_SECONDS = 0.001


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of non-empty ``samples``."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(samples_s: list[float]) -> dict:
    if not samples_s:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    return {
        "n": len(samples_s),
        "p50_ms": round(percentile(samples_s, 50) * 1000, 2),
        "p99_ms": round(percentile(samples_s, 99) * 1000, 2),
    }


def delivery_headers() -> dict:
    """A distinct delivery id, so the ingress never takes an event for a retry."""
    return {"X-Request-Id": uuid.uuid4().hex}


def event_to_visible(
    base_url: str, indexes: list[int], deadline: Deadline
) -> tuple[dict, Counter]:
    """``add`` each frob in turn; time until its Component is readable."""
    sender = session()
    samples, acks = [], []
    statuses: Counter = Counter()
    for i in indexes:
        if deadline.passed():
            break
        name = frob_name(i)
        answer: dict = {}

        def send(name=name, answer=answer) -> None:
            try:
                response = sender.post(
                    base_url + INGRESS,
                    json={"type": "add", "id": name},
                    headers=delivery_headers(),
                    timeout=max(deadline.left(), 1),
                )
                answer["status"] = response.status_code
            except Exception as exc:  # reported, not raised, from this thread
                answer["status"] = type(exc).__name__
            answer["at"] = time.perf_counter()

        began = time.perf_counter()
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            with session() as poller:
                url = base_url + BY_NAME.format(name)
                visible = poll_visible(poller, url, deadline)
        except (BenchTimeout, requests.RequestException) as exc:
            if not deadline.passed():
                raise
            unfinished = f"{type(exc).__name__} at the end of the time budget"
            statuses[f"not visible: {unfinished}"] += 1
            break
        samples.append(visible - began)
        thread.join(max(deadline.left(), 1))
        if "at" in answer:
            acks.append(answer["at"] - began)
        statuses[f"webhook {answer.get('status', 'no answer')}"] += 1
    sender.close()
    summary = latency_summary(samples)
    summary["ack"] = latency_summary(acks)
    summary["planned"] = len(indexes)
    return summary, statuses


def poll_visible(poller, url: str, deadline: Deadline) -> float:
    """The ``perf_counter`` of the first 200 for ``url``."""
    while True:
        response = poller.get(url, timeout=max(deadline.left(), 1))
        if response.status_code == 200:
            return time.perf_counter()
        if response.status_code != 404:
            raise RuntimeError(f"GET {url}: {response.status_code} {response.text}")
        if deadline.passed():
            raise BenchTimeout(f"{deadline.what}: {url} never became readable")
        time.sleep(POLL_SECONDS)


def send_events(
    base_url: str, events: list[tuple[str, str]], deadline: Deadline
) -> tuple[float, Counter]:
    """POST every ``(type, id)`` event from 16 threads, each with its own
    keep-alive connection; seconds from the first send to the last answer."""
    local = threading.local()
    statuses: Counter = Counter()
    lock = threading.Lock()

    def post(event: tuple[str, str]) -> None:
        if deadline.passed():
            outcome = "not sent (time budget)"
        else:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = session()
            try:
                outcome = client.post(
                    base_url + INGRESS,
                    json={"type": event[0], "id": event[1]},
                    headers=delivery_headers(),
                    timeout=max(deadline.left(), 1),
                ).status_code
            except Exception as exc:
                outcome = type(exc).__name__
        with lock:
            statuses[outcome] += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(SENDER_THREADS) as pool:
        list(pool.map(post, events))
    return time.perf_counter() - began, statuses


def applied(base_url: str, revision: str) -> int:
    """How many entities carry label ``revision=<revision>`` now."""
    with session() as client:
        return count_labelled(client, base_url, revision)


def count_labelled(client, base_url: str, revision: str) -> int:
    response = client.get(
        base_url + "/api/catalog/entities/by-query",
        params={
            "filter": f"metadata.labels.revision={revision}",
            "limit": 1,
            "fields": "metadata.name",
        },
        timeout=HTTP_TIMEOUT,
    )
    response.raise_for_status()
    return response.json()["totalItems"]


def wait_applied(
    base_url: str, revision: str, expected: int, deadline: Deadline
) -> None:
    """Poll until ``expected`` entities carry label ``revision=<revision>``."""
    with session() as client:
        while count_labelled(client, base_url, revision) < expected:
            if deadline.passed():
                raise BenchTimeout(f"{deadline.what}: events not all applied")
            time.sleep(0.01)


def read_plans(n: int, teams: int) -> dict[str, object]:
    """For each kind of read, an endless iterator of paths (with their query)."""

    def by_name():
        i = 0
        while True:
            i = (i * 7919 + 13) % n
            yield BY_NAME.format(frob_name(i)), None

    def filtered_list():
        for team in cycle(range(teams)):
            owner = f"team-{(team * 7) % teams}"
            yield (
                "/api/catalog/entities",
                {"filter": f"kind=component,spec.owner={owner}"},
            )

    def pages(params: dict, pages_per_walk: int = 10):
        while True:
            cursor = None
            for _ in range(pages_per_walk):
                query = {"cursor": cursor} if cursor else params
                page = yield "/api/catalog/entities/by-query", query
                cursor = page.get("pageInfo", {}).get("nextCursor")
                if not cursor:
                    break

    def facets():
        while True:
            yield (
                "/api/catalog/entity-facets",
                [
                    ("facet", "spec.type"),
                    ("facet", "kind"),
                ],
            )

    return {
        "by_name": by_name(),
        "filtered_list_100": filtered_list(),
        "by_query_pages": pages({"limit": 100}),
        "by_query_filtered_pages": pages(
            {"limit": 100, "filter": "kind=component,spec.type=service"}
        ),
        "facets": facets(),
    }


def reads(
    base_url: str,
    plan,
    requests_wanted: int,
    budget: Callable[[], Deadline],
    warm_up_deadline: Deadline,
) -> tuple[dict, Counter]:
    """Time ``requests_wanted`` reads of one kind, over four keep-alive
    connections in turn; fewer if the deadline ``budget()`` gives once the
    workers are warm comes first."""
    clients = [session() for _ in range(4)]
    samples: list[float] = []
    statuses: Counter = Counter()
    path, query = next(plan)
    warm_up = warm_up_workers(base_url + path, query, warm_up_deadline)
    deadline = budget()
    for k in range(requests_wanted):
        if deadline.passed():
            break
        client = clients[k % len(clients)]
        began = time.perf_counter()
        try:
            response = client.get(
                base_url + path, params=query, timeout=max(deadline.left(), 1)
            )
        except requests.RequestException as exc:
            if not deadline.passed():
                raise
            statuses[f"{type(exc).__name__} at the end of the time budget"] += 1
            break
        body = response.content
        samples.append(time.perf_counter() - began)
        statuses[response.status_code] += 1
        page = response.json() if response.status_code == 200 and body else {}
        path, query = plan.send(page if isinstance(page, dict) else {})
    for client in clients:
        client.close()
    summary = latency_summary(samples)
    summary["planned"] = requests_wanted
    summary["warm_up_s"] = round(warm_up, 3)
    return summary, statuses


def warm_up_workers(url: str, query, deadline: Deadline, clients: int = 8) -> float:
    """Untimed reads on ``clients`` new connections at once, so that each worker
    has loaded the catalog (and built what this read needs) before the timed
    reads; the seconds this took.  Best effort: the kernel picks the workers."""

    def read(_: int) -> None:
        with session() as client:
            for _ in range(2):
                client.get(url, params=query, timeout=max(deadline.left(), 1))

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(read, range(clients)))
    return time.perf_counter() - began
