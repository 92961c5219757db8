"""The command line: ``python -m frobs`` or ``frobs``.

It reads the same configuration as the service (``APP_CONFIG`` or the embedded
defaults) and works on the same store, so it can be run beside a live service on
the same machine.  Output is JSON on stdout; problems go to stderr with a non-zero
exit status.

Commands:

- ``frobs dead-letters list``: the parked events, with every attempt's error;
- ``frobs dead-letters replay [ID ...] [--all]``: deliver them again.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from .app import build_runtime
from .config import ConfigError, load_config


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
