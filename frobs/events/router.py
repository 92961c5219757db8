"""``EventRouter`` and ``SubTopicEventRouter``: move events to a more specific topic.

A router subscribes to a few topics and republishes each event, payload and
metadata unchanged, to the destination topic it decides.  The only method a router
has to implement is ``determine_destination_topic``; a sub-topic router only
implements ``determine_sub_topic`` and always publishes to ``<topic>.<sub-topic>``,
joined with a dot.  An event with no destination is not republished: it is logged
once at info level with the reason (an odd sub-topic shown escaped and cut short,
as ``'../../x'`` or ``'add\\x00'``) and counted in ``unrouted``; routing itself is
logged at debug level.

Routers hold no state but that counter and are safe to call from many threads.
"""

from __future__ import annotations

import logging
import re
import threading
from abc import ABC, abstractmethod
from typing import Iterable

from ..errors import InputError
from ..metrics import EVENTS_ROUTED, EVENTS_UNROUTED
from .params import EventParams, shown, shown_delivery_id
from .service import EventsService

logger = logging.getLogger(__name__)

#: What a sub-topic may look like; anything else in a payload is not routed.
SUB_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
SUB_TOPIC_RULE = (
    "letters, digits and '.', '_', ':', '-', starting with a letter or digit, "
    "at most 100 characters"
)


class EventRouter(ABC):
    def __init__(self, events: EventsService, topics: Iterable[str]) -> None:
        self.events = events
        self.topics = list(topics)
        self.unrouted = 0
        self._lock = threading.Lock()

    @property
    def subscriber_id(self) -> str:
        return type(self).__name__

    def subscribe(self) -> None:
        self.events.subscribe(
            self.subscriber_id, self.topics, self.on_event, router=True
        )

    @abstractmethod
    def determine_destination_topic(self, params: EventParams) -> str | None:
        """The topic to republish to, or None to drop the event."""

    def unrouted_reason(self, params: EventParams) -> str:
        """Why this event has no destination, for the log; values shown safely."""
        return "no destination topic for it"

    def on_event(self, params: EventParams) -> None:
        destination = self.determine_destination_topic(params)
        if not destination:
            EVENTS_UNROUTED.labels(topic=params.topic).inc()
            with self._lock:
                self.unrouted += 1
            logger.info(
                "%s did not route an event on topic %s, delivery %s: %s; event dropped",
                self.subscriber_id,
                params.topic,
                shown_delivery_id(params.metadata) or "-",
                self.unrouted_reason(params),
            )
            return

        logger.debug(
            "%s routes %s to %s", self.subscriber_id, params.topic, destination
        )
        EVENTS_ROUTED.labels(topic=params.topic).inc()
        self.events.publish(params.with_topic(destination))


class SubTopicEventRouter(EventRouter):
    def __init__(self, events: EventsService, topic: str) -> None:
        super().__init__(events, [topic])
        self.topic = topic

    @abstractmethod
    def determine_sub_topic(self, params: EventParams) -> str | None:
        """The sub-topic of this event, or None when it has none."""

    def determine_destination_topic(self, params: EventParams) -> str | None:
        sub_topic = self.determine_sub_topic(params)
        if not isinstance(sub_topic, str) or not SUB_TOPIC.fullmatch(sub_topic):
            return None
        return f"{self.topic}.{sub_topic}"

    def unrouted_reason(self, params: EventParams) -> str:
        sub_topic = self.determine_sub_topic(params)
        if sub_topic is None or sub_topic == "":
            return self.no_sub_topic_reason(params)
        return (
            f"its sub-topic {shown(sub_topic)} is not a topic name ({SUB_TOPIC_RULE})"
        )

    def no_sub_topic_reason(self, params: EventParams) -> str:
        """Why ``determine_sub_topic`` found nothing in this event."""
        return "it has no sub-topic"


class PayloadFieldRouter(SubTopicEventRouter):
    """Routes by a string field of a JSON object payload (``type``, ``object_kind``)."""

    fields: tuple[str, ...] = ()

    def determine_sub_topic(self, params: EventParams) -> str | None:
        payload = params.event_payload
        if not isinstance(payload, dict):
            return None
        for name in self.fields:
            if isinstance(payload.get(name), str) and payload[name]:
                return payload[name]
        return None

    def no_sub_topic_reason(self, params: EventParams) -> str:
        if not isinstance(params.event_payload, dict):
            return "its payload is not a JSON object"
        names = " or ".join(repr(name) for name in self.fields)
        return f"its payload has no non-empty string field {names}"


class HeaderRouter(SubTopicEventRouter):
    """Routes by a request header, such as ``x-github-event``."""

    header = ""

    def determine_sub_topic(self, params: EventParams) -> str | None:
        return params.metadata.get(self.header)

    def no_sub_topic_reason(self, params: EventParams) -> str:
        return f"its request had no {self.header} header"


def require_json_object(payload: object) -> None:
    """A payload check for topics routed by a payload field: an object is needed."""
    if not isinstance(payload, dict):
        raise InputError(
            f"The body must be a JSON object, not {type(payload).__name__}"
        )
