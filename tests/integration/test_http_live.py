"""HTTP/1.1 behaviour of a live pasteserve over real sockets, for each worker class.

One server per worker class (module scope) serves ``tests.apps:router``; the tests that
need other settings or the PEP 3333-linted echo app start their own. Everything is read
off the wire, byte for byte where framing matters.
"""

from __future__ import annotations

import base64
import json
import time
from email.utils import parsedate_to_datetime
from typing import Iterator

import pytest

from tests.server import BIN, Client, Server

WORKER_CLASSES = ["sync", "eventlet", "gthread"]
TIMEOUT = 10.0
MB5 = bytes(range(256)) * (5 * 4096)  # 5 MiB, every byte value


def _argv(worker_class: str, app: str, *extra: str) -> list[str]:
    threads = ["--threads", "4"] if worker_class == "gthread" else []   # the sync worker with app threads
    return [str(BIN / "pasteserve"), "-w", "2", "-k", worker_class, *threads, "-b", "127.0.0.1:0", *extra, app]


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def server(request, tmp_path_factory) -> Iterator[Server]:
    srv = Server(_argv(request.param, "tests.apps:router"), tmp_path_factory.mktemp(f"http-{request.param}"))
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=WORKER_CLASSES)
def worker_class(request) -> str:
    return request.param


