"""Nothing lost: the inbox, retries, dead letters, deduplication and ordering."""

from __future__ import annotations

import json
import logging
import time

import pytest
from frob_sources import file_source_app, frob, names, source_folder

from frobs.events.delivery import Delivery, delivering
from frobs.events.inbox import InboxEntry
from frobs.events.params import EventParams

TOKEN = "admin-token-for-tests"


@pytest.fixture
def source(tmp_path):
    folder = source_folder(tmp_path)
    (folder / "data.json").write_text(json.dumps({"frobs": []}))
    return folder


def make_app(source, token: str | None = TOKEN, max_attempts: int = 3):
    auth = f"backend:\n  auth:\n    adminToken: {token}\n" if token else ""
    return file_source_app(
        source,
        f"events:\n  retry:\n    maxAttempts: {max_attempts}\n"
        "    initialDelay: {milliseconds: 1}\n    maxDelay: {milliseconds: 2}\n" + auth,
    )


def write_frob(source, frob_id: str, frobs: list[dict]) -> None:
    (source / "frobs" / f"{frob_id}.json").write_text(json.dumps({"frobs": frobs}))


def break_frob(source, frob_id: str) -> None:
    """The source answers for the frob, but with a document it cannot parse."""
    (source / "frobs" / f"{frob_id}.json").write_text('{"frobs": [')


def send(app, event_type: str, frob_id: str, delivery: str | None = None):
    headers = {"X-Request-Id": delivery} if delivery else {}
    return app.test_client().post(
        "/api/events/http/frobs",
        json={"type": event_type, "id": frob_id},
        headers=headers,
    )


def retry_all(app, rounds: int = 10) -> None:
    processor = app.extensions["frobs"].processor
    for _ in range(rounds):
        time.sleep(0.01)
        processor.retry_due()


def inbox(app) -> list[InboxEntry]:
    return list(app.extensions["frobs"].processor.inbox.entries())


def test_an_event_whose_source_fails_is_answered_202_and_applied_on_retry(source):
    app = make_app(source)
    break_frob(source, "late")
    response = send(app, "add", "late", "d-1")

    assert response.status_code == 202
    assert names(app) == set()
    (entry,) = inbox(app)
    assert entry.failures == {"frobs-dev": 1}
    assert "is not JSON" in entry.attempts[0]["error"]

    write_frob(source, "late", [frob("late")])
    retry_all(app)

    assert names(app) == {"late"}
    assert inbox(app) == []


def test_a_retry_runs_only_the_subscribers_that_failed(source):
    app = make_app(source)
    runtime = app.extensions["frobs"]
    calls = []
    runtime.events.subscribe("counter", ["frobs.add"], lambda e: calls.append(e))

    break_frob(source, "late")
    send(app, "add", "late", "d-2")
    write_frob(source, "late", [frob("late")])
    retry_all(app)

    assert len(calls) == 1
    assert names(app) == {"late"}


def test_a_subscriber_failing_every_time_makes_one_dead_letter(source):
    app = make_app(source, max_attempts=3)
    break_frob(source, "broken")
    send(app, "add", "broken", "d-3")
    retry_all(app)

    client = app.test_client()
    (letter,) = client.get("/api/events/dead-letters").get_json()["items"]
    assert letter["topic"] == "frobs" and letter["deliveryId"] == "d-3"
    assert letter["payload"] == {"type": "add", "id": "broken"}
    assert letter["failedSubscribers"] == ["frobs-dev"]
    assert len(letter["attempts"]) == 3
    assert all("is not JSON" in a["error"] for a in letter["attempts"])
    assert inbox(app) == []


