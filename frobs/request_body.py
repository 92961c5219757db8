"""``read_body``: a request's body, up to a limit, refused as soon as it passes it.

Every route that reads a body reads it here, so a body over the limit is a 413
(``PayloadTooLargeError``) whether it came with a ``Content-Length`` or chunked.
werkzeug's own limit is not enough: it cuts a chunked body short silently,
which a parser would then report as malformed, or accept when what was cut off
was only whitespace.  Under gunicorn, a sender that stops sending a body it
began for ``BODY_IDLE_SECONDS`` gets a 408 and its connection is closed, so
stalled uploads cannot hold every worker thread.  This module only reads; it
never parses or keeps a body.
"""

from __future__ import annotations

import contextlib
import socket

from flask import request
from werkzeug.exceptions import ClientDisconnected

from .errors import PayloadTooLargeError, RequestTimeoutError

#: The limit when nothing else is configured (``events.http.maxBodyBytes``).
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024

#: Longest wait for the next bytes of a body (as nginx's ``client_body_timeout``).
BODY_IDLE_SECONDS = 10.0

_PIECE = 64 * 1024


def read_body(limit: int | None = None) -> bytes:
    """The current request's body, read in pieces, never past ``limit`` bytes
    (the app's ``MAX_CONTENT_LENGTH`` when None, or the default)."""
    if limit is None:
        limit = request.max_content_length or DEFAULT_MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError.over(limit)

    request.max_content_length = limit + 1  # so werkzeug leaves the refusal to us
    stream = request.stream
    connection = request.environ.get("gunicorn.socket")
    if connection is not None:
        # Per receive; gunicorn makes the socket non-blocking again (no timeout)
        # when it keeps the connection alive for the next request.
        connection.settimeout(BODY_IDLE_SECONDS)
    chunks, size = [], 0
    while True:
        try:
            chunk = stream.read(min(_PIECE, limit + 1 - size))
        except (TimeoutError, ClientDisconnected) as exc:
            # werkzeug reports a receive that timed out as a client gone.
            if not isinstance(exc, TimeoutError) and not isinstance(
                exc.__context__, TimeoutError
            ):
                raise
            if connection is not None:
                # Nothing more is read from it: gunicorn closes it after answering.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)
            raise RequestTimeoutError(
                f"The request body stopped arriving: nothing came for "
                f"{BODY_IDLE_SECONDS:.0f} s; send the whole body without pausing"
            ) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError.over(limit)
        chunks.append(chunk)
