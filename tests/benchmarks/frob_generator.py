"""Deterministic generated frobs, and a loopback Frobs source serving them.

``make_frob(i, n, revision)`` is frob number ``i`` of a source of ``n`` frobs:
a Component named ``frob-<i>`` with a ``spec.type`` among a few values, a
lifecycle, an owner ``team-<i % (n/100)>`` (so exactly 100 frobs of the listing
share each owner when ``n`` is a multiple of 100), tags, a description, a
system, one or two ``dependsOn`` and a ``revision`` label.  The same arguments
always give the same frob.

``FrobsSource`` serves, from a process of its own, over a threaded
``http.server`` on 127.0.0.1 that keeps connections alive as a production
server would (werkzeug's development server closes each connection after one
answer, which made every read of the service open a new connection):

- ``/bench/data``: the listing, frobs ``0 .. n-1`` at their current revision;
- ``/bench/items/frob-<i>``: frob ``i`` at its current revision, for any ``i``
  (frobs past ``n`` are served by id but not listed, so an ``add`` webhook has
  something new to read; they are owned by ``team-events``);
- ``/bench/previous/frob-<i>``: frob ``i`` at its previous revision (404 when
  it has none).

``reset(n)`` starts over with ``n`` frobs, all at revision ``r0``;
``change_one_percent(tag)`` gives 1 % of the listed frobs a new revision;
``set_revision(indexes, tag)`` does so for any frobs.  Listings are encoded once
per change and cached, so serving 50,000 frobs costs one ``json.dumps``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ENV = "bench"
BASE_REVISION = "r0"
EVENTS_OWNER = "team-events"
TYPES = ("service", "website", "library", "tool")
LIFECYCLES = ("production", "experimental", "deprecated")
TAGS = ("python", "java", "go", "rust", "payments", "search", "internal", "public")


def frob_name(i: int) -> str:
    return f"frob-{i}"


def frob_index(frob_id: str) -> int | None:
    prefix, _, number = frob_id.partition("-")
    if prefix != "frob" or not number.isdigit() or number != str(int(number)):
        return None
    return int(number)


def teams(n: int) -> int:
    return max(1, n // 100)


def make_frob(i: int, n: int, revision: str = BASE_REVISION) -> dict:
    """Frob ``i`` of a source of ``n`` frobs, at ``revision``."""
    owner = f"team-{i % teams(n)}" if i < n else EVENTS_OWNER
    depends = [f"component:default/{frob_name((i * 7 + 1) % max(n, 1))}"]
    if i % 3 == 0:
        depends.append(f"component:default/{frob_name((i * 13 + 5) % max(n, 1))}")
    return {
        "id": frob_name(i),
        "kind": "Component",
        "title": f"Frob {i}",
        "description": (
            f"Frob number {i}, a {TYPES[i % len(TYPES)]} of {owner}; "
            f"generated for the benchmarks, revision {revision}."
        ),
        "tags": [TAGS[i % len(TAGS)], TAGS[(i // 8) % len(TAGS)], "benchmark"],
        "labels": {"revision": revision},
        "type": TYPES[i % len(TYPES)],
        "lifecycle": LIFECYCLES[i % len(LIFECYCLES)],
        "owner": owner,
        "system": f"system-{i % 50}",
        "dependsOn": sorted(set(depends)),
    }


def document(frobs: list[dict]) -> bytes:
    return json.dumps({"frobs": frobs}, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with a ``Content-Length`` on every answer, so each connection
    serves request after request."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    source: FrobsData  # set on the subclass made by ``FrobsData.start``

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.source.requests += 1
        body = self.source._answer(self.path.partition("?")[0])
        status = 200
        if body is None:
            body, status = b'{"message":"no such frob"}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass  # one line per request would drown the suite's own output


class FrobsData:
    """The generated frobs, their revisions, and the server answering for them,
    in the process that serves them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0
        self._revisions: dict[int, list[str]] = {}  # index -> revisions, oldest first
        self._listing: bytes | None = None
        self.requests = 0
        self._server = None
        self._thread: threading.Thread | None = None

    # The data

    def reset(self, n: int) -> None:
        with self._lock:
            self.n = n
            self._revisions = {}
            self._listing = None

    def set_revision(self, indexes, revision: str) -> None:
        with self._lock:
            for i in indexes:
                history = self._revisions.setdefault(i, [BASE_REVISION])
                history.append(revision)
            self._listing = None

    def change_one_percent(self, revision: str, offset: int = 0) -> list[int]:
        """Give a new revision to the frobs ``i`` with ``i % 100 == offset``."""
        changed = list(range(offset % 100, self.n, 100))
        self.set_revision(changed, revision)
        return changed

    def current(self, i: int) -> str:
        return self._revisions.get(i, [BASE_REVISION])[-1]

    def listing(self) -> bytes:
        with self._lock:
            if self._listing is None:
                n = self.n
                self._listing = document(
                    [make_frob(i, n, self.current(i)) for i in range(n)]
                )
            return self._listing

    def item(self, i: int) -> bytes:
        with self._lock:
            return document([make_frob(i, self.n, self.current(i))])

    def previous(self, i: int) -> bytes | None:
        with self._lock:
            history = self._revisions.get(i)
            if not history or len(history) < 2:
                return None
            return document([make_frob(i, self.n, history[-2])])

    # Serving

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self._server.server_port}/{ENV}{path}"

    def _answer(self, path: str) -> bytes | None:
        parts = path.strip("/").split("/")
        if parts == [ENV, "data"]:
            return self.listing()
        if len(parts) != 3 or parts[0] != ENV:
            return None
        i = frob_index(parts[2])
        if i is None:
            return None
        if parts[1] == "items":
            return self.item(i)
        if parts[1] == "previous":
            return self.previous(i)
        return None

    def start(self) -> None:
        handler = type("FrobsSourceHandler", (_Handler,), {"source": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="frobs-source", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class FrobsSource:
    """The Frobs source in a process of its own, as a real one runs apart from
    the service and from whoever sends the webhooks: in the benchmark process
    it would share one interpreter lock with the sender threads, and each
    read would wait for the senders.  Its data is changed through a pipe, one
    call at a time, with ``FrobsData``'s methods."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control = None
        self._process = None
        self.port: int | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(theirs,), name="frobs-source", daemon=True
        )
        self._process.start()
        if not self._control.poll(60):
            raise RuntimeError("the Frobs source did not start in 60 s")
        self.port = self._control.recv()

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            self._call("stop")
        except (OSError, EOFError, RuntimeError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{ENV}{path}"

    def cpu_seconds(self) -> float:
        """User and system CPU time of the source's process so far."""
        if self._process is None or self._process.pid is None:
            return 0.0
        stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset(self, n: int) -> None:
        self._call("reset", n)

    def set_revision(self, indexes, revision: str) -> None:
        self._call("set_revision", list(indexes), revision)

    def change_one_percent(self, revision: str, offset: int = 0) -> list[int]:
        return self._call("change_one_percent", revision, offset)

    def _call(self, method: str, *args):
        if self._control is None:
            raise RuntimeError("the Frobs source is not started")
        with self._lock:
            self._control.send((method, args))
            if not self._control.poll(120):
                raise RuntimeError(f"the Frobs source did not answer {method}")
            done, value = self._control.recv()
        if not done:
            raise RuntimeError(f"the Frobs source failed {method}: {value}")
        return value


def _serve(control) -> None:
    """The source's process: serve the frobs, and do what the pipe asks."""
    data = FrobsData()
    data.start()
    control.send(data._server.server_port)
    try:
        while True:
            method, args = control.recv()
            if method == "stop":
                control.send((True, None))
                return
            try:
                control.send((True, getattr(data, method)(*args)))
            except Exception as exc:  # said to the caller, who raises it
                control.send((False, repr(exc)))
    except EOFError:
        return  # the benchmark process is gone
    finally:
        data.stop()
