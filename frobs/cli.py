"""The command line: ``python -m frobs`` or ``frobs``.

It reads the same configuration as the service (``APP_CONFIG`` or the embedded
defaults) and works on the same store, so it can be run beside a live service on
the same machine.  Output is JSON on stdout; problems go to stderr with a non-zero
exit status.

Commands:

- ``frobs check-config``: the effective configuration, secrets masked, or every
  problem with its key and file;
- ``frobs sync PROVIDER``: one full sync now, with progress and a summary;
- ``frobs entities [--filter F] [REF]``: list entities (Backstage filters) or get one;
- ``frobs dead-letters list``: the parked events, with every attempt's error;
- ``frobs dead-letters replay [ID ...] [--all]``: deliver them again;
- ``frobs send TOPIC FILE``: post a webhook to the running service, signed as the
  topic's configuration requires.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import requests

from .app import build_runtime
from .catalog.search import parse_filters
from .config import ConfigError, load_config
from .errors import ServiceError
from .events.webhook_security import topic_validators

SECRET_KEYS = {"webhookSecret", "adminToken", "secrets"}


def _runtime():
    try:
        return build_runtime(load_config())
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _print(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group()
@click.option("--verbose", is_flag=True, help="Log what happens to stderr.")
def main(verbose: bool) -> None:
    """Operate the webhook-driven catalog from a terminal."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


@main.group("dead-letters")
def dead_letters() -> None:
    """Events a subscriber kept failing on."""


@dead_letters.command("list")
def list_dead_letters() -> None:
    """Print every dead letter."""
    letters = _runtime().processor.inbox.dead_letters()
    _print({"items": [letter.as_public() for letter in letters]})


@dead_letters.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def replay_dead_letters(ids: tuple[str, ...], replay_all: bool) -> None:
    """Deliver dead letters again: the IDS given, or --all."""
    if bool(ids) == replay_all:
        raise click.UsageError("give dead letter ids, or --all (not both)")
    outcomes = _runtime().processor.replay(None if replay_all else list(ids))
    _print({"items": outcomes})
    if any(o["outcome"] not in ("delivered",) for o in outcomes):
        sys.exit(1)


@main.command("check-config")
def check_config() -> None:
    """Print the effective configuration with secrets masked, or every problem."""
    try:
        config = load_config()
        build_runtime(config)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    _print({"files": [str(f) for f in config.files], "config": _masked(config.data)})


def _masked(node, key: str = ""):
    if key in SECRET_KEYS:
        return "****" if not isinstance(node, list) else ["****" for _ in node]
    if key == "url" and isinstance(node, str) and urlsplit(node).password:
        parts = urlsplit(node)
        netloc = f"{parts.username}:****@{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        return urlunsplit(parts._replace(netloc=netloc))
    if isinstance(node, dict):
        return {k: _masked(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_masked(v) for v in node]
    return node


@main.command()
@click.argument("provider")
def sync(provider: str) -> None:
    """Run PROVIDER's full sync now (PROVIDER is a name such as frobs-dev)."""
    runtime = _runtime()
    task = runtime.scheduler.tasks.get(f"{provider}:refresh")
    if task is None:
        names = ", ".join(t.removesuffix(":refresh") for t in runtime.scheduler.tasks)
        raise click.UsageError(f"no provider {provider!r}; configured: {names}")

    done = threading.Event()
    run = {}

    def work() -> None:
        run["result"] = runtime.scheduler.run(task)
        done.set()

    threading.Thread(target=work, daemon=True).start()
    timeout = int(task.schedule.timeout.total_seconds())
    with click.progressbar(
        length=timeout, label=f"Syncing {provider}", file=sys.stderr
    ) as bar:
        waited = 0
        while not done.wait(1) and waited < timeout:
            bar.update(1)
            waited += 1
        bar.update(timeout - waited)
    done.wait()
    result = run["result"]
    _print(
        result.as_json()
        if result
        else {"outcome": "not started", "error": "a run of this task is going on"}
    )
    if result is None or result.outcome != "succeeded":
        sys.exit(1)


@main.command()
@click.argument("ref", required=False)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="A Backstage filter, e.g. kind=component.",
)
def entities(ref: str | None, filters: tuple[str, ...]) -> None:
    """List entities (optionally filtered), or get the one named REF."""
    runtime = _runtime()
    snapshot = runtime.store.snapshot()
    if ref:
        record = snapshot.get(_full_ref(ref))
        if record is None:
            raise click.ClickException(f"no entity {ref}")
        _print(snapshot.entity(record))
        return
    from .catalog.query import CatalogQuery

    try:
        found = CatalogQuery(runtime.store).find(parse_filters(filters), snapshot)
    except ServiceError as error:
        raise click.UsageError(str(error)) from None
    _print([f.entity for f in found])


def _full_ref(ref: str) -> str:
    from .catalog.entity_ref import EntityRefError, parse_entity_ref

    try:
        return str(parse_entity_ref(ref))
    except EntityRefError as error:
        raise click.UsageError(str(error)) from None


@main.command()
@click.argument("topic")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--url",
    default=lambda: f"http://127.0.0.1:{os.environ.get('PORT', '7007')}",
    help="Where the service listens (default http://127.0.0.1:$PORT, or 7007).",
)
@click.option(
    "--header", "headers", multiple=True, help="An extra header, Name: value."
)
def send(topic: str, file: Path, url: str, headers: tuple[str, ...]) -> None:
    """Post FILE as a webhook on TOPIC, signed if the topic requires it."""
    try:
        validators = topic_validators(load_config()).get(topic, [])
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    body = file.read_bytes()
    # A fresh delivery id, so sending the same file twice is two deliveries.
    sent = {"Content-Type": "application/json", "X-Request-Id": uuid.uuid4().hex}
    for header in headers:
        name, _, value = header.partition(":")
        sent[name.strip()] = value.strip()
    for validator in validators:
        sent.update(validator.sign(body))
    response = requests.post(
        f"{url.rstrip('/')}/api/events/http/{topic}",
        data=body,
        headers=sent,
        timeout=30,
    )
    click.echo(f"{response.status_code} {response.text.strip()}")
    if response.status_code >= 300:
        sys.exit(1)
