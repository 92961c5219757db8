"""``/api/events/dead-letters``: see parked events, and deliver them again.

``GET /dead-letters`` lists every dead letter with its payload, its kept
metadata and every attempt's error.  ``POST /dead-letters/replay`` (admin token)
delivers again the ones named in ``{"ids": [...]}``, or all of them for an empty
body, and answers with the outcome of each.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..admin_auth import AdminAuth
from ..errors import InputError
from .processor import EventProcessor


class DeadLettersApi:
    def __init__(self, processor: EventProcessor, auth: AdminAuth) -> None:
        self.processor = processor
        self.auth = auth

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("dead_letters", __name__)
        blueprint.add_url_rule("/dead-letters", "list", self.list)
        blueprint.add_url_rule(
            "/dead-letters/replay", "replay", self.replay, methods=["POST"]
        )
        return blueprint

    def list(self):
        letters = self.processor.inbox.dead_letters()
        return jsonify({"items": [letter.as_public() for letter in letters]})

    def replay(self):
        self.auth.require()
        ids = None
        if request.get_data():
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not _id_list(body.get("ids")):
                raise InputError(
                    'Send {"ids": ["<dead letter id>", ...]}, or no body to replay all'
                )
            ids = body["ids"]
        return jsonify({"items": self.processor.replay(ids)})


#: Longer than any inbox entry id, and short enough for a file name.
MAX_ID_LENGTH = 64


def _id_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, str)
        and len(v) <= MAX_ID_LENGTH
        and v.replace("-", "").isalnum()
        and v.isascii()
        for v in value
    )
