"""Prometheus metrics, summed over every gunicorn worker.

Counters and histograms are ``prometheus_client`` metrics in multiprocess mode:
each worker writes its own files under ``PROMETHEUS_MULTIPROC_DIR``, which
``gunicorn.conf.py`` prepares (empty) before the first worker starts, and
``GET /metrics`` adds them up.  Without that variable (tests, the CLI) the
metrics live in this process only.  What the catalog holds (entities by kind) is
read from a store snapshot at scrape time, so every worker answers the same.

Recording a metric never raises and never blocks on anything but memory.
"""

from __future__ import annotations

import os
from collections import Counter as Tally

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from .catalog.store import CatalogStore

EVENTS_RECEIVED = Counter(
    "frobs_events_received_total",
    "Webhooks received, by topic and HTTP status answered",
    ["topic", "status"],
)
EVENTS_ROUTED = Counter(
    "frobs_events_routed_total", "Events republished to a sub-topic", ["topic"]
)
EVENTS_UNROUTED = Counter(
    "frobs_events_unrouted_total",
    "Events with no sub-topic, or no subscriber for their topic",
    ["topic"],
)
SUBSCRIBER_FAILURES = Counter(
    "frobs_subscriber_failures_total",
    "Deliveries a subscriber failed",
    ["subscriber"],
)
RETRIES = Counter("frobs_event_retries_total", "Deliveries scheduled for a retry")
DEAD_LETTERS = Counter("frobs_dead_letters_total", "Events that became dead letters")
MUTATIONS = Counter(
    "frobs_mutations_total",
    "Mutations applied, by provider and type",
    ["provider", "type"],
)
ENTITIES_WRITTEN = Counter(
    "frobs_entities_written_total",
    "Entity outcomes of applied mutations, by provider",
    ["provider", "outcome"],
)
SYNC_RUNS = Counter(
    "frobs_sync_runs_total",
    "Scheduled task runs, by task and outcome",
    ["task", "outcome"],
)
SYNC_SECONDS = Histogram(
    "frobs_sync_duration_seconds",
    "How long scheduled task runs took",
    ["task"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 180, 600),
)
STORE_WRITE_SECONDS = Histogram(
    "frobs_store_write_seconds",
    "How long store commits took",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


def metrics_blueprint(store: CatalogStore) -> Blueprint:
    blueprint = Blueprint("metrics", __name__)

    @blueprint.route("/metrics")
    def metrics() -> Response:
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
            output = generate_latest(registry)
        else:
            from prometheus_client import REGISTRY

            output = generate_latest(REGISTRY)
        # The type names its charset already; as a mimetype it would get a second.
        return Response(
            output + _catalog_metrics(store), content_type=CONTENT_TYPE_LATEST
        )

    return blueprint


class _CatalogCollector:
    """Entities by kind, read from the store when scraped (no per-worker files)."""

    def __init__(self, store: CatalogStore) -> None:
        self.store = store

    def collect(self):
        family = GaugeMetricFamily(
            "frobs_entities", "Entities in the catalog, by kind", labels=["kind"]
        )
        kinds = Tally(r.kind for r in self.store.snapshot().records())
        for kind, count in sorted(kinds.items()):
            family.add_metric([kind], count)
        yield family


def _catalog_metrics(store: CatalogStore) -> bytes:
    registry = CollectorRegistry()
    registry.register(_CatalogCollector(store))
    return generate_latest(registry)
