"""``EventParams``: one event as it travels from ingress to subscribers.

An event is a topic, the parsed payload and the metadata (request headers, names
lower-cased).  Metadata never holds credentials: ``safe_metadata`` drops them
before an event is built, so nothing downstream can store, route or log them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

#: Headers that carry credentials or signatures and must never travel with an event.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-gitlab-token",
        "x-hub-signature",
        "x-hub-signature-256",
        "webhook-signature",
    }
)


@dataclass(frozen=True)
class EventParams:
    topic: str
    event_payload: Any
    metadata: Mapping[str, str] = field(default_factory=dict)

    def with_topic(self, topic: str) -> "EventParams":
        return replace(self, topic=topic)


def safe_metadata(
    headers: Mapping[str, str], also_drop: Iterable[str] = ()
) -> dict[str, str]:
    """Lower-case header names and drop every credential or signature header."""
    dropped = SECRET_HEADERS | {name.lower() for name in also_drop}
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in dropped or "signature" in lowered or "token" in lowered:
            continue
        kept[lowered] = value
    return kept


#: Headers senders use to name a delivery, most specific first.
DELIVERY_HEADERS = (
    "x-github-delivery",
    "webhook-id",
    "x-gitlab-event-uuid",
    "idempotency-key",
    "x-request-id",
)


def delivery_id(metadata: Mapping[str, str]) -> str | None:
    """The sender's name for this delivery, whole (two ids that differ only
    past any length are two deliveries), or None when it gives none."""
    for name in DELIVERY_HEADERS:
        if metadata.get(name):
            return str(metadata[name])
    return None


#: How much of a delivery id a log line or an entity's provenance shows.
SHOWN_DELIVERY_ID = 100


def shown_delivery_id(metadata: Mapping[str, str]) -> str | None:
    """The delivery id for a log line or a provenance, cut short; None if none."""
    given = delivery_id(metadata)
    if given is None or len(given) <= SHOWN_DELIVERY_ID:
        return given
    return given[:SHOWN_DELIVERY_ID] + "..."


def shown(value: object, limit: int = 60) -> str:
    """A value a sender gave, for a log line or a refusal: escaped by ``repr``
    (so no newline or control character gets through), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