def test_replay_needs_the_admin_token_and_applies_the_fixed_event(source):
    app = make_app(source, max_attempts=1)
    break_frob(source, "broken")
    send(app, "add", "broken", "d-4")
    client = app.test_client()

    assert client.post("/api/events/dead-letters/replay").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (
        client.post("/api/events/dead-letters/replay", headers=wrong).status_code == 401
    )

    write_frob(source, "broken", [frob("broken")])
    (letter,) = client.get("/api/events/dead-letters").get_json()["items"]
    replayed = client.post(
        "/api/events/dead-letters/replay",
        json={"ids": [letter["id"]]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    assert replayed.status_code == 200
    assert replayed.get_json() == {
        "items": [{"id": letter["id"], "outcome": "delivered"}]
    }
    assert names(app) == {"broken"}
    assert client.get("/api/events/dead-letters").get_json() == {"items": []}


def test_replay_of_everything_and_of_unknown_ids(source):
    app = make_app(source, max_attempts=1)
    break_frob(source, "one")
    break_frob(source, "two")
    send(app, "add", "one", "d-5")
    send(app, "add", "two", "d-6")
    write_frob(source, "one", [frob("one")])
    write_frob(source, "two", [frob("two")])
    headers = {"Authorization": f"Bearer {TOKEN}"}
    client = app.test_client()

    unknown = client.post(
        "/api/events/dead-letters/replay", json={"ids": ["0-nope"]}, headers=headers
    )
    assert unknown.get_json() == {"items": [{"id": "0-nope", "outcome": "not found"}]}
    bad = client.post(
        "/api/events/dead-letters/replay", json={"ids": ["../x"]}, headers=headers
    )
    assert bad.status_code == 400

    everything = client.post("/api/events/dead-letters/replay", headers=headers)
    assert [i["outcome"] for i in everything.get_json()["items"]] == ["delivered"] * 2
    assert names(app) == {"one", "two"}


def test_without_an_admin_token_the_admin_endpoints_do_not_exist(source):
    app = make_app(source, token=None)
    client = app.test_client()
    assert client.post("/api/events/dead-letters/replay").status_code == 404
    assert client.post("/.backstage/scheduler/v1/tasks/x/trigger").status_code == 404
    assert client.get("/api/events/dead-letters").status_code == 200


def test_a_redelivery_of_a_done_event_is_skipped(source, caplog):
    caplog.set_level(logging.INFO)
    write_frob(source, "cart", [frob("cart")])
    app = make_app(source)
    assert send(app, "add", "cart", "same").get_json() == {"status": "accepted"}

    again = send(app, "add", "cart", "same")

    assert again.status_code == 202
    assert again.get_json() == {"status": "accepted", "duplicate": True}
    assert "already delivered" in caplog.text


def test_long_delivery_ids_that_share_a_prefix_are_two_deliveries(source, caplog):
    """Ids are compared whole; only log lines show them cut short."""
    caplog.set_level(logging.INFO)
    write_frob(source, "cart", [frob("cart")])
    app = make_app(source)
    prefix = "c" * 150
    assert send(app, "add", "cart", f"{prefix}-one").get_json() == {
        "status": "accepted"
    }

    second = send(app, "delete", "cart", f"{prefix}-two")

    assert second.get_json() == {"status": "accepted"}
    assert names(app) == set()
    assert f"delivery {'c' * 100}..." in caplog.text
    assert f"{prefix}-two" not in caplog.text


def test_a_redelivery_of_a_failed_event_is_processed(source):
    app = make_app(source, max_attempts=1)
    break_frob(source, "late")
    send(app, "add", "late", "retry-me")
    write_frob(source, "late", [frob("late")])

    again = send(app, "add", "late", "retry-me")

    assert again.get_json() == {"status": "accepted"}
    assert names(app) == {"late"}


def test_without_a_delivery_id_the_same_body_is_one_event_for_a_while(source):
    write_frob(source, "cart", [frob("cart")])
    app = make_app(source)
    assert "duplicate" not in send(app, "add", "cart").get_json()
    assert send(app, "add", "cart").get_json()["duplicate"] is True
    assert "duplicate" not in send(app, "modify", "cart").get_json()


def test_an_entry_left_by_a_crash_is_delivered_after_the_grace_period(
    source, monkeypatch
):
    write_frob(source, "cart", [frob("cart")])
    app = make_app(source)
    processor = app.extensions["frobs"].processor
    entry = InboxEntry.accepted(
        EventParams("frobs", {"type": "add", "id": "cart"}, {}), "k", None
    )
    processor.inbox.record(entry)

    processor.retry_due()
    assert names(app) == set(), "a fresh entry belongs to the request handling it"

    monkeypatch.setattr("frobs.events.processor.RECOVERY_GRACE_SECONDS", 0)
    processor.retry_due()
    assert names(app) == {"cart"}
    assert inbox(app) == []


def test_an_older_event_handled_after_a_newer_one_is_skipped(source):
    write_frob(source, "cart", [frob("cart", description="new")])
    app = make_app(source)
    runtime = app.extensions["frobs"]
    provider = runtime.providers[0]

    newer = time.time_ns()
    with delivering(Delivery(received_at=newer)):
        provider.on_event(EventParams("frobs.add", {"type": "add", "id": "cart"}, {}))
    write_frob(source, "cart", [frob("cart", description="old")])
    with delivering(Delivery(received_at=newer - 1_000_000)):
        provider.on_event(EventParams("frobs.add", {"type": "add", "id": "cart"}, {}))

    entity = (
        app.test_client()
        .get("/api/catalog/entities/by-name/component/default/cart")
        .get_json()
    )
    assert entity["metadata"]["description"] == "new"


def test_a_sync_read_before_an_event_does_not_undo_it(source, monkeypatch):
    (source / "data.json").write_text(
        json.dumps({"frobs": [frob("cart", description="listed"), frob("other")]})
    )
    app = make_app(source)
    runtime = app.extensions["frobs"]
    scheduler = runtime.scheduler
    task = scheduler.tasks["frobs-dev:refresh"]
    scheduler.run(task)

    # The sync reads its listing, then an event changes cart, then the sync applies.
    provider = runtime.providers[0]
    original_read = provider._read

    def read_then_event(url):
        data = original_read(url)
        if url.endswith("data.json"):
            write_frob(source, "cart", [frob("cart", description="from the event")])
            send(app, "modify", "cart", "during-sync")
        return data

    monkeypatch.setattr(provider, "_read", read_then_event)
    run = scheduler.run(task)

    assert run.outcome == "succeeded"
    entity = (
        app.test_client()
        .get("/api/catalog/entities/by-name/component/default/cart")
        .get_json()
    )
    assert entity["metadata"]["description"] == "from the event"
    assert names(app) == {"cart", "other"}


def test_the_task_list_has_backstage_shape_and_the_last_run(source):
    app = make_app(source)
    scheduler = app.extensions["frobs"].scheduler
    scheduler.run(scheduler.tasks["frobs-dev:refresh"])

    (task,) = (
        app.test_client().get("/.backstage/scheduler/v1/tasks").get_json()["tasks"]
    )
    assert task["taskId"] == "frobs-dev:refresh"
    assert task["scope"] == "global"
    assert task["settings"]["cadence"] == "PT1800S"
    assert task["taskState"] == {"status": "idle"}
    assert task["lastRun"]["outcome"] == "succeeded"
    assert task["lastRun"]["counts"] == {
        "added": 0,
        "updated": 0,
        "unchanged": 0,
        "removed": 0,
        "conflict": 0,
        "invalid": 0,
    }
    assert task["lastRun"]["startedAt"] <= task["lastRun"]["endedAt"]


def test_trigger_needs_the_token_and_asks_the_running_worker(source):
    app = make_app(source)
    scheduler = app.extensions["frobs"].scheduler
    client = app.test_client()
    url = "/.backstage/scheduler/v1/tasks/frobs-dev:refresh/trigger"

    assert client.post(url).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(url, headers=headers).status_code == 202
    assert scheduler.coordination.take_trigger("frobs-dev:refresh")
    missing = "/.backstage/scheduler/v1/tasks/nope/trigger"
    assert client.post(missing, headers=headers).status_code == 404


def test_trigger_while_running_is_a_conflict(source, monkeypatch):
    app = make_app(source)
    scheduler = app.extensions["frobs"].scheduler
    task = scheduler.tasks["frobs-dev:refresh"]
    task.running = True
    scheduler._save_state()
    response = app.test_client().post(
        "/.backstage/scheduler/v1/tasks/frobs-dev:refresh/trigger",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["name"] == "ConflictError"


@pytest.mark.parametrize("failures", [1, 2, 5, 10, 80])
def test_retry_delays_double_with_jitter_and_never_pass_the_cap(failures):
    from datetime import timedelta

    from frobs.events.processor import DeliveryPolicy

    policy = DeliveryPolicy(
        initial_delay=timedelta(seconds=1), max_delay=timedelta(seconds=4)
    )
    delays = [policy.delay(failures) for _ in range(200)]
    base = 2 ** (failures - 1)
    assert all(d <= 4 for d in delays)
    assert min(delays) >= min(base * 0.5, 4)
