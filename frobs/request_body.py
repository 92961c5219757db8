"""``read_body``: a request's body, up to a limit, refused as soon as it passes it.

Every route that reads a body reads it here, so a body over the limit is a 413
(``PayloadTooLargeError``) whether it came with a ``Content-Length`` or chunked.
werkzeug's own limit is not enough: it cuts a chunked body short silently,
which a parser would then report as malformed, or accept when what was cut off
was only whitespace.  This module only reads; it never parses or keeps a body.
"""

from __future__ import annotations

from flask import request

from .errors import PayloadTooLargeError

#: The limit when nothing else is configured (``events.http.maxBodyBytes``).
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024

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
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(_PIECE, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError.over(limit)
        chunks.append(chunk)
