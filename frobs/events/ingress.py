"""HTTP ingress: ``POST /api/events/http/<topic>`` turns a webhook into an event.

The steps, in order, each with its own answer:

1. the topic must be configured (404);
2. the body is read up to the size limit, never past it (413);
3. the body must not be compressed, and its content type must have a parser
   and a known charset (400 when missing, 415 otherwise);
4. the topic's validators see the raw bytes and headers (their status, 403 by
   default);
5. the body is parsed (400 when empty or malformed), and the topic's payload
   checks may refuse its shape (400);
6. the event, credentials stripped from its metadata, goes to ``accept``, which
   stores and delivers it (202, also for a redelivery already done).

Nothing is accepted unless every step passed.  The ingress never logs a payload
or a secret header.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from flask import Blueprint, current_app, jsonify, request
from werkzeug.http import parse_options_header

from ..errors import (
    InputError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from ..metrics import EVENTS_RECEIVED
from ..request_body import DEFAULT_MAX_BODY_BYTES, read_body
from .body_parsers import BodyParsers
from .params import EventParams, safe_metadata, shown_delivery_id
from .validators import RequestDetails, RequestValidator

logger = logging.getLogger(__name__)

PayloadCheck = Callable[[Any], None]

#: The answer to nearly every webhook, encoded once.
_ACCEPTED = b'{"status":"accepted"}\n'


class HttpIngress:
    def __init__(
        self,
        topics: Iterable[str],
        accept: Callable[[EventParams], bool],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """``accept`` takes each event (to store and deliver it) and says whether
        it was new rather than a redelivery."""
        self.accept = accept
        self.topics = list(dict.fromkeys(topics))
        self.max_body_bytes = max_body_bytes
        self.parsers = BodyParsers()
        self._validators: dict[str, list[RequestValidator]] = {}
        self._payload_checks: dict[str, list[PayloadCheck]] = {}
        self._secret_headers: set[str] = set()

    def add_validator(self, topic: str, validator: RequestValidator) -> None:
        """Check each request on ``topic``; its ``secret_headers`` are never kept."""
        self._validators.setdefault(topic, []).append(validator)
        self._secret_headers.update(validator.secret_headers)

    def add_payload_check(self, topic: str, check: "PayloadCheck") -> None:
        """``check(payload)`` raises ``InputError`` for a payload the topic refuses."""
        self._payload_checks.setdefault(topic, []).append(check)

    def blueprint(self) -> Blueprint:
        blueprint = Blueprint("events", __name__)
        blueprint.add_url_rule(
            "/http/<path:topic>", "ingress", self.receive, methods=["POST"]
        )
        blueprint.after_request(self._count)
        for topic in self.topics:
            logger.info("Registered /api/events/http/%s to receive events", topic)
        return blueprint

    def _count(self, response):
        """Count every answer, and log each refusal with its reason."""
        topic = (request.view_args or {}).get("topic")
        label = topic if topic in self.topics else "(not configured)"
        EVENTS_RECEIVED.labels(topic=label, status=str(response.status_code)).inc()
        if response.status_code >= 400 and response.status_code != 403:
            body = response.get_json(silent=True) or {}
            reason = (body.get("error") or {}).get("message", "")
            logger.info(
                "Refused event on topic %s with %d: %s",
                label,
                response.status_code,
                reason[:200],
            )
        return response

    def receive(self, topic: str):
        if topic not in self.topics:
            raise NotFoundError(
                f"No event topic named {topic!r}; configured topics are "
                f"{', '.join(self.topics) or 'none'} (events.http.topics)"
            )

        raw = read_body(self.max_body_bytes)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaTypeError(
                f"Unsupported Content-Encoding: {encoding}; send the body uncompressed"
            )
        media_type, options = self._media_type()
        parser = self.parsers.find(media_type)
        if parser is None:
            raise UnsupportedMediaTypeError(
                f"Unsupported media type: {media_type}; send the body as "
                "application/json"
            )

        headers = {name.lower(): value for name, value in request.headers.items()}
        for validator in self._validators.get(topic, []):
            rejection = validator.validate(RequestDetails(topic, raw, headers))
            if rejection is not None:
                payload = rejection.payload
                reason = payload.get("message") if isinstance(payload, dict) else None
                logger.warning(
                    "Refused event on topic %s: %s answered %s: %s",
                    topic,
                    type(validator).__name__,
                    rejection.status,
                    str(reason or "(no reason given)")[:200],
                )
                return jsonify(rejection.payload), rejection.status

        payload = parser.parse(raw, media_type, options)
        for check in self._payload_checks.get(topic, []):
            check(payload)
        params = EventParams(
            topic, payload, safe_metadata(headers, self._secret_headers)
        )
        if not self.accept(params):
            return jsonify({"status": "accepted", "duplicate": True}), 202
        logger.info(
            "Accepted event on topic %s, delivery %s (%d bytes)",
            topic,
            shown_delivery_id(headers) or "-",
            len(raw),
        )
        return current_app.response_class(
            _ACCEPTED, 202, mimetype=current_app.json.mimetype
        )

    def _media_type(self) -> tuple[str, dict[str, str]]:
        header = request.headers.get("Content-Type", "").strip()
        if not header:
            raise InputError(
                "The Content-Type header is missing; send application/json"
            )
        media_type, options = parse_options_header(header)
        media_type = media_type.lower()
        if "/" not in media_type:
            raise InputError(f"The Content-Type header {header!r} is not a media type")
        return media_type, {k.lower(): v for k, v in options.items()}
