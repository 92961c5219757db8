"""``EventProcessor``: accept an event durably, deliver it, retry, dead-letter.

``accept`` is what the ingress calls: a delivery already done (by delivery id)
is skipped; otherwise the event is written to the inbox and delivered at once,
in the request.  Whatever the subscribers do, the event is safe: the entry is
on disk before delivery starts, so a crash of the process cannot lose it, and
it is fsynced before the answer whenever it stays in the inbox (a subscriber
failed), so a power loss cannot either; an event every subscriber took needs
no fsync of its own, since what the subscribers stored is durable.  A
subscriber that fails is retried later by ``retry_due`` (a background thread in
every worker calls it), with exponential backoff and jitter, without running
again the subscribers that already succeeded.  A subscriber that fails
``max_attempts`` times makes the event a dead letter, with every attempt's error;
``replay`` delivers dead letters again.  The delivery id is marked done only when
every subscriber succeeded.

An entry is delivered under its inbox lock, so no two workers deliver it at
once: a new entry is locked before it is stored, and any other is re-read once
the lock is held, so a finished entry is never delivered again.
Unfinished entries left by a crash are picked up by ``retry_due`` after a short
grace period.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from ..metrics import DEAD_LETTERS, RETRIES
from .delivery import Delivery, delivering
from .inbox import FileInbox, InboxEntry
from .params import EventParams, delivery_id, shown_delivery_id
from .service import EventsService

logger = logging.getLogger(__name__)

#: An entry still unfinished this long after it was received was left by a crash.
RECOVERY_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8
    initial_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)
    dedup_retention: timedelta = timedelta(days=7)
    dedup_without_id: timedelta = timedelta(minutes=1)

    def delay(self, failures: int) -> float:
        """Doubling from ``initial_delay``, ±50 % jitter, never past ``max_delay``."""
        base = self.initial_delay.total_seconds() * 2 ** min(max(failures - 1, 0), 60)
        jittered = base * random.uniform(0.5, 1.5)
        return min(jittered, self.max_delay.total_seconds())


class EventProcessor:
    def __init__(
        self, events: EventsService, inbox: FileInbox, policy: DeliveryPolicy
    ) -> None:
        self.events = events
        self.inbox = inbox
        self.policy = policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Accepting

    def accept(self, params: EventParams) -> bool:
        """Store and deliver an event; False when it is a redelivery already done."""
        given = delivery_id(params.metadata)
        key = _dedup_key(params, given)
        window = self.policy.dedup_retention if given else self.policy.dedup_without_id
        if self.inbox.is_done(key, window.total_seconds()):
            logger.info(
                "Skipped event on topic %s, delivery %s: already delivered",
                params.topic,
                shown_delivery_id(params.metadata) or "-",
            )
            return False

        entry = InboxEntry.accepted(params, key, given)
        # Locked before it is stored: no other worker can deliver it meanwhile,
        # so it needs no reading back.
        with self.inbox.lock(entry.id, blocking=True):
            self.inbox.record(entry, durable=False)  # fsynced below if it stays
            self._attempt(entry)
        return True

    # Delivering

    def deliver(self, entry_id: str, blocking: bool) -> str | None:
        """Deliver an inbox entry; returns its outcome, or None if not ours now."""
        with self.inbox.lock(entry_id, blocking) as held:
            if not held:
                return None
            entry = self.inbox.load(entry_id)
            if entry is None:
                return None
            return self._attempt(entry)

    def _attempt(self, entry: InboxEntry) -> str:
        delivery = Delivery(
            received_at=entry.received_at,
            delivery_id=entry.delivery_id,
            skip=frozenset(entry.succeeded),
        )
        with delivering(delivery):
            self.events.publish(entry.params())
        entry.succeeded = sorted(set(entry.succeeded) | delivery.succeeded)

        if not delivery.failures:
            self.inbox.mark_done(entry.dedup_key)
            self.inbox.remove(entry)
            return "delivered"

        now = time.time_ns()
        for subscriber, error in delivery.failures.items():
            entry.failures[subscriber] = entry.failures.get(subscriber, 0) + 1
            entry.attempts.append({"at": now, "subscriber": subscriber, "error": error})
        exhausted = [
            s for s, n in entry.failures.items() if n >= self.policy.max_attempts
        ]
        if exhausted:
            DEAD_LETTERS.inc()
            self.inbox.bury(entry)
            logger.error(
                "Event %s on topic %s, delivery %s, is a dead letter: %s failed "
                "%d times",
                entry.id,
                entry.topic,
                entry.delivery_id or "-",
                ", ".join(exhausted),
                self.policy.max_attempts,
            )
            return "dead letter"

        RETRIES.inc()
        delay = self.policy.delay(max(entry.failures.values()))
        entry.next_attempt_at = now + int(delay * 1e9)
        self.inbox.record(entry)
        logger.warning(
            "Event %s on topic %s will be retried in %.1fs for %s",
            entry.id,
            entry.topic,
            delay,
            ", ".join(sorted(delivery.failures)),
        )
        return "retrying"

    # Retrying and recovering

    def retry_due(self) -> int:
        """Deliver every entry whose retry is due, or that a crash left unfinished."""
        now = time.time_ns()
        grace = int(RECOVERY_GRACE_SECONDS * 1e9)
        attempted = 0
        for entry in list(self.inbox.entries()):
            due = entry.next_attempt_at
            if (due is None and now - entry.received_at > grace) or (
                due is not None and due <= now
            ):
                if self.deliver(entry.id, blocking=False) is not None:
                    attempted += 1
        return attempted

    def start(self, period: float = 1.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(period,), name="frobs-retries", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, period: float) -> None:
        self.inbox.remove_stale_temporary_files()
        last_cleanup = 0.0
        while not self._stop.wait(period * random.uniform(0.8, 1.2)):
            try:
                self.retry_due()
                if time.monotonic() - last_cleanup > 60:
                    last_cleanup = time.monotonic()
                    self.inbox.forget_done(self.policy.dedup_retention.total_seconds())
            except Exception:
                logger.exception("Retrying events failed; trying again shortly")

    # Dead letters

    def replay(self, ids: list[str] | None = None) -> list[dict]:
        """Deliver dead letters again (all of them when ``ids`` is None)."""
        wanted = ids if ids is not None else [e.id for e in self.inbox.dead_letters()]
        outcomes = []
        for entry_id in wanted:
            entry = self.inbox.revive(entry_id)
            if entry is None:
                outcomes.append({"id": entry_id, "outcome": "not found"})
                continue
            outcome = self.deliver(entry.id, blocking=True) or "delivered elsewhere"
            logger.info("Replayed dead letter %s: %s", entry_id, outcome)
            outcomes.append({"id": entry_id, "outcome": outcome})
        return outcomes


def _dedup_key(params: EventParams, given: str | None) -> str:
    if given:
        return f"{params.topic}\0{given}"
    body = json.dumps(params.event_payload, sort_keys=True).encode()
    return f"{params.topic}\0sha256:{hashlib.sha256(body).hexdigest()}"
