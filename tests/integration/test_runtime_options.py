"""Runtime options drop-in users rely on, against real servers for each worker class:
the request body limit, the limits with 0, trusted proxies (Gunicorn's and waitress's
options), url_scheme, ident, expose_tracebacks, unix_socket_perms and TLS client certificates.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.server import Client, read_response

APP = "tests.integration.rt_app:app"
WORKER_CLASSES = ["sync", "eventlet"]


@pytest.fixture(params=WORKER_CLASSES)
def worker_class(request) -> str:
    return request.param


def serve(start_server, worker_class: str, *options: str, env: dict | None = None):
    return start_server("pasteserve", args=["-k", worker_class, "-b", "127.0.0.1:0", *options, APP], env=env)


def records(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- limit_request_body -----------------------------------------------------------------------

@pytest.fixture
def limited(start_server, worker_class, tmp_path):
    record = tmp_path / "seen.txt"
    server = serve(start_server, worker_class, "--limit-request-body", "1000", env={"RT_APP_RECORD": str(record)})
    return server, record


def test_body_at_the_limit_reaches_the_app(limited):
    server, record = limited
    with Client(server.port) as client:
        client.send(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
        status, headers, body = client.response()
        assert (status, json.loads(body)) == (200, {"read": 1000})
    assert records(record) == ["read 1000"]


def test_larger_content_length_gets_413_before_any_body_byte(limited):
    server, record = limited
    with Client(server.port) as client:
        # Only the head is sent: the answer cannot wait for (or depend on) the body.
        client.send(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n")
        status, headers, body = client.response()
        assert status == 413, body
        assert headers["connection"] == "close"
        assert client.closed_by_peer()
    assert records(record) == []


def test_chunked_body_growing_past_the_limit_gets_413_and_the_app_sees_at_most_the_limit(limited):
    server, record = limited
    chunk = b"258\r\n" + b"c" * 600 + b"\r\n"   # 600 bytes; the second one passes 1000
    with Client(server.port) as client:
        client.send(b"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
        client.send(chunk + chunk + b"0\r\n\r\n")
        status, headers, body = client.response()
        assert status == 413, body
        assert headers["connection"] == "close"
        assert client.closed_by_peer()
    ((kind, seen, error),) = [line.split() for line in records(record)]
    assert (kind, error) == ("error", "PayloadTooLarge")
    assert int(seen) <= 1000


# --- limits with 0, as Gunicorn 27's code ------------------------------------------------------

def test_zero_limits_behave_as_in_gunicorn(start_server):
    server = serve(start_server, "sync", "--limit-request-line", "0", "--limit-request-fields", "0",
                   "--limit-request-field-size", "0")
    long_target = "/environ?" + "q" * 20000                       # over the 8190 default: no line limit
    many = "".join(f"X-F{i}: v\r\n" for i in range(300))           # over the 100 default: the maximum
    with Client(server.port) as client:
        client.send(f"GET {long_target} HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
        status, _, body = client.response()
        assert status == 200, body
        assert json.loads(body)["HTTP_X_F299"] == "v"
        # The field size falls back to its default, 8190 bytes with the CRLF.
        client.send(b"GET /environ HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 8186 + b"\r\n\r\n")
        assert client.response()[0] == 431


# --- trusted proxies -----------------------------------------------------------------------------

def environ_from(port: int, source: str, *headers: str) -> dict:
    """GET /environ from the local address `source` (127.0.0.x are all loopback)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        extra = "".join(f"{h}\r\n" for h in headers)
        sock.sendall(f"GET /environ HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n{extra}\r\n".encode())
        with sock.makefile("rb") as rfile:
            status, _, body = read_response(rfile)
    finally:
        sock.close()
    assert status == 200, body
    return json.loads(body)


def test_forwarded_allow_ips_takes_networks(start_server, worker_class):
    server = serve(start_server, worker_class, "--forwarded-allow-ips", "127.0.0.0/30, fd00::/8")
    assert environ_from(server.port, "127.0.0.2", "X-Forwarded-Proto: https")["wsgi.url_scheme"] == "https"
    untrusted = environ_from(server.port, "127.0.0.5", "X-Forwarded-Proto: https")
    assert (untrusted["wsgi.url_scheme"], untrusted["REMOTE_ADDR"]) == ("http", "127.0.0.5")


