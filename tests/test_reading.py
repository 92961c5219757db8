"""URL reading: allowed hosts, redirects, size caps, timeouts, certificates,
proxies left alone, file: URLs kept in their folder."""

from __future__ import annotations

import gzip
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from werkzeug import Response

from frobs.reading import (
    FileUrlReader,
    HostAllowList,
    HttpUrlReader,
    ReadFailed,
    ReadRefused,
    SourceNotFound,
    template_host,
)

HOSTS = {
    "exact host": ("example.com", "https://example.com/x", True),
    "other host": ("example.com", "https://evil.com/x", False),
    "suffix trick": ("example.com", "https://evilexample.com/x", False),
    "wildcard subdomain": ("*.example.com", "https://a.b.example.com/x", True),
    "wildcard needs a subdomain": ("*.example.com", "https://example.com/x", False),
    "label wildcard": ("frobs-*.example.com", "https://frobs-abc.example.com/", True),
    "label wildcard stays in its label": (
        "frobs-*.example.com",
        "https://frobs-a.evil.example.com/",
        False,
    ),
    "host with port": ("127.0.0.1:8080", "http://127.0.0.1:8080/a", True),
    "host with another port": ("127.0.0.1:8080", "http://127.0.0.1:9090/a", False),
    "host without port allows any port": ("localhost", "http://localhost:9/a", True),
    "userinfo does not fool it": (
        "example.com",
        "https://example.com@evil.com/",
        False,
    ),
    "case-insensitive": ("Example.COM", "https://EXAMPLE.com/", True),
}


@pytest.mark.parametrize("pattern, url, allowed", HOSTS.values(), ids=HOSTS.keys())
def test_host_allow_list(pattern, url, allowed):
    assert HostAllowList([pattern]).allows(url) is allowed


TEMPLATES = {
    "https://frobs-{id}.example.com/data": "frobs-*.example.com",
    "https://frobs-{env}.example.com/data": "frobs-*.example.com",
    "http://127.0.0.1:8080/frobs/{id}": "127.0.0.1:8080",
    "file:sample/{id}.json": None,
}


@pytest.mark.parametrize("template, host", TEMPLATES.items())
def test_template_host(template, host):
    assert template_host(template) == host


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "config"
    (root / "frobs").mkdir(parents=True)
    (root / "frobs" / "a.json").write_text('{"frobs": []}')
    (tmp_path / "secret.json").write_text("secret")
    os.symlink(tmp_path / "secret.json", root / "link.json")
    return root


FILE_URLS = {
    "relative inside": ("file:frobs/a.json", None),
    "missing file": ("file:frobs/b.json", SourceNotFound),
    "dot-dot escape": ("file:../secret.json", ReadRefused),
    "encoded dot-dot escape": ("file:%2e%2e/secret.json", ReadRefused),
    "absolute path outside": ("file:///etc/passwd", ReadRefused),
    "symlink leaving the folder": ("file:link.json", ReadRefused),
    "remote host": ("file://evil.example/etc/passwd", ReadRefused),
    "a folder": ("file:frobs", ReadFailed),
}


@pytest.mark.parametrize("url, error", FILE_URLS.values(), ids=FILE_URLS.keys())
def test_file_urls_stay_in_their_folder(folder, url, error):
    reader = FileUrlReader(folder)
    if error is None:
        assert reader.read(url) == b'{"frobs": []}'
    else:
        with pytest.raises(error):
            reader.read(url)


def test_file_over_the_size_cap_is_refused(folder):
    with pytest.raises(ReadFailed, match="larger than"):
        FileUrlReader(folder, max_bytes=5).read("file:frobs/a.json")


@pytest.fixture
def reader(httpserver):
    return HttpUrlReader(
        HostAllowList([f"{httpserver.host}:{httpserver.port}"]), max_bytes=1000
    )


def test_http_read(httpserver, reader):
    httpserver.expect_request("/a").respond_with_data(b"hello")
    assert reader.read(httpserver.url_for("/a")) == b"hello"


def test_http_404_means_not_found(httpserver, reader):
    httpserver.expect_request("/gone").respond_with_data(b"", status=404)
    with pytest.raises(SourceNotFound):
        reader.read(httpserver.url_for("/gone"))


def test_http_500_is_a_failure(httpserver, reader):
    httpserver.expect_request("/broken").respond_with_data(b"", status=500)
    with pytest.raises(ReadFailed, match="500"):
        reader.read(httpserver.url_for("/broken"))


def test_http_redirect_inside_the_allow_list_is_followed(httpserver, reader):
    httpserver.expect_request("/old").respond_with_data(
        b"", status=302, headers={"Location": "/new"}
    )
    httpserver.expect_request("/new").respond_with_data(b"moved")
    assert reader.read(httpserver.url_for("/old")) == b"moved"


def test_http_redirect_leaving_the_allow_list_is_refused(httpserver, reader):
    httpserver.expect_request("/away").respond_with_data(
        b"", status=302, headers={"Location": "http://evil.example/"}
    )
    with pytest.raises(ReadRefused, match="evil.example"):
        reader.read(httpserver.url_for("/away"))


def test_http_body_over_the_cap_is_refused(httpserver, reader):
    httpserver.expect_request("/big").respond_with_data(b"x" * 5000)
    with pytest.raises(ReadFailed, match="larger than"):
        reader.read(httpserver.url_for("/big"))


