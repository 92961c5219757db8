"""URL readers: fetch a provider's source documents over ``http(s):`` or ``file:``.

``UrlReaders.read(url)`` returns the bytes at a URL or raises:
``SourceNotFound`` (HTTP 404 or 410, or no such file), ``ReadRefused`` (a host not
in ``backend.reading.allow``, a redirect leaving it, a ``file:`` path outside its
folder) or ``ReadFailed`` (anything else: timeouts, other statuses, bodies over
the size cap).

HTTP reads use libcurl (``pycurl``), one handle per thread, each keeping its
connections alive; they verify certificates against the system's CA store (as
Python's ``ssl`` finds it), use no proxy, decode compressed answers, time out
when connecting takes 5 s or when less than a byte a second arrives over 30 s,
follow at most five redirects and only to allowed http(s) hosts, and stop
reading once a body (decoded) passes the cap.
``file:`` URLs are resolved against the folder of the config file that named them
and may not leave it, symlinks included.  Readers keep no per-request state and
may be shared by every thread of a worker.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

import pycurl

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_REDIRECTS = 5


class ReadFailed(Exception):
    """The source could not be read; the message says why."""


class SourceNotFound(ReadFailed):
    """The source answered that the document does not exist."""


class ReadRefused(ReadFailed):
    """Reading this URL is not allowed by the configuration."""


class UrlReader(ABC):
    @abstractmethod
    def read(self, url: str) -> bytes:
        """The bytes at ``url``."""


class HostAllowList:
    """Hosts that reading may reach, with Backstage's ``*.example.com`` wildcards.

    A ``*`` inside a label matches within that label only; a leading ``*.``
    matches any number of subdomains.  A pattern with a port must match the port.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = sorted({p.lower() for p in patterns if p})
        self._compiled = [_host_regex(p) for p in self.patterns]

    def allows(self, url: str) -> bool:
        _, host, port = _address(url)
        with_port = f"{host}:{port}" if port else host
        return any(
            regex.fullmatch(with_port if ":" in pattern else host)
            for pattern, regex in zip(self.patterns, self._compiled)
        )


