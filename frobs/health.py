"""Backstage's health endpoints, for load balancers and PaaS health checks.

``GET /.backstage/health/v1/liveness`` answers 200 while the process serves.
``GET /.backstage/health/v1/readiness`` answers 200 once the configuration is
loaded and the store is writable, 503 otherwise; its body lists each provider's
source status from its last full sync.  A provider whose source is down does not
make the service unready: webhooks are still accepted and kept.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from .catalog.store import CatalogStore
from .errors import ServiceUnavailableError
from .scheduler import Scheduler

logger = logging.getLogger(__name__)

_SOURCE_STATUS = {
    "succeeded": "ok",
    "refused": "ok",
    "failed": "failing",
    "timed out": "failing",
    "running": "syncing",
}


class Health:
    def __init__(self, store: CatalogStore, scheduler: Scheduler) -> None:
        self.store = store
        self.scheduler = scheduler

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("health", __name__)
        blueprint.add_url_rule("/liveness", "liveness", self.liveness)
        blueprint.add_url_rule("/readiness", "readiness", self.readiness)
        return blueprint

    def liveness(self):
        return jsonify({"status": "ok"})

    def readiness(self):
        providers = {}
        for task in self.scheduler.describe():
            last = task["lastRun"]
            providers[task["taskId"].rsplit(":", 1)[0]] = {
                "source": _SOURCE_STATUS.get(last["outcome"], "unknown")
                if last
                else "not synced yet",
                "lastSync": last,
            }
        try:
            self.store.check_writable()
        except (OSError, ServiceUnavailableError) as exc:
            logger.error("Not ready: the store is not writable: %s", exc)
            body = {"status": "error", "message": "the store is not writable"}
            return jsonify({**body, "providers": providers}), 503
        return jsonify({"status": "ok", "providers": providers})