def test_http_host_not_allowed_is_refused_without_a_request(httpserver):
    reader = HttpUrlReader(HostAllowList(["example.com"]))
    with pytest.raises(ReadRefused, match="backend.reading.allow"):
        reader.read(httpserver.url_for("/a"))
    assert httpserver.log == []


def test_unreachable_host_is_a_failure():
    reader = HttpUrlReader(HostAllowList(["127.0.0.1:9"]))
    with pytest.raises(ReadFailed, match="could not reach"):
        reader.read("http://127.0.0.1:9/a")


def test_http_body_over_the_cap_without_a_length_is_refused(httpserver, reader):
    def chunked(_request):
        return Response((b"x" * 100 for _ in range(50)), mimetype="text/plain")

    httpserver.expect_request("/stream").respond_with_handler(chunked)
    with pytest.raises(ReadFailed, match="larger than 1000 bytes"):
        reader.read(httpserver.url_for("/stream"))
    # The reader is still usable afterwards.
    httpserver.expect_request("/a").respond_with_data(b"hello")
    assert reader.read(httpserver.url_for("/a")) == b"hello"


def test_http_redirects_past_five_are_a_failure(httpserver, reader):
    for n in range(7):
        httpserver.expect_request(f"/r{n}").respond_with_data(
            b"", status=301, headers={"Location": f"/r{n + 1}"}
        )
    first = httpserver.url_for("/r0")
    with pytest.raises(ReadFailed, match=f"{first}: more than 5 redirects"):
        reader.read(first)


def test_http_source_silent_past_the_read_timeout_is_a_failure(httpserver):
    def slow(_request):
        time.sleep(3)
        return Response(b"late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    reader = HttpUrlReader(
        HostAllowList([f"{httpserver.host}:{httpserver.port}"]), read_timeout=1
    )
    began = time.monotonic()
    with pytest.raises(ReadFailed, match="failed"):
        reader.read(httpserver.url_for("/slow"))
    assert time.monotonic() - began < 2.9


def test_http_reads_ignore_proxies_named_by_the_environment(
    httpserver, reader, monkeypatch
):
    for name in ("http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    httpserver.expect_request("/a").respond_with_data(b"direct")
    assert reader.read(httpserver.url_for("/a")) == b"direct"


def test_http_reads_from_every_thread(httpserver, reader):
    httpserver.expect_request("/a").respond_with_data(b"hello")
    url = httpserver.url_for("/a")
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: reader.read(url), range(200))) == {b"hello"}


@pytest.fixture(scope="module")
def authority():
    return trustme.CA()


@pytest.fixture
def https_url(authority, tmp_path):
    """A local HTTPS server whose certificate ``authority`` issued."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("localhost").configure_cert(context)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_port}/a"
    server.shutdown()
    server.server_close()


def test_https_certificate_from_an_unknown_authority_is_refused(https_url):
    reader = HttpUrlReader(HostAllowList(["localhost:*"]))
    with pytest.raises(ReadFailed, match="could not reach localhost"):
        reader.read(https_url)


def test_https_certificate_from_the_system_store_is_trusted(
    https_url, authority, tmp_path, monkeypatch
):
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    reader = HttpUrlReader(HostAllowList(["localhost:*"]))
    assert reader.read(https_url) == b"secure"


def test_http_compressed_answer_is_decoded(httpserver, reader):
    document = b'{"frobs": [{"id": "a"}]}'
    httpserver.expect_request("/gz").respond_with_data(
        gzip.compress(document), headers={"Content-Encoding": "gzip"}
    )
    assert reader.read(httpserver.url_for("/gz")) == document


def test_http_compressed_answer_over_the_cap_once_decoded_is_refused(
    httpserver, reader
):
    httpserver.expect_request("/bomb").respond_with_data(
        gzip.compress(b"0" * 100_000), headers={"Content-Encoding": "gzip"}
    )
    with pytest.raises(ReadFailed, match="larger than 1000 bytes"):
        reader.read(httpserver.url_for("/bomb"))


@pytest.mark.parametrize(
    "location, error",
    [
        ("file:///etc/passwd", "only http and https URLs can be read"),
        ("ftp://127.0.0.1/x", "only http and https URLs can be read"),
    ],
)
def test_http_redirect_to_what_is_no_http_url_is_refused(
    httpserver, reader, location, error
):
    httpserver.expect_request("/away").respond_with_data(
        b"", status=302, headers={"Location": location}
    )
    url = httpserver.url_for("/away")
    with pytest.raises(ReadRefused, match=error) as refused:
        reader.read(url)
    assert f"a redirect of {url}" in str(refused.value)


def test_a_connection_closed_mid_body_is_a_failed_read(reader):
    class Cut(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cut"
        mine = HttpUrlReader(HostAllowList([f"127.0.0.1:{server.server_port}"]))
        with pytest.raises(ReadFailed, match=f"reading {url} failed"):
            mine.read(url)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url, error",
    [
        ("http:///frobs/a", "names no host"),
        ("ftp://example.com/frobs/a", "only http and https URLs can be read"),
        ("http://example.com:99999/frobs/a", "has a port that is no port number"),
        ("http://example.com:x/frobs/a", "has a port that is no port number"),
        ("http://exam ple.com/frobs/a", "'exam ple.com' is no host name"),
        ("http://example.com%2f..%2f/frobs/a", "is no host name"),
    ],
)
def test_a_configured_url_that_is_no_http_url_is_refused(url, error):
    reader = HttpUrlReader(HostAllowList(["example.com"]))
    with pytest.raises(ReadRefused, match=error):
        reader.read(url)
