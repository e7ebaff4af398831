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
