"""``EventsService``: publish an event to the subscribers of its topic.

Delivery is synchronous and in-process: ``publish`` returns once every subscriber
of the topic has run, in the order they subscribed.  A subscriber that raises does
not stop the others; its failure is logged with the traceback and returned in the
``PublishResult``, and listeners registered with ``on_failure`` hear of it, so a
failure is never swallowed.

Within a ``Delivery`` (see ``delivery``), each subscriber's success or failure is
recorded there, and subscribers it names as done are skipped.

Thread-safe: subscribing and publishing may happen from any thread of a worker;
the subscriber list is copied under a lock, and subscribers run outside it, so a
subscriber may publish again (routers do).  Each gunicorn worker has its own
service: events do not cross processes here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..metrics import EVENTS_UNROUTED, SUBSCRIBER_FAILURES
from ..provenance import caused_by
from .delivery import current_delivery
from .params import EventParams, shown_delivery_id

logger = logging.getLogger(__name__)

OnEvent = Callable[[EventParams], None]
OnFailure = Callable[[str, EventParams, BaseException], None]


@dataclass(frozen=True)
class Subscription:
    id: str
    topics: frozenset[str]
    on_event: OnEvent
    router: bool = False


@dataclass
class PublishResult:
    """Who received an event, and who failed with what."""

    notified: list[str] = field(default_factory=list)
    failures: list[tuple[str, BaseException]] = field(default_factory=list)


class EventsService:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._failure_listeners: list[OnFailure] = []
        self.unrouted = 0

    def subscribe(
        self, id: str, topics: Iterable[str], on_event: OnEvent, router: bool = False
    ) -> None:
        """Call ``on_event`` for each event published to one of ``topics``.

        A ``router`` only republishes: a retry always runs it again.
        """
        subscription = Subscription(id, frozenset(topics), on_event, router)
        with self._lock:
            self._subscriptions.append(subscription)
        logger.debug("Subscriber %s listens to %s", id, sorted(subscription.topics))

    def on_failure(self, listener: OnFailure) -> None:
        """Call ``listener(subscriber_id, event, error)`` at each failure."""
        with self._lock:
            self._failure_listeners.append(listener)

    def publish(self, params: EventParams) -> PublishResult:
        with self._lock:
            targets = [s for s in self._subscriptions if params.topic in s.topics]
            listeners = list(self._failure_listeners)

        result = PublishResult()
        if not targets:
            EVENTS_UNROUTED.labels(topic=params.topic).inc()
            with self._lock:
                self.unrouted += 1
            logger.info("No subscriber for topic %s; event dropped", params.topic)
            return result

        delivery = current_delivery()
        for subscription in targets:
            tracked = delivery is not None and not subscription.router
            if tracked and subscription.id in delivery.skip:
                continue
            result.notified.append(subscription.id)
            try:
                with caused_by(
                    topic=params.topic,
                    deliveryId=shown_delivery_id(params.metadata),
                ):
                    subscription.on_event(params)
                if tracked:
                    delivery.succeeded.add(subscription.id)
            except Exception as error:
                SUBSCRIBER_FAILURES.labels(subscriber=subscription.id).inc()
                logger.warning(
                    "Subscriber %s failed to process event for topic %s: %s: %s",
                    subscription.id,
                    params.topic,
                    type(error).__name__,
                    error,
                )
                logger.debug("Traceback of that failure", exc_info=True)
                if tracked:
                    delivery.failures[subscription.id] = (
                        f"{type(error).__name__}: {error}"
                    )
                result.failures.append((subscription.id, error))
                for listener in listeners:
                    listener(subscription.id, params, error)
        return result
