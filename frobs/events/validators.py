"""Request validators: decide whether a webhook may be accepted.

A validator sees the raw bytes exactly as received and the lower-cased headers,
before any parsed value is trusted.  The only method to implement is
``validate(details)``: return None to accept, or a ``Rejection`` with the status
and JSON payload to answer, ``{"message": ...}`` saying precisely what was wrong
(which header is missing or malformed, or that no secret matched), since the
sender's operator reads it and the ingress logs it.  Validators must compare
secrets in constant time, must be safe to call from many threads at once, and
must never log a secret or a signature, nor put one in a message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class RequestDetails:
    topic: str
    raw_body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Rejection:
    """A refusal: the status and the JSON payload answered, ``{"message": ...}``."""

    status: int = 403
    payload: Any = field(default_factory=dict)


class RequestValidator(ABC):
    #: Headers carrying this validator's secrets or signatures; never kept.
    secret_headers: tuple[str, ...] = ()

    @abstractmethod
    def validate(self, details: RequestDetails) -> Rejection | None:
        """None to accept the request, a ``Rejection`` to refuse it."""

    def sign(self, body: bytes) -> dict[str, str]:
        """Headers that make a request with ``body`` pass (used by ``frobs send``)."""
        return {}
