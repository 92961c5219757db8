"""Backstage's error envelope for every error the application answers with.

``register_error_handlers`` makes a ``ServiceError``, any HTTP error werkzeug
raises (an unknown route, a wrong method, a body too large) and any unexpected
exception answer with ``{error, request, response}``.  An unexpected exception is
logged with its traceback and answered 500 without details.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .errors import PayloadTooLargeError, ServiceError, error_envelope

logger = logging.getLogger(__name__)

_HTTP_ERROR_NAMES = {
    400: "InputError",
    401: "AuthenticationError",
    403: "NotAllowedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
}


def register_error_handlers(app: Flask) -> None:
    def envelope(name: str, message: str, status: int):
        body = error_envelope(
            name, message, status, request.method, request.full_path.rstrip("?")
        )
        return jsonify(body), status

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError):
        return envelope(error.name, str(error), error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = str(PayloadTooLargeError.over(request.max_content_length))
        response, status = envelope(
            _HTTP_ERROR_NAMES.get(status, "Error"), message, status
        )
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def internal_error(error: Exception):
        logger.exception("Unexpected error on %s %s", request.method, request.path)
        return envelope("Error", "An internal error occurred", 500)
