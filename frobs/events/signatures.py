"""Signature and token validators for the senders people use.

- ``HmacSignatureValidator``: an HMAC of the raw body in one header, with a
  configurable algorithm (sha1, sha256, sha512), prefix (``sha256=``) and encoding
  (hex or base64), checked against several secrets at once so a secret can be
  rotated without refusing deliveries.  GitHub's ``x-hub-signature-256`` is this
  with ``sha256=`` and hex (``github_signature_validator``).
- ``TokenValidator``: a shared token in a header, GitLab's ``x-gitlab-token``.
- ``StandardWebhooksValidator``: the Standard Webhooks scheme (``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature``), with a timestamp tolerance.

Every comparison is constant-time (``hmac.compare_digest``) and every HMAC is
computed over the bytes exactly as received.  A refusal is a 403 whose message
starts with ``invalid signature`` (``invalid token`` for a token) and says
precisely what was wrong with the request (a header missing or malformed, or no
secret matching), never a secret, a signature or an expected value; validators
hold no mutable state and may be shared by all threads of a worker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from typing import Callable, Iterable

from .params import shown
from .validators import Rejection, RequestDetails, RequestValidator

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}

#: A Standard Webhooks timestamp: ASCII digits only (``str.isdigit`` also takes
#: "²", which ``int`` refuses), and few enough for ``int`` (4300 at most).
UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


def refused(reason: str, lead: str = "invalid signature") -> Rejection:
    """A 403 saying what was wrong; ``reason`` must hold no secret or signature."""
    return Rejection(403, {"message": f"{lead}: {reason}"})


def _secrets(secrets: Iterable[str]) -> list[bytes]:
    kept = [s.encode() for s in secrets if s]
    if not kept:
        raise ValueError("a validator needs at least one non-empty secret")
    return kept


class HmacSignatureValidator(RequestValidator):
    def __init__(
        self,
        header: str,
        secrets: Iterable[str],
        algorithm: str = "sha256",
        prefix: str = "",
        encoding: str = "hex",
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"unknown HMAC algorithm {algorithm!r}; use sha1, sha256 or sha512"
            )
        if encoding not in ("hex", "base64"):
            raise ValueError(
                f"unknown signature encoding {encoding!r}; use hex or base64"
            )
        self.header = header.lower()
        self.secrets = _secrets(secrets)
        self.digest = ALGORITHMS[algorithm]
        self.prefix = prefix
        self.encoding = encoding
        self.algorithm = algorithm
        self.secret_headers = (self.header,)

    def validate(self, details: RequestDetails) -> Rejection | None:
        signature = self._decoded(details.headers.get(self.header))
        if isinstance(signature, Rejection):
            return signature
        for secret in self.secrets:
            expected = hmac.new(secret, details.raw_body, self.digest).digest()
            if hmac.compare_digest(expected, signature):
                return None
        return refused(
            f"the {self.header} header is not the HMAC-{self.algorithm.upper()} of "
            "this body with any configured secret; sign the body bytes exactly as sent"
        )

    def sign(self, body: bytes) -> dict[str, str]:
        """The header a sender would add, with the first secret (for ``frobs send``)."""
        digest = hmac.new(self.secrets[0], body, self.digest).digest()
        text = digest.hex() if self.encoding == "hex" else base64.b64encode(digest)
        return {
            self.header: self.prefix
            + (text if isinstance(text, str) else text.decode())
        }

    def _decoded(self, value: str | None) -> bytes | Rejection:
        """The signature's bytes, or the refusal saying why there are none.

        Only the header's name and shape are described, never its value.
        """
        if not (value or "").strip():
            return refused(f"the {self.header} header is missing or empty")
        if not value.startswith(self.prefix):
            return refused(f"the {self.header} header must start with {self.prefix!r}")
        text = value[len(self.prefix) :].strip()
        if not text:
            return refused(f"the {self.header} header holds no signature")
        try:
            if self.encoding == "hex":
                signature = bytes.fromhex(text)
            else:
                signature = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            return refused(
                f"the {self.header} header's signature is not {self.encoding}"
            )
        size = self.digest().digest_size
        if len(signature) != size:
            return refused(
                f"the {self.header} header's signature has {len(signature)} bytes; "
                f"an HMAC-{self.algorithm.upper()} has {size}"
            )
        return signature


def github_signature_validator(secret: str) -> HmacSignatureValidator:
    """GitHub's ``x-hub-signature-256``: ``sha256=`` and the hex HMAC-SHA256."""
    return HmacSignatureValidator(
        "x-hub-signature-256", [secret], algorithm="sha256", prefix="sha256="
    )


