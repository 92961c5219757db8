"""JSON text in and out, fast: ``orjson`` where it can, the standard library
where it cannot.

``encode`` gives compact UTF-8 bytes (``encode_kept`` without spare room),
``canonical`` the same with every object's keys sorted (for content hashes),
``decode`` parses bytes or text, ``decode_large`` parses a large document
with the least memory, ``encode_array`` writes an array of any length in
chunks, each value encoded only when it is reached, and ``type_name`` names a
value's JSON type for messages.  ``orjson`` refuses
integers beyond 64 bits, which the standard library then encodes and parses,
so no JSON value is refused here that ``json`` accepts; both give the same
bytes for what both can encode, so a hash does not depend on which one made
it.  ``orjson`` writes NaN and the infinities as ``null``, as JSON has no
other way to say them.  Nothing here keeps state.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

import orjson


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def type_name(value: Any) -> str:
    """JSON's name for a parsed value's type, for messages: ``null``,
    ``boolean``, ``number``, ``string``, ``array`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, (list, tuple)) else "object"


#: About how many bytes ``encode_array`` gathers before it hands a chunk on.
CHUNK_BYTES = 64 * 1024


def encode_array(
    values: Iterable[Any],
    before: bytes = b"",
    after: bytes = b"",
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """The JSON array of ``values``, between ``before`` and ``after`` (such as
    ``b'{"items":'`` and ``b"}"``), in chunks of about ``chunk_bytes``.

    Values are taken from ``values`` one at a time as the chunks are consumed, so
    an answer of any length holds one chunk and one value in memory, never the
    whole document.  The bytes are those ``encode`` gives for the whole list.
    """
    chunk = bytearray(before)
    chunk += b"["
    separator = b""
    for value in values:
        chunk += separator
        chunk += encode(value)
        separator = b","
        if len(chunk) >= chunk_bytes:
            yield bytes(chunk)
            chunk.clear()
    chunk += b"]"
    chunk += after
    yield bytes(chunk)


def encode_kept(value: Any) -> bytes:
    """``encode`` for bytes kept in memory a long time, copied to their exact
    size: orjson's keep the spare room they were written into, which would
    double the memory of tens of thousands of entities."""
    return bytes(memoryview(encode(value)))


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


def decode_large(data: bytes | str) -> Any:
    """``decode`` for documents of megabytes.  orjson builds its own tree of the
    whole text before making Python objects, which takes about three times the
    memory of the result at its peak; the standard library makes the objects
    directly, and is as fast on large input.  Raises ``ValueError``."""
    return json.loads(data)
