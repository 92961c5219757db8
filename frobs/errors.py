"""The service's errors, each mapped to one HTTP status, and Backstage's envelope.

Every error a request can meet is a ``ServiceError`` subclass whose ``name`` is the
one Backstage uses (``InputError``, ``NotFoundError``, ...), so a client that reads
Backstage's error bodies reads ours.  ``error_envelope`` is the only place that
turns an error into a response body.

Messages say what the caller should change.  They must never carry secrets or
whole request bodies.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error that maps to an HTTP answer."""

    name = "Error"
    status = 500


class InputError(ServiceError):
    name = "InputError"
    status = 400


class AuthenticationError(ServiceError):
    name = "AuthenticationError"
    status = 401


class NotAllowedError(ServiceError):
    name = "NotAllowedError"
    status = 403


class NotFoundError(ServiceError):
    name = "NotFoundError"
    status = 404


class ConflictError(ServiceError):
    name = "ConflictError"
    status = 409


class RefusedError(ConflictError):
    """An operation refused whole, on purpose, by a guard: nothing was changed."""


class PayloadTooLargeError(ServiceError):
    name = "PayloadTooLargeError"
    status = 413

    @classmethod
    def over(cls, limit: int | None) -> "PayloadTooLargeError":
        """A body over ``limit`` bytes (``events.http.maxBodyBytes``), any route."""
        size = f"{limit} bytes" if limit is not None else "the limit"
        return cls(
            f"The request body is larger than {size} (events.http.maxBodyBytes); "
            "send a smaller body or raise the limit"
        )


class RequestTimeoutError(ServiceError):
    name = "RequestTimeoutError"
    status = 408


class UnsupportedMediaTypeError(ServiceError):
    name = "UnsupportedMediaTypeError"
    status = 415


class ServiceUnavailableError(ServiceError):
    name = "ServiceUnavailableError"
    status = 503


class DatabaseUnavailable(ServiceUnavailableError):
    """The database did not answer; nothing was changed by this request."""


def error_envelope(name: str, message: str, status: int, method: str, url: str) -> dict:
    """Backstage's error body: ``{error, request, response}``."""
    return {
        "error": {"name": name, "message": message},
        "request": {"method": method, "url": url},
        "response": {"statusCode": status},
    }
