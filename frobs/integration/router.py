"""``FrobsEventRouter`` and the check every Frobs webhook passes at the door.

The router sends ``frobs`` events to ``frobs.<type>``.  ``check_frobs_payload``
refuses, with a 400 that says what to fix, a body that is not an object, a
missing or non-string ``type``, and an ``id`` that is not a DNS label, so a bad
id never reaches code that builds URLs.  An unknown ``type`` passes: it is routed
to a sub-topic nobody subscribes to and counted as unrouted, as in Backstage.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from ..events.router import PayloadFieldRouter
from ..events.service import EventsService

TOPIC = "frobs"
FROB_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def is_frob_id(value: Any) -> bool:
    return isinstance(value, str) and bool(FROB_ID.fullmatch(value))


class FrobsEventRouter(PayloadFieldRouter):
    fields = ("type",)

    def __init__(self, events: EventsService, topic: str = TOPIC) -> None:
        super().__init__(events, topic)


def check_frobs_payload(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise InputError(
            "A Frobs webhook body must be a JSON object like "
            '{"type": "add", "id": "my-frob"}'
        )
    if not isinstance(payload.get("type"), str) or not payload["type"]:
        raise InputError(
            '"type" must be a non-empty string: "add", "delete" or "modify"'
        )
    if not is_frob_id(payload.get("id")):
        raise InputError(
            f'"id" must be a frob id (a DNS label: lower-case letters, digits and '
            f"'-', at most 63 characters), got {_shown(payload.get('id'))}"
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
