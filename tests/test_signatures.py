"""Signature and token validators, against published vectors and reference signers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from frobs.events.signatures import (
    HmacSignatureValidator,
    StandardWebhooksValidator,
    TokenValidator,
    github_signature_validator,
)
from frobs.events.validators import RequestDetails

GITHUB = Path(__file__).parent / "fixtures" / "github"
VECTORS = json.loads((GITHUB / "signatures.json").read_text())["vectors"]


def details(body: bytes, **headers: str) -> RequestDetails:
    return RequestDetails(
        "t", body, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def vector_body(vector: dict) -> bytes:
    if vector.get("body_file") is None:
        return vector["body_text"].encode()
    body = (GITHUB / vector["body_file"]).read_bytes()
    if vector["id"] == "neg-body-reserialized":
        body = json.dumps(json.loads(body), separators=(",", ":")).encode()
    return body


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_github_signature_vectors(vector):
    secret = "wrong-secret" if vector["id"] == "neg-wrong-secret" else vector["secret"]
    verdict = github_signature_validator(secret).validate(
        details(vector_body(vector), x_hub_signature_256=vector["x_hub_signature_256"])
    )
    assert (verdict is None) is vector["valid"]
    if not vector["valid"]:
        assert verdict.status == 403
        assert verdict.payload["message"].startswith("invalid signature: ")


def sign(secret: str, body: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()


BODY = b'{"type": "add", "id": "cart"}'
GOOD = sign("s3cret", BODY).hex()

HMAC_CASES = {
    "hex with prefix": (dict(prefix="sha256="), f"sha256={GOOD}", True),
    "missing prefix": (dict(prefix="sha256="), GOOD, False),
    "wrong prefix": (dict(prefix="sha256="), f"sha1={GOOD}", False),
    "upper-case hex": (dict(prefix="sha256="), f"sha256={GOOD.upper()}", True),
    "truncated": (dict(prefix="sha256="), f"sha256={GOOD[:-2]}", False),
    "not hex": (dict(prefix="sha256="), "sha256=" + "zz" * 32, False),
    "odd length": (dict(prefix="sha256="), f"sha256={GOOD}0", False),
    "empty": (dict(prefix="sha256="), "", False),
    "prefix only": (dict(prefix="sha256="), "sha256=", False),
    "another body's signature": (dict(), sign("s3cret", b"{}").hex(), False),
    "base64": (
        dict(encoding="base64"),
        base64.b64encode(sign("s3cret", BODY)).decode(),
        True,
    ),
    "base64 that is not": (dict(encoding="base64"), "!!!", False),
    "sha1": (dict(algorithm="sha1"), sign("s3cret", BODY, "sha1").hex(), True),
    "sha512": (dict(algorithm="sha512"), sign("s3cret", BODY, "sha512").hex(), True),
    "sha1 signature where sha256 is configured": (
        dict(),
        sign("s3cret", BODY, "sha1").hex(),
        False,
    ),
    "signed with the old secret during rotation": (
        dict(secrets=["new-secret", "s3cret"]),
        GOOD,
        True,
    ),
    "signed with neither secret": (dict(secrets=["new-secret", "other"]), GOOD, False),
}


@pytest.mark.parametrize(
    "options, header, valid", HMAC_CASES.values(), ids=HMAC_CASES.keys()
)
def test_hmac_signature(options, header, valid):
    secrets = options.pop("secrets", ["s3cret"])
    validator = HmacSignatureValidator("X-Signature", secrets, **options)
    verdict = validator.validate(details(BODY, x_signature=header))
    assert (verdict is None) is valid


def test_a_missing_signature_header_is_refused():
    validator = HmacSignatureValidator("x-signature", ["s3cret"])
    assert validator.validate(details(BODY)).status == 403


@pytest.mark.parametrize("bad", [{"algorithm": "md5"}, {"encoding": "base32"}])
def test_unknown_algorithms_and_encodings_are_configuration_errors(bad):
    with pytest.raises(ValueError):
        HmacSignatureValidator("x-signature", ["s"], **bad)


def test_a_validator_needs_a_secret():
    with pytest.raises(ValueError, match="secret"):
        HmacSignatureValidator("x-signature", ["", ""])


TOKENS = {
    "the token": ("tok-en", True),
    "another token": ("tok-EN", False),
    "empty": ("", False),
    "a prefix of it": ("tok", False),
}


@pytest.mark.parametrize("given, valid", TOKENS.values(), ids=TOKENS.keys())
def test_gitlab_token(given, valid):
    verdict = TokenValidator("X-Gitlab-Token", ["tok-en"]).validate(
        details(BODY, x_gitlab_token=given)
    )
    assert (verdict is None) is valid
    if not valid:
        assert verdict.payload["message"].startswith("invalid token: ")


SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key").decode()
NOW = 1_800_000_000


def standard_headers(body: bytes, timestamp: int = NOW, secret: str = SECRET) -> dict:
    """Headers as the Standard Webhooks reference library signs them."""
    signature = Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(timestamp, tz=timezone.utc), body.decode()
    )
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def standard(headers: dict, body: bytes = BODY, secrets=(SECRET,)):
    validator = StandardWebhooksValidator(list(secrets), clock=lambda: NOW)
    return validator.validate(RequestDetails("t", body, headers))


STANDARD = {
    "signed by the reference library": (standard_headers(BODY), True),
    "one of several signatures matches": (
        {
            **standard_headers(BODY),
            "webhook-signature": "v1,AAAA "
            + standard_headers(BODY)["webhook-signature"],
        },
        True,
    ),
    "four minutes old": (standard_headers(BODY, NOW - 240), True),
    "six minutes old": (standard_headers(BODY, NOW - 360), False),
    "six minutes in the future": (standard_headers(BODY, NOW + 360), False),
    "another body": (standard_headers(b"{}"), False),
    "signed with another secret": (
        standard_headers(BODY, secret="whsec_" + base64.b64encode(b"x").decode()),
        False,
    ),
    "no webhook-id": (
        {k: v for k, v in standard_headers(BODY).items() if k != "webhook-id"},
        False,
    ),
    "a timestamp that is not a number": (
        {**standard_headers(BODY), "webhook-timestamp": "soon"},
        False,
    ),
    "no signature": (
        {k: v for k, v in standard_headers(BODY).items() if k != "webhook-signature"},
        False,
    ),
    "a signature without version": (
        {**standard_headers(BODY), "webhook-signature": "garbage"},
        False,
    ),
    "a v2 signature only": (
        {
            **standard_headers(BODY),
            "webhook-signature": standard_headers(BODY)["webhook-signature"].replace(
                "v1,", "v2,"
            ),
        },
        False,
    ),
}


@pytest.mark.parametrize("headers, valid", STANDARD.values(), ids=STANDARD.keys())
def test_standard_webhooks(headers, valid):
    assert (standard(headers) is None) is valid


def test_standard_webhooks_rotation_accepts_the_old_secret():
    other = "whsec_" + base64.b64encode(b"the-new-key").decode()
    assert standard(standard_headers(BODY), secrets=(other, SECRET)) is None


def test_standard_webhooks_over_bytes_that_are_not_utf8():
    body = b"\xff\xfe{}"
    key = base64.b64decode(SECRET[len("whsec_") :])
    signature = base64.b64encode(
        hmac.new(key, b"msg_1.%d." % NOW + body, hashlib.sha256).digest()
    ).decode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": f"v1,{signature}",
    }
    assert standard(headers, body=body) is None


def test_the_real_clock_is_the_default():
    validator = StandardWebhooksValidator([SECRET])
    now = int(time.time())
    assert (
        validator.validate(RequestDetails("t", BODY, standard_headers(BODY, now)))
        is None
    )


@pytest.mark.parametrize(
    "validator",
    [
        github_signature_validator("s3cret"),
        HmacSignatureValidator(
            "x-sig", ["a", "b"], algorithm="sha512", encoding="base64"
        ),
        TokenValidator("x-gitlab-token", ["tok"]),
        StandardWebhooksValidator([SECRET]),
    ],
    ids=["github", "hmac base64 sha512", "token", "standard webhooks"],
)
def test_what_a_validator_signs_it_accepts(validator):
    headers = {k.lower(): v for k, v in validator.sign(BODY).items()}
    assert validator.validate(RequestDetails("t", BODY, headers)) is None
    assert validator.validate(
        RequestDetails("t", BODY + b" ", headers)
    ) is not None or (isinstance(validator, TokenValidator))


HMAC = HmacSignatureValidator("X-Signature", ["s3cret"], prefix="sha256=")
GITLAB = TokenValidator("X-Gitlab-Token", ["tok-en"])


def standard_validator() -> StandardWebhooksValidator:
    return StandardWebhooksValidator([SECRET], clock=lambda: NOW)


def without(headers: dict, name: str) -> dict:
    return {k: v for k, v in headers.items() if k != name}


# Each refusal and what its message must say; none may show a secret or a signature.
REFUSALS = {
    "hmac header missing": (HMAC, {}, "the x-signature header is missing"),
    "hmac header empty": (HMAC, {"x-signature": " "}, "x-signature header is missing"),
    "hmac without its prefix": (HMAC, {"x-signature": GOOD}, "start with 'sha256='"),
    "hmac prefix only": (HMAC, {"x-signature": "sha256="}, "holds no signature"),
    "hmac not hex": (
        HMAC,
        {"x-signature": "sha256=" + "zz" * 32},
        "x-signature header's signature is not hex",
    ),
    "hmac truncated": (
        HMAC,
        {"x-signature": f"sha256={GOOD[:32]}"},
        "has 16 bytes; an HMAC-SHA256 has 32",
    ),
    "hmac of another body": (
        HMAC,
        {"x-signature": "sha256=" + sign("s3cret", b"{}").hex()},
        (
            "the x-signature header is not the HMAC-SHA256 of this body with any "
            "configured secret"
        ),
    ),
    "token missing": (
        GITLAB,
        {},
        "invalid token: the x-gitlab-token header is missing",
    ),
    "token wrong": (
        GITLAB,
        {"x-gitlab-token": "guess"},
        "invalid token: the x-gitlab-token header matches no configured token",
    ),
    "standard webhook-id missing": (
        standard_validator(),
        without(standard_headers(BODY), "webhook-id"),
        "the webhook-id header is missing",
    ),
    "standard webhook-timestamp missing": (
        standard_validator(),
        without(standard_headers(BODY), "webhook-timestamp"),
        "the webhook-timestamp header is missing",
    ),
    "standard webhook-timestamp a word": (
        standard_validator(),
        {**standard_headers(BODY), "webhook-timestamp": "yesterday"},
        "webhook-timestamp 'yesterday' is not a Unix time in seconds",
    ),
    "standard webhook-timestamp a superscript digit": (
        standard_validator(),
        {**standard_headers(BODY), "webhook-timestamp": "\u00b2"},
        "is not a Unix time in seconds",
    ),
    "standard webhook-timestamp of 5000 digits": (
        standard_validator(),
        {**standard_headers(BODY), "webhook-timestamp": "9" * 5000},
        "'" + "9" * 36 + "... is not a Unix time in seconds",
    ),
    "standard webhook-timestamp in milliseconds": (
        standard_validator(),
        {**standard_headers(BODY), "webhook-timestamp": str(NOW * 1000)},
        "webhook-timestamp looks like milliseconds",
    ),
    "standard webhook-timestamp six minutes old": (
        standard_validator(),
        standard_headers(BODY, NOW - 360),
        "webhook-timestamp is more than 300 seconds away from this server's clock",
    ),
    "standard webhook-signature missing": (
        standard_validator(),
        without(standard_headers(BODY), "webhook-signature"),
        "the webhook-signature header is missing",
    ),
    "standard webhook-signature without a v1 entry": (
        standard_validator(),
        {**standard_headers(BODY), "webhook-signature": "v2,AAAA garbage"},
        "webhook-signature holds no v1 signature",
    ),
    "standard webhook-signature of another body": (
        standard_validator(),
        standard_headers(b"{}"),
        (
            "no v1 signature in webhook-signature matches webhook-id, "
            "webhook-timestamp and this body"
        ),
    ),
}


@pytest.mark.parametrize(
    "validator, headers, expected", REFUSALS.values(), ids=REFUSALS.keys()
)
def test_a_refusal_says_precisely_what_is_wrong(validator, headers, expected):
    verdict = validator.validate(RequestDetails("t", BODY, headers))

    assert verdict.status == 403
    message = verdict.payload["message"]
    assert expected in message
    assert message.startswith(
        "invalid token: " if validator is GITLAB else "invalid signature: "
    )
    signatures = [
        value.removeprefix("sha256=")
        for value in headers.get("x-signature", "").split()
        + headers.get("webhook-signature", "").replace(",", " ").split()
        if len(value) > 8
    ]
    for value in ("s3cret", "tok-en", "guess", SECRET, GOOD, *signatures):
        assert value not in message
