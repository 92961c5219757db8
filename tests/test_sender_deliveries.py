"""Real GitHub and GitLab deliveries through the ingress: verified, then routed."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from frobs.app import create_app
from frobs.config import load_config

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB = json.loads((FIXTURES / "github" / "deliveries.json").read_text())["entries"]
GITLAB = json.loads((FIXTURES / "gitlab" / "deliveries.json").read_text())["entries"]
GITHUB_SECRET = "my-webhook-secret"
GITLAB_TOKEN = "gitlab-token-value"


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "events:\n  http:\n    topics: [gitlab]\n"
        f"  modules:\n    github:\n      webhookSecret: {GITHUB_SECRET}\n"
        f"    gitlab:\n      webhookSecret: {GITLAB_TOKEN}\n"
        f"catalog:\n  store:\n    path: {tmp_path / 'store'}\n"
    )
    app = create_app(load_config({"APP_CONFIG": str(path)}, tmp_path), False)
    app.received = []
    events = app.extensions["frobs"].events
    topics = {f"github.{e['x_github_event']}" for e in GITHUB}
    topics |= {f"gitlab.{e['object_kind'] or e['event_name']}" for e in GITLAB}
    for topic in topics:
        events.subscribe(f"recorder-{topic}", [topic], app.received.append)
    return app


def github_signature(body: bytes) -> str:
    return (
        "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize("entry", GITHUB, ids=[e["file"] for e in GITHUB])
def test_a_signed_github_delivery_routes_to_its_sub_topic(app, entry):
    body = (FIXTURES / "github" / entry["file"]).read_bytes()
    response = app.test_client().post(
        "/api/events/http/github",
        data=body,
        headers={
            **entry["headers"],
            "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "X-Hub-Signature-256": github_signature(body),
        },
    )
    assert response.status_code == 202, response.get_json()
    (event,) = app.received
    assert event.topic == entry["backstage_subtopic"]
    assert event.event_payload == json.loads(body)
    assert event.metadata["x-github-delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert "x-hub-signature-256" not in event.metadata


def test_a_form_encoded_github_delivery_is_read_as_json(app):
    payload = (FIXTURES / "github" / "push.json").read_text()
    body = urlencode({"payload": payload}).encode()
    response = app.test_client().post(
        "/api/events/http/github",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(body),
        },
    )
    assert response.status_code == 202
    (event,) = app.received
    assert event.topic == "github.push" and event.event_payload == json.loads(payload)


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=" + "0" * 40, "sha256=nothex", "garbage"],
)
def test_an_unsigned_or_badly_signed_github_delivery_is_refused(app, signature):
    body = (FIXTURES / "github" / "ping.json").read_bytes()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    response = app.test_client().post(
        "/api/events/http/github", data=body, headers=headers
    )
    assert response.status_code == 403
    (message,) = response.get_json().values()
    assert message.startswith("invalid signature: the x-hub-signature-256 header")
    assert app.received == []


@pytest.mark.parametrize("entry", GITLAB, ids=[e["file"] for e in GITLAB])
def test_a_gitlab_delivery_with_its_token_routes_to_its_sub_topic(app, entry):
    body = (FIXTURES / "gitlab" / entry["file"]).read_bytes()
    headers = {**entry["headers"], "X-Gitlab-Token": GITLAB_TOKEN}
    response = app.test_client().post(
        "/api/events/http/gitlab", data=body, headers=headers
    )
    assert response.status_code == 202
    (event,) = app.received
    # The contract routes on object_kind, then event_name.  Backstage routes on
    # event_name alone, so it leaves merge requests (no event_name) unrouted.
    expected = entry["backstage_subtopic"] or f"gitlab.{entry['object_kind']}"
    assert event.topic == expected
    assert "x-gitlab-token" not in event.metadata


@pytest.mark.parametrize("token", [None, "", "wrong", GITLAB_TOKEN + " "])
def test_a_gitlab_delivery_without_its_token_is_refused(app, token):
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    body = (FIXTURES / "gitlab" / "push.json").read_bytes()
    response = app.test_client().post(
        "/api/events/http/gitlab", data=body, headers=headers
    )
    assert response.status_code == 403
    (message,) = response.get_json().values()
    assert message.startswith("invalid token: the x-gitlab-token header")


def test_a_gitlab_body_that_is_not_an_object_is_refused(app):
    response = app.test_client().post(
        "/api/events/http/gitlab",
        data=b"[1]",
        headers={"Content-Type": "application/json", "X-Gitlab-Token": GITLAB_TOKEN},
    )
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]["message"]


def test_the_github_topic_exists_once_its_secret_is_set(app):
    assert "github" in app.extensions["frobs"].ingress.topics