def test_waitress_proxy_headers_from_trusted_and_untrusted_peers(start_server, worker_class):
    server = serve(start_server, worker_class, "--forwarded-allow-ips", "127.0.0.2",
                   "--trusted-proxy-headers", "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port",
                   "--clear-untrusted-proxy-headers", "--log-untrusted-proxy-headers")
    forwarded = ("X-Forwarded-For: 203.0.113.9, 198.51.100.4", "X-Forwarded-Host: shop.example",
                 "X-Forwarded-Proto: https", "X-Forwarded-Port: 8443", "Forwarded: for=6.6.6.6")
    env = environ_from(server.port, "127.0.0.2", *forwarded)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("198.51.100.4", "https")
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example:8443", "shop.example", "8443")
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.4"
    assert "HTTP_FORWARDED" not in env   # not a trusted header: cleared
    env = environ_from(server.port, "127.0.0.5", *forwarded)
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_HOST"]) == ("127.0.0.5", "http", "internal")
    assert not [key for key in env if "FORWARDED" in key]
    server.wait_for(lambda: "Removed untrusted forwarding headers from 127.0.0.5: Forwarded, X-Forwarded-For, "
                            "X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Proto" in server.log(), 10, "the warning")
    assert "Removed untrusted forwarding headers from 127.0.0.2: Forwarded (better" in server.log()


def test_forwarded_header_from_an_ini_and_a_malformed_one_is_refused(start_server):
    server = start_server("pasteserve_paster", ini=(
        "[app:main]\nuse = call:tests.integration.rt_app:app_factory\n\n"
        "[server:main]\nuse = egg:pasteserve#main\nbind = 127.0.0.1:0\n"
        "forwarded_allow_ips = 127.0.0.0/8\ntrusted_proxy_headers = forwarded\ntrusted_proxy_count = 2\n"))
    env = environ_from(server.port, "127.0.0.3",
                       'Forwarded: for=6.6.6.6, for="203.0.113.9:4711";proto=https;host=shop.example, for=10.0.0.1')
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"]) == ("203.0.113.9", "4711", "https")
    assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("shop.example", "443")
    with Client(server.port) as client:
        client.send(b"GET /environ HTTP/1.1\r\nHost: x\r\nForwarded: proto=gopher\r\n\r\n")
        assert client.response()[0] == 400


# --- url_scheme, ident, expose_tracebacks, unix_socket_perms ---------------------------------------

def test_url_scheme_and_ident(start_server, worker_class):
    server = serve(start_server, worker_class, "--url-scheme", "https", "--ident", "shop/2.1")
    with Client(server.port) as client:
        status, headers, body = client.get("/environ")
        assert status == 200
        assert headers["server"] == "shop/2.1"
        assert json.loads(body)["wsgi.url_scheme"] == "https"
        status, headers, _ = client.get("/nothing-here")
        assert (status, headers["server"]) == (404, "shop/2.1")


def test_default_server_header_and_generic_500(start_server, worker_class):
    server = serve(start_server, worker_class)
    with Client(server.port) as client:
        status, headers, body = client.get("/crash")
        assert status == 500
        assert headers["server"].startswith("pasteserve/")
        assert b"Traceback" not in body and b"crash requested" not in body


def test_expose_tracebacks_shows_the_traceback_on_the_500_page(start_server, worker_class):
    server = serve(start_server, worker_class, "--expose-tracebacks")
    with Client(server.port) as client:
        status, headers, body = client.get("/crash")
        assert status == 500
        assert b"Traceback (most recent call last)" in body
        assert b"RuntimeError: crash requested by the test" in body
        assert headers.get("connection") != "close"   # the request was fine: keep-alive goes on
        assert client.get("/environ")[0] == 200


def test_unix_socket_perms_sets_the_mode_after_bind(start_server, tmp_path):
    path = tmp_path / "app.sock"
    start_server("pasteserve", args=["-b", f"unix:{path}", "--umask", "077", "--unix-socket-perms", "660", APP])
    assert (path.stat().st_mode & 0o777) == 0o660
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with sock.makefile("rb") as rfile:
            assert read_response(rfile)[0] == 200
