"""JSON text in and out, fast: ``orjson`` where it can, the standard library
where it cannot.

``encode`` gives compact UTF-8 bytes, ``canonical`` the same with every object's
keys sorted (for content hashes), ``decode`` parses bytes or text.  ``orjson``
refuses integers beyond 64 bits, which the standard library then encodes and
parses, so no JSON value is refused here that ``json`` accepts; both give the
same bytes for what both can encode, so a hash does not depend on which one
made it.  ``orjson`` writes NaN and the infinities as ``null``, as JSON has no
other way to say them.  Nothing here keeps state.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()


def decode(data: bytes | str) -> Any:
    """Raises ``ValueError`` on anything that is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
