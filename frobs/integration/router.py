"""``FrobsEventRouter`` and the check every Frobs webhook passes at the door.

The router sends ``frobs`` events to ``frobs.<type>``.  ``check_frobs_payload``
refuses, with a 400 that says what to fix, a body that is not an object, a
missing or non-string ``type``, and an ``id`` that is not a DNS label, so a bad
id never reaches code that builds URLs; the message says what the JSON had, in
JSON's words (``the id is missing``, ``got null``, ``got the number 5``).  An
unknown ``type`` passes: it is routed to a sub-topic nobody subscribes to, or not
routed at all when it is no topic name (``../../x``), and either way logged and
counted as unrouted, as in Backstage.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import jsoncodec
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
            f'{{"type": "add", "id": "my-frob"}}, got {_json_type(payload)}'
        )
    if not isinstance(payload.get("type"), str) or not payload["type"]:
        raise InputError(
            '"type" must be a non-empty string: "add", "delete" or "modify"; '
            + _what_was_sent(payload, "type")
        )
    if not is_frob_id(payload.get("id")):
        raise InputError(
            '"id" must be a frob id (a DNS label: lower-case letters, digits and '
            "'-', at most 63 characters); " + _what_was_sent(payload, "id")
        )


def _what_was_sent(payload: dict, key: str) -> str:
    """The field as the sender's JSON had it, in JSON's words, never Python's."""
    if key not in payload:
        return f"the {key} is missing"
    value = payload[key]
    if value == "":
        return "got an empty string"
    if isinstance(value, str):
        return f"got {_shown(value)}"
    if value is None or isinstance(value, bool):
        return f"got {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"got the number {_shown(value)}"
    return f"got {_json_type(value)}"


def _json_type(value: Any) -> str:
    """``null``, or the type with its article: ``an array``, ``a number``."""
    name = jsoncodec.type_name(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _shown(value: Any) -> str:
    """A scalar as JSON writes it, escaped and cut short."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