@functools.lru_cache(maxsize=1024)  # a read asks several times of one URL
def _address(url: str) -> tuple[str, str, int | None]:
    """A URL's scheme and host, lower-cased, and its port (-1 for a port that
    is no port)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # such as an unclosed IPv6 bracket
        raise ReadRefused(f"{url} is no URL ({exc})") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


#: What a host name or IP address may hold (IPv6 as urlsplit gives it: unbracketed).
_HOST_NAME = re.compile(r"[a-z0-9._:-]+")


def _host_regex(pattern: str) -> re.Pattern:
    prefix = ""
    if pattern.startswith("*."):
        prefix, pattern = r"(?:[^.]+\.)+", pattern[2:]
    body = ".".join(
        "[^.]*".join(re.escape(piece) for piece in label.split("*"))
        for label in pattern.split(".")
    )
    return re.compile(f"^{prefix}{body}$")


def template_host(template: str) -> str | None:
    """The host pattern of a URL template: ``{id}`` and the like become ``*``."""
    try:
        parts = urlsplit(re.sub(r"\{[^}]*\}", "PLACEHOLDER", template))
    except ValueError:
        return None  # no URL: refused when the provider starts
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.replace("placeholder", "*")
    try:
        port = parts.port
    except ValueError:
        return None  # no port number: refused when the provider starts
    return f"{host}:{port}" if port else host


class HttpUrlReader(UrlReader):
    def __init__(
        self,
        allow: HostAllowList,
        max_bytes: int = DEFAULT_MAX_BYTES,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.allow = allow
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout
        # A curl handle serves one thread at a time: each thread has its own.
        self._local = threading.local()

    def read(self, url: str) -> bytes:
        first = url
        for _ in range(MAX_REDIRECTS + 1):
            self.check(url, first)
            status, location, body = self._get(url)
            if status in _REDIRECTS and location:
                url = location
                continue
            if status in (404, 410):
                raise SourceNotFound(f"{url} answered {status}")
            if status != 200:
                raise ReadFailed(f"{url} answered {status}")
            return body
        raise ReadFailed(
            f"{first}: more than {MAX_REDIRECTS} redirects (the last to {url})"
        )

    def check(self, url: str, first: str | None = None) -> None:
        """Refuse a URL that is not http(s), names no host, or leaves the hosts
        allowed; ``first`` is the URL configured, when ``url`` is a redirect."""
        via = "" if first is None or url == first else f" (a redirect of {first})"
        scheme, host, port = _address(url)
        if scheme not in ("http", "https"):
            raise ReadRefused(f"{url}{via}: only http and https URLs can be read")
        if port == -1:
            raise ReadRefused(f"{url}{via} has a port that is no port number")
        if not host:
            raise ReadRefused(f"{url}{via} names no host")
        if not _HOST_NAME.fullmatch(host):
            raise ReadRefused(f"{url}{via}: {host!r} is no host name")
        if not self.allow.allows(url):
            raise ReadRefused(
                f"{_host_of(url)}{via} is not an allowed host; add it to "
                "backend.reading.allow"
            )

    def _get(self, url: str) -> tuple[int, str | None, bytes]:
        """One GET: the status, the redirect target if any, and the body."""
        curl = self._handle()
        chunks: list[bytes] = []
        size = 0

        def keep(chunk: bytes) -> int | None:
            nonlocal size
            size += len(chunk)
            if size > self.max_bytes:
                return 0  # libcurl stops the transfer
            chunks.append(chunk)
            return None

        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.WRITEFUNCTION, keep)
        try:
            curl.perform()
        except pycurl.error as exc:
            self._local.curl = None  # a new handle for the next read
            code, message = exc.args
            if code == pycurl.E_FILESIZE_EXCEEDED or size > self.max_bytes:
                raise ReadFailed(
                    f"{url} is larger than {self.max_bytes} bytes"
                ) from None
            unreachable = code in _UNREACHABLE or (
                code == pycurl.E_OPERATION_TIMEDOUT
                and curl.getinfo(pycurl.CONNECT_TIME) == 0
            )
            if unreachable:
                raise ReadFailed(
                    f"could not reach {_host_of(url)}: {message}"
                ) from None
            raise ReadFailed(f"reading {url} failed: {message}") from None
        finally:
            curl.setopt(pycurl.WRITEFUNCTION, _discard)  # drop the closure
        status = curl.getinfo(pycurl.RESPONSE_CODE)
        return status, curl.getinfo(pycurl.REDIRECT_URL), b"".join(chunks)

    def _handle(self) -> pycurl.Curl:
        curl = getattr(self._local, "curl", None)
        if curl is None:
            curl = self._local.curl = pycurl.Curl()
            curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no alarm() for timeouts
            curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
            curl.setopt(pycurl.FOLLOWLOCATION, 0)  # followed here, host by host
            curl.setopt(pycurl.PROXY, "")  # not even one named by the environment
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, int(CONNECT_TIMEOUT * 1000))
            # Less than a byte a second over read_timeout seconds ends the read.
            curl.setopt(pycurl.LOW_SPEED_LIMIT, 1)
            curl.setopt(pycurl.LOW_SPEED_TIME, max(1, round(self.read_timeout)))
            curl.setopt(pycurl.MAXFILESIZE_LARGE, self.max_bytes)
            curl.setopt(pycurl.USERAGENT, "frobs-catalog")
            # Compressed answers are welcome and decoded; the cap counts
            # what they decode to.
            curl.setopt(pycurl.ACCEPT_ENCODING, "")
            paths = ssl.get_default_verify_paths()
            if paths.cafile:
                curl.setopt(pycurl.CAINFO, paths.cafile)
            if paths.capath:
                curl.setopt(pycurl.CAPATH, paths.capath)
        return curl


#: Failures before a request could be sent: the host was not reached, or not
#: trusted.  Any other failure is of a read that had started.
_UNREACHABLE = {
    pycurl.E_COULDNT_RESOLVE_HOST,
    pycurl.E_COULDNT_CONNECT,
    pycurl.E_SSL_CONNECT_ERROR,
    pycurl.E_PEER_FAILED_VERIFICATION,
    pycurl.E_SSL_CERTPROBLEM,
    pycurl.E_SSL_CACERT_BADFILE,
}


def _discard(chunk: bytes) -> None:
    return None


_REDIRECTS = (301, 302, 303, 307, 308)


class FileUrlReader(UrlReader):
    """Reads ``file:`` URLs under one folder, relative ones against it."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = Path(os.path.realpath(folder))
        self.max_bytes = max_bytes

    def read(self, url: str) -> bytes:
        path = self.path_of(url)
        try:
            with open(path, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except (FileNotFoundError, NotADirectoryError):
            raise SourceNotFound(f"{url}: no such file") from None
        except IsADirectoryError:
            raise ReadFailed(f"{url} is a folder, not a file") from None
        except OSError as exc:
            raise ReadFailed(f"{url}: {exc.strerror}") from None
        if len(data) > self.max_bytes:
            raise ReadFailed(f"{url} is larger than {self.max_bytes} bytes")
        return data

    def path_of(self, url: str) -> Path:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ReadRefused(f"{url} is not a local file: URL")
        target = unquote(parts.path)
        path = Path(os.path.realpath(self.folder / target))
        if path != self.folder and self.folder not in path.parents:
            raise ReadRefused(
                f"{url} points outside {self.folder}; file: URLs must stay in the "
                "folder of the config file that names them"
            )
        return path


class UrlReaders(UrlReader):
    """Dispatches by scheme to the HTTP reader and to one ``file:`` reader."""

    def __init__(self, http: HttpUrlReader, files: FileUrlReader | None) -> None:
        self.http = http
        self.files = files

    def read(self, url: str) -> bytes:
        return self._reader_of(url).read(url)

    def check(self, url: str) -> None:
        """Raise ``ReadRefused`` if reading ``url`` would be refused whatever its
        source holds (a configured URL is checked so before anything is read)."""
        reader = self._reader_of(url)
        if reader is self.http:
            self.http.check(url)
        else:
            self.files.path_of(url)  # type: ignore[union-attr]

    def _reader_of(self, url: str) -> UrlReader:
        scheme = _address(url)[0]
        if scheme in ("http", "https"):
            return self.http
        if scheme == "file" and self.files is not None:
            return self.files
        raise ReadRefused(f"{url}: only http, https and file URLs can be read")


def _host_of(url: str) -> str:
    return urlsplit(url).netloc or url