class TokenValidator(RequestValidator):
    """A shared secret sent as is in a header, as GitLab does."""

    def __init__(self, header: str, tokens: Iterable[str]) -> None:
        self.header = header.lower()
        self.tokens = _secrets(tokens)
        self.secret_headers = (self.header,)

    def sign(self, body: bytes) -> dict[str, str]:
        return {self.header: self.tokens[0].decode()}

    def validate(self, details: RequestDetails) -> Rejection | None:
        given = details.headers.get(self.header, "").encode()
        if not given:
            return refused(
                f"the {self.header} header is missing or empty", "invalid token"
            )
        # Compare with every token, so the time taken says nothing about which.
        matched = [hmac.compare_digest(given, token) for token in self.tokens]
        if any(matched):
            return None
        return refused(
            f"the {self.header} header matches no configured token", "invalid token"
        )


def gitlab_token_validator(token: str) -> TokenValidator:
    return TokenValidator("x-gitlab-token", [token])


class StandardWebhooksValidator(RequestValidator):
    """Standard Webhooks: HMAC-SHA256 of ``id.timestamp.body``, base64, ``v1,`` each.

    Secrets are given as Standard Webhooks writes them (``whsec_`` and base64);
    a delivery older or newer than ``tolerance`` seconds is refused, so a captured
    request cannot be replayed later.
    """

    secret_headers = ("webhook-signature",)

    def __init__(
        self,
        secrets: Iterable[str],
        tolerance: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = [self._key(s) for s in _secrets(secrets)]
        self.tolerance = tolerance
        self.clock = clock

    def sign(self, body: bytes) -> dict[str, str]:
        message_id = f"msg_{secrets.token_hex(8)}"
        timestamp = str(int(self.clock()))
        signed = f"{message_id}.{timestamp}.".encode() + body
        digest = hmac.new(self.keys[0], signed, hashlib.sha256).digest()
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }

    @staticmethod
    def _key(secret: bytes) -> bytes:
        text = secret.decode()
        if text.startswith("whsec_"):
            text = text[len("whsec_") :]
        try:
            return base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(
                "a Standard Webhooks secret must be base64, optionally after whsec_"
            ) from None

    def validate(self, details: RequestDetails) -> Rejection | None:
        headers = details.headers
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            if not headers.get(name, "").strip():
                return refused(f"the {name} header is missing or empty")
        message_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        if not UNIX_SECONDS.fullmatch(timestamp):
            return refused(
                f"webhook-timestamp {shown(timestamp, 40)} is not a Unix time in "
                "seconds (1 to 15 digits, such as 1700000000)"
            )
        stale = self._stale(int(timestamp))
        if stale is not None:
            return stale

        signed = f"{message_id}.{timestamp}.".encode() + details.raw_body
        given = self._signatures(headers["webhook-signature"])
        if not given:
            return refused(
                "webhook-signature holds no v1 signature (space-separated entries "
                "such as v1,<base64 HMAC-SHA256>)"
            )
        for key in self.keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return None
        return refused(
            "no v1 signature in webhook-signature matches webhook-id, "
            "webhook-timestamp and this body with any configured secret"
        )

    def _stale(self, timestamp: int) -> Rejection | None:
        """A refusal when ``timestamp`` is outside the tolerance, else None."""
        now = self.clock()
        if abs(now - timestamp) <= self.tolerance:
            return None
        if timestamp > now * 100:
            return refused(
                "webhook-timestamp looks like milliseconds; send Unix time in seconds"
            )
        return refused(
            f"webhook-timestamp is more than {self.tolerance} seconds away from "
            "this server's clock; check the sender's clock (older requests are "
            "refused so a captured one cannot be replayed)"
        )

    @staticmethod
    def _signatures(header: str) -> list[bytes]:
        signatures = []
        for entry in header.split():
            version, _, value = entry.partition(",")
            if version != "v1":
                continue
            try:
                signatures.append(base64.b64decode(value, validate=True))
            except (ValueError, binascii.Error):
                continue
        return signatures
