"""``jsoncodec``: the chunked array writer gives the bytes ``encode`` gives; JSON
type names for messages."""

from __future__ import annotations

import pytest

from frobs import jsoncodec

ARRAYS = {
    "empty": [],
    "one null": [None],
    "mixed values": [None, 1, "é", {"a": [1, 2]}, [], True],
    "an integer beyond 64 bits": [2**70, {"n": -(2**80)}],
    "many small values": list(range(5000)),
}


@pytest.mark.parametrize("values", ARRAYS.values(), ids=ARRAYS.keys())
@pytest.mark.parametrize("chunk_bytes", [1, 16, jsoncodec.CHUNK_BYTES])
def test_encode_array_writes_what_encode_writes_in_chunks(values, chunk_bytes):
    chunks = list(
        jsoncodec.encode_array(
            iter(values), before=b'{"items":', after=b"}", chunk_bytes=chunk_bytes
        )
    )
    assert b"".join(chunks) == jsoncodec.encode({"items": values})
    assert all(chunks)


def test_encode_array_takes_values_only_as_chunks_are_consumed():
    taken = []

    def values():
        for n in range(10):
            taken.append(n)
            yield "x" * 100

    chunks = jsoncodec.encode_array(values(), chunk_bytes=250)
    next(chunks)
    assert len(taken) == 3


@pytest.mark.parametrize(
    "text, name",
    [
        ("null", "null"),
        ("true", "boolean"),
        ("0", "number"),
        ("1.5", "number"),
        ('""', "string"),
        ("[]", "array"),
        ("{}", "object"),
    ],
)
def test_type_name_says_what_json_calls_a_parsed_value(text, name):
    assert jsoncodec.type_name(jsoncodec.decode(text)) == name
