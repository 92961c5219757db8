"""The command line: ``python -m frobs`` or ``frobs``.

It reads the same configuration as the service (``APP_CONFIG`` or the embedded
defaults) and works on the same store, so it can be run beside a live service on
the same machine.  Output is JSON on stdout; problems go to stderr with a non-zero
exit status.

Commands:

- ``frobs check-config``: the effective configuration, secrets masked, or every
  problem with its key and file.  It builds nothing and changes nothing, so it
  can be run with a new version before an upgrade: the store is only looked at
  (a PostgreSQL database is connected to and its pending migrations listed, not
  applied; a store folder is never created);
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
import socket
import sys
import threading
import uuid
from pathlib import Path

import click
import psycopg
import requests

from . import app as service
from .catalog.postgres_store import pending_migrations
from .catalog.search import parse_filters
from .config import Config, ConfigError, load_config, masked
from .errors import DatabaseUnavailable, ServiceError
from .events.webhook_security import topic_validators


def _runtime(existing_store: bool = False):
    """The service's runtime; with ``existing_store``, for commands that only
    read or replay, a file store folder that does not exist is an error rather
    than an empty store made at a mistyped path."""
    try:
        config = load_config()
        if existing_store and config.get("catalog.store.type", "file") == "file":
            path = service.store_path(config)
            if not path.is_dir():
                raise click.ClickException(
                    f"no catalog store at {path} (catalog.store.path): start the "
                    "service or run a sync first, or correct the path"
                )
        return service.build_runtime(config)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    except DatabaseUnavailable as error:
        raise click.ClickException(_one_line(str(error))) from None


def _one_line(text: str) -> str:
    """``text`` on one line: the database driver's messages span several."""
    return " ".join(text.split())


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
    letters = _runtime(existing_store=True).processor.inbox.dead_letters()
    _print({"items": [letter.as_public() for letter in letters]})


@dead_letters.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def replay_dead_letters(ids: tuple[str, ...], replay_all: bool) -> None:
    """Deliver dead letters again: the IDS given, or --all."""
    if bool(ids) == replay_all:
        raise click.UsageError("give dead letter ids, or --all (not both)")
    outcomes = _runtime(existing_store=True).processor.replay(
        None if replay_all else list(ids)
    )
    _print({"items": outcomes})
    if any(o["outcome"] not in ("delivered",) for o in outcomes):
        sys.exit(1)


@main.command("check-config")
def check_config() -> None:
    """Print the effective configuration with secrets masked, or every problem.

    Changes nothing: the store is looked at, never created or migrated.
    """
    try:
        config = load_config()
        service.check_config(config)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        sys.exit(1)

    store, summary = _store_status(config)
    click.echo(summary, err=True)
    _print(
        {
            "files": [str(f) for f in config.files],
            "config": masked(config.data),
            "store": store,
        }
    )


def _store_status(config: Config) -> tuple[dict, str]:
    """The store as it stands, and a line saying so; exits 1 if the database
    cannot be reached.  Only reads: a start of the service does the rest."""
    if config.get("catalog.store.type", "file") != "postgres":
        path = service.store_path(config)
        exists = path.is_dir()
        state = "exists" if exists else "does not exist yet; the service creates it"
        return (
            {"type": "file", "path": str(path), "exists": exists},
            f"catalog store: folder {path} {state}",
        )

    try:
        connection = psycopg.connect(
            service.database_url(config), autocommit=True, connect_timeout=10
        )
    except psycopg.Error as error:
        raise click.ClickException(
            f"catalog database: cannot reach it ({_one_line(str(error))}); start "
            "it, or correct catalog.store.url (or DATABASE_URL)"
        ) from None
    try:
        with connection:
            pending = pending_migrations(connection)
    except DatabaseUnavailable as error:
        raise click.ClickException(f"catalog database: {error}") from None
    except psycopg.Error as error:
        raise click.ClickException(
            "catalog database: reachable, but which migrations it has cannot be "
            f"read ({_one_line(str(error))}); grant the service's user access "
            "to its schema"
        ) from None

    names = [name.removesuffix(".sql") for name in pending]
    if names:
        state = (
            f"{len(names)} migration{'s' if len(names) != 1 else ''} pending "
            f"({', '.join(names)}); they are applied when the service starts"
        )
    else:
        state = "up to date, no migration pending"
    return (
        {"type": "postgres", "reachable": True, "pendingMigrations": names},
        f"catalog database: reachable, {state}",
    )


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
    runtime = _runtime(existing_store=True)
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
    try:
        response = requests.post(
            f"{url.rstrip('/')}/api/events/http/{topic}",
            data=body,
            headers=sent,
            timeout=30,
        )
    except requests.ConnectionError as error:
        raise click.ClickException(
            f"cannot reach {url}: {_unreachable(error)}; is the service running?"
        ) from None
    except requests.Timeout:
        raise click.ClickException(f"{url} did not answer within 30 seconds") from None
    except requests.RequestException as error:  # a URL it cannot even try
        raise click.ClickException(
            f"cannot send to {url}: {error}; give --url as http://host:port"
        ) from None
    click.echo(f"{response.status_code} {response.text.strip()}")
    if response.status_code >= 300:
        sys.exit(1)


def _unreachable(error: BaseException | None) -> str:
    """Why a connection failed, in a few words, from what requests wraps."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, socket.gaierror):
            return "no such host"
        if isinstance(error, TimeoutError):
            return "the connection timed out"
        # requests keeps urllib3's error in args, urllib3 the socket's in reason.
        wrapped = [getattr(error, "reason", None), *error.args, error.__cause__]
        wrapped = [w for w in wrapped if isinstance(w, BaseException)]
        error = wrapped[0] if wrapped else error.__context__
    return "the connection failed"
