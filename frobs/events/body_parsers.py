"""Body parsers: turn the raw bytes of a webhook into the event payload.

A parser is looked up by media type.  The only method to implement is
``parse(raw, media_type, options)``; it returns the payload or raises
``InputError`` (a body that cannot be read as its type says) or
``UnsupportedMediaTypeError`` (an encoding it cannot handle).  Parsers are pure
functions of their input, so any number of threads may share one.

JSON is the built-in: ``application/json`` and any ``application/<name>+json``
type, with the ``charset`` parameter honoured (UTF-8 by default), and GitHub's
form-encoded deliveries, whose ``payload`` field holds the JSON document.

A JSON document must be Unicode: a ``\\ud800``-``\\udfff`` escape that is not
half of a pair (a lone surrogate) is refused, because no store can write it.
Only a body that holds such an escape at all is searched for one, so the check
costs one scan of the text on every other body.
"""

from __future__ import annotations

import codecs
import json
import re
from abc import ABC, abstractmethod
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs

from ..errors import InputError, UnsupportedMediaTypeError


class BodyParser(ABC):
    @abstractmethod
    def parse(self, raw: bytes, media_type: str, options: Mapping[str, str]) -> Any:
        """The payload carried by ``raw``."""


_STRUCTURED_JSON = re.compile(r"application/[a-z0-9][a-z0-9.!#$&^_-]*\+json")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: Character sets a JSON body may come in: Unicode and the common byte charsets.
TEXT_CHARSETS = re.compile(
    r"utf-(8|16|32)(-[lb]e)?|ascii|latin-1|iso8859-\d+|cp\d+|mac-[a-z]+|koi8-[a-z]"
)


def text_codec(charset: str) -> str | None:
    """The codec name of a text charset, or None for anything else."""
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return name if TEXT_CHARSETS.fullmatch(name) else None


class JsonBodyParser(BodyParser):
    def parse(self, raw: bytes, media_type: str, options: Mapping[str, str]) -> Any:
        charset = options.get("charset", "utf-8")
        codec = text_codec(charset)
        if codec is None:
            raise UnsupportedMediaTypeError(
                f"Unsupported charset: {charset}; send the body as UTF-8"
            )

        if not raw.strip():
            raise InputError("The request body is empty; send a JSON document")
        try:
            text = raw.decode("utf-8-sig" if codec == "utf-8" else codec)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"The request body is not valid {charset}: {exc.reason} at byte "
                f"{exc.start}"
            ) from None

        try:
            payload = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
                f"column {exc.colno})"
            ) from None
        except ValueError as exc:
            raise InputError(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InputError("The request body is nested too deeply") from None

        if _SURROGATE_ESCAPE.search(text):
            refuse_lone_surrogates(payload)
        return payload


#: A ``\\u`` escape of a UTF-16 surrogate (D800-DFFF), paired or not.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def refuse_lone_surrogates(payload: Any) -> None:
    """Raise ``InputError`` naming the first string of ``payload`` (a parsed JSON
    document) that holds a lone surrogate, which no UTF-8 text can carry."""
    for path, text in _strings(payload):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            where = path if len(path) <= 200 else path[:200] + "..."
            raise InputError(
                f"The request body holds a lone surrogate (\\u{code:04x}) in {where}, "
                "which is not valid Unicode; send valid UTF-8 text, with every "
                "\\ud800-\\udbff escape followed by a \\udc00-\\udfff one"
            ) from None


def _strings(payload: Any) -> Iterator[tuple[str, str]]:
    """Every string of a JSON document, keys too, with where it is (``$.a[0]``,
    ``a key of $.a``).
    A stack, not recursion: the document may be as deep as the parser allows."""
    stack = [("$", payload)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            for key, value in node.items():
                yield f"a key of {path}", key
                stack.append((f"{path}.{key}", value))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", value) for i, value in enumerate(node))


class FormPayloadParser(BodyParser):
    """GitHub's form-encoded deliveries: the JSON document in a ``payload`` field."""

    def __init__(self, json_parser: JsonBodyParser) -> None:
        self.json_parser = json_parser

    def parse(self, raw: bytes, media_type: str, options: Mapping[str, str]) -> Any:
        try:
            fields = parse_qs(raw.decode("ascii"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise InputError(
                "A form-encoded body must be ASCII (percent-encoded)"
            ) from None
        payload = fields.get("payload")
        if not payload or len(payload) != 1:
            raise UnsupportedMediaTypeError(
                "A form-encoded body must carry a JSON document in one 'payload' "
                "field; otherwise send application/json"
            )
        return self.json_parser.parse(payload[0].encode(), "application/json", {})


class BodyParsers:
    """The parsers known to the ingress, by media type."""

    def __init__(self) -> None:
        self.json = JsonBodyParser()
        self._by_type: dict[str, BodyParser] = {
            "application/x-www-form-urlencoded": FormPayloadParser(self.json)
        }

    def add(self, media_type: str, parser: BodyParser) -> None:
        self._by_type[media_type.lower()] = parser

    def find(self, media_type: str) -> BodyParser | None:
        if media_type in self._by_type:
            return self._by_type[media_type]
        if media_type == "application/json" or _STRUCTURED_JSON.fullmatch(media_type):
            return self.json
        return None
