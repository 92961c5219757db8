"""The webhook ingress: every status of the contract, and what reaches subscribers."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest

from frobs.app import create_app
from frobs.config import load_config
from frobs.events.signatures import StandardWebhooksValidator


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "events:\n  http:\n    topics: [frobs, github, gitlab, plain]\n"
        "    maxBodyBytes: 1024\n"
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
    )
    app = create_app(load_config({"APP_CONFIG": str(path)}, tmp_path), False)
    runtime = app.extensions["frobs"]
    app.received = []
    for topic in (
        "plain",
        "frobs.add",
        "frobs.other",
        "github.push",
        "gitlab.merge_request",
        "gitlab.project_create",
    ):
        runtime.events.subscribe(f"recorder-{topic}", [topic], app.received.append)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


JSON = {"Content-Type": "application/json"}

STATUSES = {
    "accepted": ("/api/events/http/plain", b'{"a": 1}', JSON, 202),
    "accepted with a charset": (
        "/api/events/http/plain",
        b'{"a": 1}',
        {"Content-Type": "application/json; charset=utf-8"},
        202,
    ),
    "accepted as a +json type": (
        "/api/events/http/plain",
        b'{"a": 1}',
        {"Content-Type": "application/cloudevents+json"},
        202,
    ),
    "a JSON array is a payload too": ("/api/events/http/plain", b"[1, 2]", JSON, 202),
    "unknown topic": ("/api/events/http/nope", b"{}", JSON, 404),
    "topic with a path": ("/api/events/http/plain/../frobs", b"{}", JSON, 404),
    "empty body": ("/api/events/http/plain", b"", JSON, 400),
    "whitespace body": ("/api/events/http/plain", b"  \n", JSON, 400),
    "truncated JSON": ("/api/events/http/plain", b'{"type": "ad', JSON, 400),
    "NaN is not JSON": ("/api/events/http/plain", b'{"a": NaN}', JSON, 400),
    "invalid UTF-8": ("/api/events/http/plain", b'{"a": "\xff"}', JSON, 400),
    "missing content type": ("/api/events/http/plain", b"{}", {}, 400),
    "text/plain": (
        "/api/events/http/plain",
        b"{}",
        {"Content-Type": "text/plain"},
        415,
    ),
    "form encoded": (
        "/api/events/http/plain",
        b"a=1",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    "a UTF-8 byte order mark is fine": (
        "/api/events/http/plain",
        b'\xef\xbb\xbf{"a": 1}',
        JSON,
        202,
    ),
    "a charset that is not text": (
        "/api/events/http/plain",
        b"7b7d",
        {"Content-Type": "application/json; charset=hex"},
        415,
    ),
    "an escape codec is not a charset": (
        "/api/events/http/plain",
        b"{}",
        {"Content-Type": "application/json; charset=unicode_escape"},
        415,
    ),
    "a compressed body": (
        "/api/events/http/plain",
        b"\x1f\x8b",
        {**JSON, "Content-Encoding": "gzip"},
        415,
    ),
    "a +json type without a name": (
        "/api/events/http/plain",
        b"{}",
        {"Content-Type": "application/+json"},
        415,
    ),
    "frobs id with a trailing newline": (
        "/api/events/http/frobs",
        b'{"type": "add", "id": "ledger\\n"}',
        JSON,
        400,
    ),
    "unknown charset": (
        "/api/events/http/plain",
        b"{}",
        {"Content-Type": "application/json; charset=klingon"},
        415,
    ),
    "over the limit": (
        "/api/events/http/plain",
        b'{"a": "' + b"x" * 2000 + b'"}',
        JSON,
        413,
    ),
    "frobs body not an object": ("/api/events/http/frobs", b"[]", JSON, 400),
    "frobs without a type": ("/api/events/http/frobs", b'{"id": "a"}', JSON, 400),
    "frobs id with a dot and slash": (
        "/api/events/http/frobs",
        b'{"type": "add", "id": "x.evil.example/"}',
        JSON,
        400,
    ),
    "frobs id going up": (
        "/api/events/http/frobs",
        b'{"type": "add", "id": "../etc"}',
        JSON,
        400,
    ),
    "frobs id upper case": (
        "/api/events/http/frobs",
        b'{"type": "add", "id": "Frob"}',
        JSON,
        400,
    ),
    "frobs id too long": (
        "/api/events/http/frobs",
        json.dumps({"type": "add", "id": "a" * 64}).encode(),
        JSON,
        400,
    ),
    "frobs id a number": (
        "/api/events/http/frobs",
        b'{"type": "add", "id": 5}',
        JSON,
        400,
    ),
    "frobs with an unknown type is accepted": (
        "/api/events/http/frobs",
        b'{"type": "explode", "id": "a"}',
        JSON,
        202,
    ),
}


@pytest.mark.parametrize(
    "path, body, headers, status", STATUSES.values(), ids=STATUSES.keys()
)
def test_ingress_status(client, path, body, headers, status):
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == status
    if status == 202:
        assert response.get_json() == {"status": "accepted"}
    else:
        envelope = response.get_json()
        assert envelope["response"] == {"statusCode": status}
        assert envelope["request"]["method"] == "POST"
        assert envelope["error"]["name"] and envelope["error"]["message"]


def test_a_wrong_method_gets_an_envelope(client):
    response = client.get("/api/events/http/plain")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.get_json()["response"]["statusCode"] == response.status_code


def test_messages_say_what_is_wrong(client):
    truncated = client.post("/api/events/http/plain", data=b'{"a": ', headers=JSON)
    assert "not valid JSON" in truncated.get_json()["error"]["message"]
    unknown = client.post("/api/events/http/nope", data=b"{}", headers=JSON)
    assert "events.http.topics" in unknown.get_json()["error"]["message"]
    bad_id = client.post(
        "/api/events/http/frobs",
        data=b'{"type": "add", "id": "x.evil.example/"}',
        headers=JSON,
    )
    assert "DNS label" in bad_id.get_json()["error"]["message"]


def test_nothing_is_published_for_a_refused_request(app, client):
    client.post("/api/events/http/plain", data=b'{"a": ', headers=JSON)
    client.post(
        "/api/events/http/frobs", data=b'{"type": "add", "id": "A"}', headers=JSON
    )
    assert app.received == []


def test_metadata_has_lower_cased_headers_and_no_credentials(app, client):
    client.post(
        "/api/events/http/plain",
        data=b"{}",
        headers={
            **JSON,
            "X-Custom-Thing": "kept",
            "Authorization": "Bearer secret",
            "Cookie": "session=secret",
            "X-Hub-Signature-256": "sha256=abc",
            "X-Gitlab-Token": "secret",
            "Webhook-Signature": "v1,abc",
        },
    )
    (event,) = app.received
    assert event.metadata["x-custom-thing"] == "kept"
    assert "secret" not in json.dumps(dict(event.metadata))
    assert not {
        "authorization",
        "cookie",
        "x-hub-signature-256",
        "x-gitlab-token",
        "webhook-signature",
    } & set(event.metadata)


ROUTES = {
    "frobs by payload type": ("frobs", {"type": "add", "id": "a"}, {}, "frobs.add"),
    "github by header": (
        "github",
        {"ref": "refs/heads/main"},
        {"X-GitHub-Event": "push"},
        "github.push",
    ),
    "gitlab by object_kind": (
        "gitlab",
        {"object_kind": "merge_request"},
        {},
        "gitlab.merge_request",
    ),
    "gitlab system hook by event_name": (
        "gitlab",
        {"event_name": "project_create"},
        {},
        "gitlab.project_create",
    ),
}


@pytest.mark.parametrize(
    "topic, payload, headers, destination", ROUTES.values(), ids=ROUTES.keys()
)
def test_routing(app, client, topic, payload, headers, destination):
    response = client.post(
        f"/api/events/http/{topic}",
        data=json.dumps(payload),
        headers={**JSON, **headers},
    )
    assert response.status_code == 202
    (event,) = app.received
    assert event.topic == destination
    assert event.event_payload == payload


UNROUTED = {
    "github without the event header": ("github", {"a": 1}, {}),
    "github with a header that is not a topic name": (
        "github",
        {"a": 1},
        {"X-GitHub-Event": "push/../x"},
    ),
    "gitlab without a kind": ("gitlab", {"a": 1}, {}),
    "gitlab with a non-string kind": ("gitlab", {"object_kind": 3}, {}),
}


@pytest.mark.parametrize(
    "topic, payload, headers", UNROUTED.values(), ids=UNROUTED.keys()
)
def test_event_without_a_sub_topic_is_not_republished(
    app, client, topic, payload, headers
):
    response = client.post(
        f"/api/events/http/{topic}",
        data=json.dumps(payload),
        headers={**JSON, **headers},
    )
    assert response.status_code == 202
    assert app.received == []
    routers = app.extensions["frobs"].routers
    assert sum(r.unrouted for r in routers) == 1


def test_a_failing_subscriber_does_not_stop_the_others(app):
    runtime = app.extensions["frobs"]
    failures = []
    runtime.events.on_failure(lambda sid, event, error: failures.append(sid))

    def explode(event):
        raise RuntimeError("boom")

    runtime.events.subscribe("exploding", ["plain"], explode)
    runtime.events.subscribe("after", ["plain"], app.received.append)

    response = app.test_client().post(
        "/api/events/http/plain", data=b"{}", headers=JSON
    )

    assert response.status_code == 202
    assert failures == ["exploding"]
    assert len(app.received) == 2


@pytest.mark.parametrize("length", [1024, 1025, 5000])
def test_a_chunked_body_over_the_limit_is_refused_not_cut_short(client, length):
    body = b'{"a": "' + b"x" * (length - 9) + b'"}'
    response = client.post(
        "/api/events/http/plain",
        input_stream=io.BytesIO(body),
        headers={**JSON, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == (202 if length <= 1024 else 413)


STANDARD_SECRET = "whsec_" + base64.b64encode(b"ingress-test-key").decode()


@pytest.fixture
def signed_app(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "events:\n  http:\n    topics: [signed]\n    signatures:\n      signed:\n"
        f"        type: standard-webhooks\n        secrets: ['{STANDARD_SECRET}']\n"
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
    )
    return create_app(load_config({"APP_CONFIG": str(path)}, tmp_path), False)


def standard_headers(**overrides: str) -> dict:
    signer = StandardWebhooksValidator([STANDARD_SECRET])
    return {**JSON, **signer.sign(b'{"a": 1}'), **overrides}


REFUSALS_LOGGED = {
    "a timestamp that is a word": (
        standard_headers(**{"webhook-timestamp": "yesterday"}),
        "webhook-timestamp 'yesterday' is not a Unix time in seconds",
    ),
    "no webhook-id": (
        {k: v for k, v in standard_headers().items() if k != "webhook-id"},
        "the webhook-id header is missing",
    ),
    "a signature of another body": (
        {**standard_headers(), "webhook-signature": "v1," + "A" * 44},
        "no v1 signature in webhook-signature matches",
    ),
}


@pytest.mark.parametrize(
    "headers, reason", REFUSALS_LOGGED.values(), ids=REFUSALS_LOGGED.keys()
)
def test_a_refusal_is_answered_and_logged_with_its_reason(
    signed_app, caplog, headers, reason
):
    caplog.set_level(logging.INFO, logger="frobs")

    response = signed_app.test_client().post(
        "/api/events/http/signed", data=b'{"a": 1}', headers=headers
    )

    assert response.status_code == 403
    assert reason in response.get_json()["message"]
    (line,) = [r for r in caplog.records if r.getMessage().startswith("Refused")]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "Refused event on topic signed: StandardWebhooksValidator answered 403: "
        + response.get_json()["message"]
    )
    assert headers["webhook-signature"][3:] not in caplog.text


# Each event that reaches no subscriber, and what its one info line must say.
UNROUTED_LOGGED = {
    "a frobs type nobody subscribes to": (
        "frobs",
        {"type": "frobnicate", "id": "a"},
        {},
        "No subscriber for topic frobs.frobnicate",
    ),
    "a frobs type going up": (
        "frobs",
        {"type": "../../x", "id": "a"},
        {},
        "its sub-topic '../../x' is not a topic name",
    ),
    "a frobs type with a NUL": (
        "frobs",
        {"type": "add\u0000", "id": "a"},
        {},
        "its sub-topic 'add\\x00' is not a topic name",
    ),
    "a frobs type with a newline": (
        "frobs",
        {"type": "add\nINFO forged line", "id": "a"},
        {},
        "its sub-topic 'add\\nINFO forged line' is not a topic name",
    ),
    "a frobs type of 500 characters": (
        "frobs",
        {"type": "x" * 500, "id": "a"},
        {},
        "its sub-topic '" + "x" * 56 + "... is not a topic name",
    ),
    "github without the event header": (
        "github",
        {"a": 1},
        {},
        "its request had no x-github-event header",
    ),
    "github with a header that is not a topic name": (
        "github",
        {"a": 1},
        {"X-GitHub-Event": "push/../x"},
        "its sub-topic 'push/../x' is not a topic name",
    ),
    "gitlab without a kind": (
        "gitlab",
        {"a": 1},
        {},
        "its payload has no non-empty string field 'object_kind' or 'event_name'",
    ),
}


@pytest.mark.parametrize(
    "topic, payload, headers, reason",
    UNROUTED_LOGGED.values(),
    ids=UNROUTED_LOGGED.keys(),
)
def test_an_unrouted_event_is_logged_once_with_the_reason(
    app, client, caplog, topic, payload, headers, reason
):
    caplog.set_level(logging.INFO, logger="frobs")

    response = client.post(
        f"/api/events/http/{topic}",
        data=json.dumps(payload),
        headers={**JSON, **headers},
    )

    assert response.status_code == 202
    assert app.received == []
    (line,) = [
        r
        for r in caplog.records
        if "did not route" in r.getMessage() or "No subscriber" in r.getMessage()
    ]
    assert line.levelno == logging.INFO
    assert reason in line.getMessage()
    assert "\n" not in line.getMessage() and "\x00" not in line.getMessage()
    assert len(line.getMessage()) < 300


FROBS_MESSAGES = {
    "no id": ({"type": "add"}, '"id" must be a frob id', "the id is missing"),
    "a null id": ({"type": "add", "id": None}, "DNS label", "got null"),
    "a number id": ({"type": "add", "id": 5}, "DNS label", "got the number 5"),
    "a boolean id": ({"type": "add", "id": True}, "DNS label", "got true"),
    "an object id": ({"type": "add", "id": {}}, "DNS label", "got an object"),
    "an upper-case id": ({"type": "add", "id": "Frob"}, "DNS label", 'got "Frob"'),
    "no type": ({"id": "a"}, '"type" must be', "the type is missing"),
    "a null type": ({"type": None, "id": "a"}, '"type" must be', "got null"),
    "an empty type": ({"type": "", "id": "a"}, '"type" must be', "an empty string"),
    "an array body": ([], "must be a JSON object", "got an array"),
}


@pytest.mark.parametrize(
    "payload, rule, got", FROBS_MESSAGES.values(), ids=FROBS_MESSAGES.keys()
)
def test_a_refused_frobs_webhook_says_what_its_json_had(client, payload, rule, got):
    response = client.post(
        "/api/events/http/frobs", data=json.dumps(payload), headers=JSON
    )

    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert rule in message and message.endswith(got)
    assert "None" not in message and "True" not in message