def _head_and_rest(client: Client) -> tuple[bytes, bytes]:
    """Everything until EOF, split at the end of the first head."""
    client.sock.settimeout(TIMEOUT)
    data = client.rfile.read()
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _chunked(body: bytes, size: int) -> bytes:
    out = bytearray()
    for start in range(0, len(body), size):
        piece = body[start:start + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return bytes(out) + b"0\r\n\r\n"


# --- persistence ------------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(server):
    with Client(server.port, TIMEOUT) as client:
        for _ in range(3):
            status, headers, body = client.get("/hello")
            assert (status, body) == (200, b"Hello, World!")
            assert headers.get("connection") != "close"


def test_http10_closes_by_default(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"GET /hello HTTP/1.0\r\n\r\n")
        status, headers, body = client.response()
        assert (status, body) == (200, b"Hello, World!")
        assert headers.get("connection") == "close"
        assert client.closed_by_peer()


def test_http10_keep_alive_is_honoured(server):
    with Client(server.port, TIMEOUT) as client:
        for _ in range(2):
            client.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = client.response()
            assert (status, body) == (200, b"Hello, World!")
            assert headers.get("connection") == "keep-alive"


def test_close_wins_in_a_connection_list(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n")
        status, headers, _ = client.response()
        assert status == 200 and headers.get("connection") == "close"
        assert client.closed_by_peer()


def test_five_pipelined_requests_are_answered_in_order(server):
    requests = [
        b"GET /environ?n=0 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo?n=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nfirst",
        b"GET /environ?n=2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo?n=3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(b"second body", 4),
        b"GET /environ?n=4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ]
    with Client(server.port, TIMEOUT) as client:
        client.send(b"".join(requests))
        answers = [client.response() for _ in requests]
        assert client.closed_by_peer()
    assert [status for status, _, _ in answers] == [200] * 5
    assert [json.loads(answers[i][2])["QUERY_STRING"] for i in (0, 2, 4)] == ["n=0", "n=2", "n=4"]
    assert (answers[1][2], answers[3][2]) == (b"first", b"second body")


# --- bodies -------------------------------------------------------------------------------------


def test_chunked_request_body_with_extensions_and_trailers(server):
    body = b"".join(b"%x;ext=%d\r\n%s\r\n" % (len(p), i, p) for i, p in enumerate([b"abc", b"defgh", b"\r\n\x00"]))
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + body + b"0\r\nX-Trailer: yes\r\n\r\n")
        assert client.response()[::2] == (200, b"abcdefgh\r\n\x00")
        assert client.get("/hello")[2] == b"Hello, World!"  # the trailers were consumed exactly


@pytest.mark.parametrize("coding", [", chunked", "chunked,"])
def test_transfer_encoding_with_an_empty_element_is_refused_and_closed(server, coding):
    # Every peer refuses these; a proxy that ignored the field would read "0\r\n\r\n..." as the next request.
    with Client(server.port, TIMEOUT) as client:
        client.send(f"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {coding}\r\n\r\n".encode()
                    + b"5\r\nhello\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = _head_and_rest(client)
    assert head.startswith(b"HTTP/1.1 400 ") and b"Hello" not in rest


@pytest.mark.parametrize("framing", ["Content-Length: 5", "Transfer-Encoding: chunked"])
def test_connect_with_content_is_refused_and_closed(server, framing):
    # RFC 9110 section 9.3.6: the bytes after a CONNECT head are tunnel data, never a body.
    with Client(server.port, TIMEOUT) as client:
        client.send(f"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n{framing}\r\n\r\n".encode()
                    + b"5\r\nhello\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = _head_and_rest(client)
    assert head.startswith(b"HTTP/1.1 400 ") and b"Hello" not in rest


def test_chunk_size_with_many_leading_zeros_is_read(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"0" * 30 + b"5\r\nhello\r\n" + b"0" * 30 + b"\r\n\r\n")
        assert client.response()[::2] == (200, b"hello")
        assert client.get("/hello")[2] == b"Hello, World!"


def test_app_without_content_length_is_chunked_to_http11(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"GET /stream?chunks=4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head, rest = _head_and_rest(client)
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    assert rest == b"".join(b"8\r\nchunk %d\n\r\n" % i for i in range(4)) + b"0\r\n\r\n"


def test_app_without_content_length_is_close_delimited_to_http10(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"GET /stream?chunks=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head, rest = _head_and_rest(client)
    assert b"transfer-encoding" not in head.lower()
    assert b"\r\nconnection: close" in head.lower()
    assert rest == b"chunk 0\nchunk 1\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_five_megabyte_upload(server, framing):
    if framing == "chunked":
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        payload = _chunked(MB5, 65536)
    else:
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(MB5)
        payload = MB5
    with Client(server.port, TIMEOUT) as client:
        client.send(head + payload)
        status, headers, body = client.response()
        assert status == 200 and body == MB5
        assert client.get("/hello")[2] == b"Hello, World!"


def test_unread_body_is_skipped_so_the_next_request_frames_right(server):
    with Client(server.port, TIMEOUT) as client:
        # The app never reads a body that looks like a request: it must be skipped, not parsed.
        body = b"GET /smuggled HTTP/1.1\r\n\r\n"
        client.send(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body + b"GET /environ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.response()[::2] == (200, b"Hello, World!")
        status, _, body = client.response()
        assert status == 200 and json.loads(body)["RAW_URI"] == "/environ"


def test_large_unread_body_ends_the_connection_instead_of_being_read(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (10 << 20))
        status, headers, body = client.response()
        assert (status, body) == (200, b"Hello, World!")
        assert headers.get("connection") == "close"
        assert client.closed_by_peer()


# --- Expect: 100-continue -----------------------------------------------------------------------


def test_100_continue_comes_when_the_app_reads(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        # The body is withheld until the interim response arrives, as a real client does.
        assert client.rfile.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert client.rfile.readline() == b"\r\n"
        client.send(b"hello")
        status, _, body = client.response()
        assert (status, body) == (200, b"hello")
        assert client.get("/hello")[2] == b"Hello, World!"


def test_100_continue_before_a_chunked_body(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert client.rfile.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert client.rfile.readline() == b"\r\n"
        client.send(_chunked(b"chunked after continue", 5))
        assert client.response()[::2] == (200, b"chunked after continue")


def test_no_100_continue_when_the_app_does_not_read(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /hello HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        status, headers, body = client.response()
        assert (status, body) == (200, b"Hello, World!")
        # The body may never come: the connection cannot be reused, and says so.
        assert headers.get("connection") == "close"
        assert client.closed_by_peer()


def test_no_100_continue_for_http10(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
        status_line = client.rfile.readline()
        assert status_line.split()[1] == b"200", status_line  # a 100 would come first
        headers = {}
        while (line := client.rfile.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert client.rfile.read(int(headers["content-length"])) == b"hello"


def test_unknown_expectation_is_417(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 5\r\n\r\nhello")
        status, headers, _ = client.response()
        assert status == 417 and headers.get("connection") == "close"
        assert client.closed_by_peer()


# --- responses without a body -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/hello", "/stream"])
def test_head_has_no_body(server, path):
    with Client(server.port, TIMEOUT) as client:
        client.send(f"HEAD {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        status, headers, _ = client.response(head=True)
        assert status == 200
        if path == "/hello":
            assert headers["content-length"] == "13"  # the length a GET would have
        # A body sent anyway would be read as the start of the next response.
        assert client.get("/hello")[::2] == (200, b"Hello, World!")


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(server, code):
    with Client(server.port, TIMEOUT) as client:
        client.send(f"GET /status?code={code} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        status, headers, _ = client.response(head=True)
        assert status == code
        assert "transfer-encoding" not in headers
        if code == 204:
            assert "content-length" not in headers  # RFC 9110 section 8.6
        assert client.get("/hello")[::2] == (200, b"Hello, World!")


@pytest.mark.parametrize("code", [101, 103])
def test_1xx_from_the_app_is_never_the_final_response(server, code):
    with Client(server.port, TIMEOUT) as client:
        client.send(f"GET /status?code={code} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        client.sock.settimeout(TIMEOUT)
        data = client.rfile.read()
    statuses = [int(line.split()[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses and statuses[-1] >= 200, data


# --- failing apps -------------------------------------------------------------------------------


def test_app_crash_is_500_and_the_connection_serves_on(server):
    with Client(server.port, TIMEOUT) as client:
        status, headers, _ = client.get("/crash")
        assert status == 500
        if headers.get("connection") == "close":
            assert client.closed_by_peer()
        else:
            assert client.get("/hello")[::2] == (200, b"Hello, World!")


def test_crash_after_the_head_cuts_the_chunked_body_and_closes(server):
    with Client(server.port, TIMEOUT) as client:
        client.send(b"GET /crash-in-body HTTP/1.1\r\nHost: a\r\n\r\n")
        head, rest = _head_and_rest(client)
    assert head.startswith(b"HTTP/1.1 200 ")
    # No last chunk: the client must see the response as incomplete, not as a short success.
    assert rest == b"8\r\npartial \r\n"


# --- headers every response carries -------------------------------------------------------------


def test_date_and_server_headers(server):
    with Client(server.port, TIMEOUT) as client:
        for path in ("/hello", "/stream", "/crash"):
            _, headers, _ = client.get(path)
            assert headers["server"].startswith("pasteserve")
            date = parsedate_to_datetime(headers["date"])
            assert headers["date"].endswith(" GMT") and date.tzinfo is not None
            assert abs(date.timestamp() - time.time()) < 300
        client.send(b"GET /x HTTP/1.1\r\nHost: a\r\nExpect: nope\r\n\r\n")
        _, headers, _ = client.response()  # a server-made error page too
        assert headers["server"].startswith("pasteserve") and "date" in headers


# --- servers with other settings ----------------------------------------------------------------


def test_keepalive_zero_closes_after_every_response(start_server, worker_class):
    srv = start_server("pasteserve", args=_argv(worker_class, "tests.apps:router", "--keep-alive", "0")[1:])
    for request in (b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
                    b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                    b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"):
        with Client(srv.port, TIMEOUT) as client:
            client.send(request * 2)  # the pipelined second request must never be answered
            status, headers, _ = client.response()
            assert status == 200 and headers.get("connection") == "close"
            client.sock.settimeout(TIMEOUT)
            assert client.rfile.read() == b""


def test_pep3333_lint_end_to_end(start_server, worker_class):
    srv = start_server("pasteserve", args=_argv(worker_class, "tests.integration.echo_app:linted")[1:])
    requests = [
        (b"GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\nX-Thing: 2\r\n\r\n", b""),
        (b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody", b"body"),
        (b"PUT /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(b"x" * 100, 7), b"x" * 100),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b""),
        (b"DELETE http://a/abs?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b""),
    ]
    with Client(srv.port, TIMEOUT) as client:
        for raw, body in requests:
            client.send(raw)
            status, _, answer = client.response()
            assert status == 200, answer
            assert base64.b64decode(json.loads(answer)["body_b64"]) == body
    seen = json.loads(_one(srv.port, requests[0][0]))
    assert (seen["PATH_INFO"], seen["QUERY_STRING"]) == ("/a/b c", "x=1&y=%2F")
    assert seen["headers"]["HTTP_X_THING"] == "1,2"
    assert "Traceback" not in srv.log()


def _one(port: int, raw: bytes) -> bytes:
    with Client(port, TIMEOUT) as client:
        client.send(raw)
        return client.response()[2]

