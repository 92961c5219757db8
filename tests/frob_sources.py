"""Pieces of the Frobs service stand-ins the tests share.

Over HTTP (the end-to-end tests, whose stand-ins are pytest-httpserver
handlers): ``serve_frobs`` runs the server for a handler, ``set_or_drop`` and
``json_response`` are the handlers' small helpers, and ``component_frob`` and
``api_frob`` build frob documents (each module fixes its owner, and the API's
spec title, with ``functools.partial``).

Over files (the tests that build the app in-process on a ``file:`` source):
``frob``, a minimal frob; ``source_folder``, the folder the documents live in;
``file_source_app``, the app reading them as provider ``frobs-dev``; and
``names``, the names of what the catalog serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from frobs.app import create_app
from frobs.config import load_config

# Over HTTP


def serve_frobs(handler: Callable[[Request], Response]) -> Iterator[HTTPServer]:
    """Fixture body: a loopback HTTP server whose every path ``handler`` answers."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile(r"^/.*")).respond_with_handler(handler)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def set_or_drop(table: dict, key: Any, value: list[dict] | None) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def json_response(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def component_frob(
    frob_id: str, name: str | None = None, *, owner: str, **fields: Any
) -> dict:
    frob = {
        "id": frob_id,
        "kind": "Component",
        "type": "service",
        "lifecycle": "production",
        "owner": owner,
    }
    if name is not None:
        frob["name"] = name
    return {**frob, **fields}


def api_frob(
    frob_id: str, name: str, *, owner: str, spec_title: str, **fields: Any
) -> dict:
    definition = f"openapi: 3.0.3\ninfo: {{title: {spec_title}, version: 1.0.0}}\n"
    frob = {
        "id": frob_id,
        "name": name,
        "kind": "API",
        "type": "openapi",
        "lifecycle": "production",
        "owner": owner,
        "spec": {"definition": definition},
    }
    return {**frob, **fields}


# Over files


def frob(frob_id: str, **fields) -> dict:
    return {
        "id": frob_id,
        "type": "service",
        "lifecycle": "production",
        "owner": "team-a",
        **fields,
    }


def source_folder(tmp_path: Path) -> Path:
    """``<tmp_path>/config``, with its ``frobs`` folder for per-frob documents."""
    folder = tmp_path / "config"
    (folder / "frobs").mkdir(parents=True)
    return folder


def file_source_app(source: Path, more_config: str = ""):
    """The app (no background tasks) on a store beside ``source``, its provider
    ``frobs-dev`` reading ``data.json`` and ``frobs/<id>[.previous].json`` there.

    ``more_config`` is YAML appended to the config, right after the provider's
    settings (so it may add to them, indented by 8).
    """
    (source / "app.yaml").write_text(
        f"catalog:\n  store:\n    path: {source.parent / 'store'}\n"
        "  providers:\n    frobs:\n      dev:\n"
        "        dataUrl: file:data.json\n"
        "        itemUrl: file:frobs/{id}.json\n"
        "        previousStateUrl: file:frobs/{id}.previous.json\n" + more_config
    )
    config = load_config({"APP_CONFIG": str(source / "app.yaml")}, source)
    return create_app(config, start_background=False)


def names(app) -> set[str]:
    entities = app.test_client().get("/api/catalog/entities").get_json()
    return {e["metadata"]["name"] for e in entities}
