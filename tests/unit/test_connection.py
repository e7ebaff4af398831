"""Connection: keep-alive, pipelining, framing, 100-continue, errors, timeouts, draining.

Everything runs over real sockets. :class:`Worker` is a tiny selector loop in a thread
that drives ``Connection.process()`` / ``expire()`` the way the sync worker does; a few
tests drive a connection by hand over a socketpair to see exactly when process() returns.
"""

from __future__ import annotations

import json
import logging
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from pasteserve.connection import Connection, ServerContext
from pasteserve.http.parser import Limits
from tests import apps

TIMEOUT = 5.0


class Worker:
    """Serves ``app`` on 127.0.0.1 from a selector loop in a background thread."""

    def __init__(self, app: Callable, **ctx: Any) -> None:
        ctx.setdefault("limits", Limits())
        self.ctx = ServerContext(app=app, **ctx)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.address = self.listener.getsockname()
        self.failures: list[BaseException] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._adopt: queue.Queue = queue.Queue()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="test-worker", daemon=True)
        self._thread.start()

    def adopt(self, sock: socket.socket, peer: Any) -> None:
        """Serve an already connected socket (e.g. one end of a unix socketpair)."""
        sock.settimeout(self.ctx.io_timeout)
        self._adopt.put((sock, peer))
        self._wake_w.send(b"x")

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(TIMEOUT)
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.failures:
            raise self.failures[0]

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        conns: dict[int, Connection] = {}

        def add(sock: socket.socket, peer: Any) -> None:
            conn = Connection(sock, peer, self.ctx)
            conns[sock.fileno()] = conn
            sel.register(sock.fileno(), selectors.EVENT_READ, conn)

        sel.register(self.listener, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping:
                timeout = None
                if conns:
                    timeout = max(0.0, min(c.deadline for c in conns.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data == "listen":
                        try:
                            sock, peer = self.listener.accept()
                        except BlockingIOError:
                            continue
                        sock.settimeout(self.ctx.io_timeout)
                        add(sock, peer)
                    elif key.data == "wake":
                        self._wake_r.recv(64)
                        while not self._adopt.empty():
                            add(*self._adopt.get())
                    elif key.fd in conns and not key.data.process():
                        sel.unregister(key.fd)
                        del conns[key.fd]
                now = time.monotonic()
                for fd, conn in list(conns.items()):
                    if conn.deadline <= now:
                        conn.expire()
                        sel.unregister(fd)
                        del conns[fd]
        except BaseException as exc:  # anything escaping the engine is a bug
            self.failures.append(exc)
        finally:
            for conn in conns.values():
                conn.close()
            sel.close()


@dataclass
class Resp:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ",".join(values) if values else None


class Client:
    """A blocking client socket with a buffered reader that keeps pipelined bytes."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(TIMEOUT)
        self.sock = sock
        self.file = sock.makefile("rb")

    @classmethod
    def to(cls, worker: Worker) -> Client:
        return cls(socket.create_connection(worker.address, timeout=TIMEOUT))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, data: bytes, method: str = "GET") -> Resp:
        self.send(data)
        return self.response(method)

    def response(self, method: str = "GET") -> Resp:
        f = self.file
        line = f.readline()
        if not line:
            raise EOFError("connection closed before a response")
        raw = [line]
        version, status, reason = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        while True:
            line = f.readline()
            raw.append(line)
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        resp = Resp(version, int(status), reason, headers, b"", b"".join(raw))
        if method == "HEAD" or resp.status < 200 or resp.status in (204, 304):
            return resp
        if resp.header("transfer-encoding") == "chunked":
            while True:
                size = int(f.readline().split(b";")[0], 16)
                if not size:
                    assert f.readline() == b"\r\n"
                    break
                resp.chunks.append(f.read(size))
                assert f.read(2) == b"\r\n"
            resp.body = b"".join(resp.chunks)
        elif resp.header("content-length") is not None:
            resp.body = f.read(int(resp.header("content-length")))
        else:
            resp.body = f.read()
        return resp

    def at_eof(self) -> bool:
        """The server closed its side with nothing more to say."""
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def serve():
    """``serve(app, **ctx) -> Worker``; every worker and client is closed afterwards."""
    workers: list[Worker] = []

    def start(app: Callable = apps.router, **ctx: Any) -> Worker:
        worker = Worker(app, **ctx)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def client_of():
    clients: list[Client] = []

    def connect(worker: Worker) -> Client:
        client = Client.to(worker)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def get(path: str, *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def post(path: str, body: bytes, *headers: str, chunked: bool = False) -> bytes:
    if chunked:
        framing = "Transfer-Encoding: chunked"
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3], body[3:]) if part) + b"0\r\n\r\n"
    else:
        framing = f"Content-Length: {len(body)}"
    return get(path, framing, *headers, method="POST") + body


# -- keep-alive and pipelining ----------------------------------------------------


def test_keep_alive_serves_several_requests(serve, client_of):
    worker = serve()
    client = client_of(worker)
    for _ in range(3):
        resp = client.request(get("/hello"))
        assert (resp.version, resp.status, resp.body) == ("HTTP/1.1", 200, b"Hello, World!")
        assert resp.header("connection") is None
        assert resp.header("server").startswith("pasteserve/")
        assert resp.header("date").endswith(" GMT")
    worker.stop()  # counted after each response went out: wait for the loop to finish
    assert worker.ctx.requests == 3


def test_pipelined_requests_are_answered_in_order(serve, client_of):
    client = client_of(serve())
    client.send(get("/environ?n=1") + post("/echo", b"second") + get("/environ?n=3"))
    first, second, third = client.response(), client.response(), client.response()
    assert json.loads(first.body)["QUERY_STRING"] == "n=1"
    assert second.body == b"second"
    assert json.loads(third.body)["QUERY_STRING"] == "n=3"


def test_keepalive_zero_closes_after_each_response(serve, client_of):
    client = client_of(serve(keepalive=0))
    resp = client.request(get("/hello"))
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_graceful_stop_answers_with_connection_close(serve, client_of):
    worker = serve()
    worker.ctx.alive = False
    client = client_of(worker)
    assert client.request(get("/hello")).header("connection") == "close"
    assert client.at_eof()


def test_client_connection_close_is_honoured(serve, client_of):
    client = client_of(serve())
    assert client.request(get("/hello", "Connection: close")).header("connection") == "close"
    assert client.at_eof()


# -- HTTP/1.0 -------------------------------------------------------------------------


def test_http10_closes_by_default(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/hello", version="1.0"))
    assert resp.version == "HTTP/1.1"  # our version; the 1.0 client reads it fine
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_http10_keep_alive_when_asked(serve, client_of):
    client = client_of(serve())
    for _ in range(2):
        resp = client.request(get("/hello", "Connection: keep-alive", version="1.0"))
        assert resp.header("connection") == "keep-alive"
        assert resp.body == b"Hello, World!"


def test_http10_streaming_response_is_close_delimited(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/stream", "Connection: keep-alive", version="1.0"))
    assert resp.header("transfer-encoding") is None
    assert resp.header("content-length") is None
    assert resp.header("connection") == "close"
    assert resp.body == b"chunk 0\nchunk 1\nchunk 2\n"  # read to EOF


# -- chunked both ways -------------------------------------------------------------------


def test_chunked_request_body(serve, client_of):
    client = client_of(serve())
    resp = client.request(post("/echo", b"hello chunked world", chunked=True))
    assert resp.body == b"hello chunked world"
    assert client.request(get("/hello")).status == 200  # framing intact afterwards


def test_streaming_response_is_chunked_on_the_wire(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/stream?chunks=4"))
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.chunks == [b"chunk 0\n", b"chunk 1\n", b"chunk 2\n", b"chunk 3\n"]
    assert client.request(get("/hello")).body == b"Hello, World!"


def test_empty_generator_gets_content_length_zero(serve, client_of):
    def empty(environ, start_response):
        start_response("200 OK", [])
        yield from ()

    client = client_of(serve(empty))
    resp = client.request(get("/"))
    assert resp.header("content-length") == "0" and resp.body == b""
    assert client.request(get("/")).status == 200


def test_write_callable(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/write"))
    assert resp.body == b"written returned"


def test_single_element_body_gets_a_content_length(serve, client_of):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc", b"def"]

    client = client_of(serve(app))
    resp = client.request(get("/"))
    assert resp.header("content-length") == "6" and resp.body == b"abcdef"


def test_large_body(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/large?size=3000000"))
    assert len(resp.body) == 3000000 and resp.header("content-length") == "3000000"


def test_file_wrapper_uses_sendfile_and_honours_content_length(serve, client_of):
    with open(apps.__file__, "rb") as f:
        expected = f.read()
    client = client_of(serve())
    resp = client.request(get("/file"))
    assert resp.body == expected
    assert resp.header("content-length") == str(len(expected))

    def first_ten(environ, start_response):
        start_response("200 OK", [("Content-Length", "10")])
        return environ["wsgi.file_wrapper"](open(apps.__file__, "rb"))

    client = client_of(serve(first_ten))
    assert client.request(get("/")).body == expected[:10]
    assert client.request(get("/")).body == expected[:10]  # still in step


# -- 100-continue -----------------------------------------------------------------------


def test_100_continue_is_sent_on_first_read_only(serve, client_of):
    def reads_twice(environ, start_response):
        stream = environ["wsgi.input"]
        body = stream.read(2) + stream.read()
        start_response("200 OK", [])
        return [body]

    client = client_of(serve(reads_twice))
    client.send(get("/", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    assert client.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert client.file.readline() == b"\r\n"
    client.send(b"hello")
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"hello")
    assert resp.header("connection") is None
    assert client.request(get("/", "Content-Length: 0", method="POST")).status == 200


def test_no_100_continue_when_the_app_does_not_read(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/hello", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    assert resp.status == 200
    # The client may never send the body it was not invited to: do not wait for it.
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_no_100_continue_for_http10(serve, client_of):
    client = client_of(serve())
    client.send(get("/echo", "Content-Length: 2", "Expect: 100-continue", method="POST", version="1.0") + b"hi")
    resp = client.response()
    assert resp.status == 200 and resp.body == b"hi"
    assert b"100 Continue" not in resp.raw_head


# -- bodies that must not be sent -------------------------------------------------------------


@pytest.mark.parametrize("code", ["204", "304"])
def test_no_body_for_204_304(serve, client_of, code):
    client = client_of(serve())
    client.send(get(f"/status?code={code}") + get("/hello"))
    resp = client.response()
    assert resp.status == int(code)
    assert resp.header("transfer-encoding") is None
    nxt = client.response()  # would fail if any stray body byte had been sent
    assert nxt.body == b"Hello, World!"


@pytest.mark.parametrize("code", ["100", "103", "600"])
def test_an_app_status_outside_200_to_599_is_a_500(serve, client_of, code):
    # A 1xx is interim (RFC 9110 15.2): sent as the app's only answer the client would wait forever.
    client = client_of(serve())
    client.send(get(f"/status?code={code}") + get("/hello"))
    assert client.response().status == 500
    assert client.response().body == b"Hello, World!"


def test_no_content_length_on_204(serve, client_of):
    def app(environ, start_response):
        start_response("204 No Content", [("Content-Length", "0")])
        return []

    client = client_of(serve(app))
    assert client.request(get("/")).header("content-length") is None


def test_head_gets_headers_but_no_body(serve, client_of):
    client = client_of(serve())
    client.send(get("/hello", method="HEAD") + get("/stream", method="HEAD") + get("/hello"))
    head = client.response("HEAD")
    assert head.header("content-length") == "13"
    stream = client.response("HEAD")
    assert stream.status == 200 and stream.header("transfer-encoding") is None
    assert client.response().body == b"Hello, World!"


# -- the app's Content-Length ----------------------------------------------------------------------


def test_app_sends_more_than_its_content_length(serve, client_of, caplog):
    client = client_of(serve())
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        resp = client.request(get("/wrong-length?declared=5&actual=10"))
        assert resp.body == b"yyyyy"
        assert client.request(get("/hello")).body == b"Hello, World!"  # cut exactly: still in step
    assert "more than its Content-Length" in caplog.text


def test_app_sends_less_than_its_content_length(serve, client_of, caplog):
    client = client_of(serve())
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        client.send(get("/wrong-length?declared=10&actual=4"))
        head = client.file.readline()
        assert head.startswith(b"HTTP/1.1 200")
        rest = client.file.read()  # the server must close: the client waits for 6 more bytes
    assert rest.endswith(b"\r\n\r\nyyyy")
    assert b"Content-Length: 10\r\n" in rest
    assert "less than its Content-Length" in caplog.text


# -- application errors ----------------------------------------------------------------------


def test_hop_by_hop_header_from_app_is_a_500(serve, client_of, caplog):
    client = client_of(serve())
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        resp = client.request(get("/hop-by-hop"))
    assert resp.status == 500
    assert b"never sent" not in resp.body
    assert "hop-by-hop" in caplog.text
    assert client.request(get("/hello")).status == 200


def test_connection_close_from_app_closes_after_its_response(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/connection-close"))
    assert (resp.status, resp.body) == (400, b"refused\n")
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_app_crash_is_a_500_and_the_connection_goes_on(serve, client_of, caplog):
    client = client_of(serve())
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        resp = client.request(get("/crash"))
    assert resp.status == 500
    assert resp.header("content-type").startswith("text/plain")
    assert b"crash requested" not in resp.body and b"Traceback" not in resp.body
    assert "crash requested by the test" in caplog.text  # the traceback went to the log
    assert any(record.exc_info for record in caplog.records)
    assert client.request(get("/hello")).body == b"Hello, World!"


def test_head_request_to_crashing_app_gets_a_bodyless_500(serve, client_of):
    client = client_of(serve())
    client.send(get("/crash", method="HEAD") + get("/hello"))
    assert client.response("HEAD").status == 500
    assert client.response().body == b"Hello, World!"


def test_crash_after_head_sent_closes_the_connection(serve, client_of, caplog):
    client = client_of(serve())
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        client.send(get("/crash-in-body"))
        raw = client.file.read()  # until the server closes
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"8\r\npartial \r\n")  # no last-chunk: the client knows it is cut short
    assert "crash in the body" in caplog.text


def test_iterable_close_is_always_called(serve, client_of, caplog):
    closed = []

    class Body:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def __iter__(self):
            yield b"a"
            if self.fail:
                raise RuntimeError("boom")

        def close(self):
            closed.append(self.fail)
            raise ValueError("close failed too")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "1")])
        return Body(environ["QUERY_STRING"] == "fail")

    client = client_of(serve(app))
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        assert client.request(get("/")).body == b"a"
        assert client.request(get("/?fail")).body == b"a"
        assert client.at_eof()  # failed after its head: the connection closes, after close()
    assert closed == [False, True]
    assert "close failed too" in caplog.text


def test_start_response_with_exc_info_before_the_head_replaces_it(serve, client_of):
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("oops")
        except KeyError:
            import sys
            start_response("503 Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"sorry"]

    client = client_of(serve(app))
    resp = client.request(get("/"))
    assert (resp.status, resp.body) == (503, b"sorry")
    assert resp.header("x-first") is None and resp.header("x-second") == "1"


def test_start_response_with_exc_info_after_the_head_reraises(serve, client_of, caplog):
    def app(environ, start_response):
        import sys
        start_response("200 OK", [])
        yield b"begun"
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [], sys.exc_info())
        yield b"never"

    client = client_of(serve(app))
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        client.send(get("/"))
        raw = client.file.read()
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"never" not in raw
    assert "KeyError" in caplog.text


def test_second_start_response_without_exc_info_is_an_error(serve, client_of):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]

    client = client_of(serve(app))
    assert client.request(get("/")).status == 500


def test_no_start_response_is_an_error(serve, client_of):
    client = client_of(serve(lambda environ, start_response: [b"x"]))
    assert client.request(get("/")).status == 500
    client = client_of(serve(lambda environ, start_response: iter([b"x"])))
    assert client.request(get("/")).status == 500


def test_str_body_is_an_error(serve, client_of):
    def app(environ, start_response):
        start_response("200 OK", [])
        return ["text"]

    client = client_of(serve(app))
    assert client.request(get("/")).status == 500


# -- request body errors and draining ------------------------------------------------------------


def test_bad_chunk_while_the_app_reads_is_a_400(serve, client_of):
    client = client_of(serve())
    client.send(get("/echo", "Transfer-Encoding: chunked", method="POST") + b"5\r\nhello\r\nzz\r\n")
    resp = client.response()
    assert resp.status == 400
    assert resp.header("connection") == "close"
    assert b"chunk" in resp.body
    assert client.at_eof()


def test_app_that_swallows_a_body_error_still_closes(serve, client_of):
    def swallow(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except Exception:
            pass
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    client = client_of(serve(swallow))
    client.send(get("/", "Transfer-Encoding: chunked", method="POST") + b"nothex\r\n")
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"ok")
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_small_unread_body_is_drained(serve, client_of):
    client = client_of(serve())
    resp = client.request(post("/hello", b"x" * 1000))
    assert resp.header("connection") is None
    assert client.request(post("/hello", b"y" * 10, chunked=True)).header("connection") is None
    assert client.request(get("/hello")).body == b"Hello, World!"


def test_partly_read_body_is_drained(serve, client_of):
    client = client_of(serve())
    assert client.request(post("/partial-read?n=3", b"abcdefgh")).body == b"abc"
    assert client.request(get("/hello")).body == b"Hello, World!"


def test_large_unread_body_closes_the_connection(serve, client_of):
    client = client_of(serve(max_drain=100))
    resp = client.request(post("/hello", b"x" * 1000))
    assert resp.status == 200
    assert resp.header("connection") == "close"
    assert client.at_eof()


def test_large_unread_chunked_body_closes_the_connection(serve, client_of):
    client = client_of(serve(max_drain=100))
    client.send(get("/hello", "Transfer-Encoding: chunked", method="POST") + b"400\r\n" + b"x" * 1024 + b"\r\n")
    assert client.response().status == 200
    assert client.at_eof()  # never parses the rest of the body as a request


# -- protocol errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(20)) + b"\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", 417),
    ],
)
def test_protocol_errors_are_answered_then_closed(serve, client_of, request_bytes, status):
    called = []
    worker = serve(lambda e, s: called.append(1) or apps.hello(e, s),
                   limits=Limits(limit_request_line=200, limit_request_fields=10))
    client = client_of(worker)
    resp = client.request(request_bytes)
    assert resp.status == status
    assert resp.header("connection") == "close"
    assert resp.header("content-type").startswith("text/plain")
    assert resp.body.startswith(b"%d " % status) and len(resp.body.splitlines()) == 2
    assert client.at_eof()
    assert called == []


def test_protocol_error_after_good_pipelined_request(serve, client_of):
    client = client_of(serve())
    client.send(get("/hello") + b"BAD REQUEST\r\n\r\n")
    assert client.response().status == 200
    assert client.response().status == 400
    assert client.at_eof()


def test_conflicting_scheme_headers_from_trusted_peer(serve, client_of):
    client = client_of(serve())
    resp = client.request(get("/environ", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"))
    assert resp.status == 400
    assert client.at_eof()


# -- timeouts -----------------------------------------------------------------------------------


def test_header_timeout_answers_408(serve, client_of):
    client = client_of(serve(header_timeout=0.3))
    client.send(b"GET / HTTP/1.1\r\nHost:")
    resp = client.response()
    assert resp.status == 408
    assert client.at_eof()


def test_idle_connection_without_a_request_closes_silently(serve, client_of):
    client = client_of(serve(header_timeout=0.2))
    assert client.at_eof()


def test_keepalive_timeout_closes_silently(serve, client_of):
    client = client_of(serve(keepalive=0.2))
    assert client.request(get("/hello")).status == 200
    assert client.at_eof()


# -- driving a connection by hand -------------------------------------------------------------------


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    server.settimeout(TIMEOUT)
    client.settimeout(TIMEOUT)
    yield server, client
    server.close()
    client.close()


def readable(sock: socket.socket, timeout: float = 0.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def test_partial_head_returns_without_blocking(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    fresh_deadline = conn.deadline
    client.sendall(b"GET / HTTP/1.1\r\nHo")
    started = time.monotonic()
    assert conn.process() is True
    assert time.monotonic() - started < 1.0
    assert not readable(client)  # nothing answered yet
    assert conn.deadline >= fresh_deadline  # now counted from the first head byte
    client.sendall(b"st: x\r\n\r\n")
    assert conn.process() is True
    assert Client(client).response().body == b"Hello, World!"
    conn.close()
    assert conn.process() is False


def test_idle_only_between_requests(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    assert conn.idle and conn.sock is server
    client.sendall(b"GET / HTTP/1.1\r\n")
    conn.process()
    assert not conn.idle  # a partial head lives in our parser: the socket alone is not enough
    client.sendall(b"Host: x\r\n\r\n")
    conn.process()
    assert conn.idle
    conn.close()
    assert not conn.idle


def test_expire_mid_head_sends_408(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    client.sendall(b"GET / HTTP/1.1\r\n")
    assert conn.process() is True
    conn.expire()
    reader = Client(client)
    assert reader.response().status == 408
    assert reader.at_eof()


def test_expire_when_idle_closes_silently(pair):
    server, client = pair
    ctx = ServerContext(app=apps.hello, limits=Limits(), keepalive=3.0)
    conn = Connection(server, "", ctx)
    client.sendall(get("/"))
    assert conn.process() is True
    before = time.monotonic()
    assert before < conn.deadline <= before + 3.0
    reader = Client(client)
    assert reader.response().status == 200
    conn.expire()
    assert reader.at_eof()


def test_lingers_after_a_protocol_error_until_the_client_closes(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    client.sendall(b"BAD\r\n\r\n")
    assert conn.process() is True  # answered, our side shut, still reading
    assert conn.deadline <= time.monotonic() + 2.5
    reader = Client(client)
    assert reader.response().status == 400
    assert reader.at_eof()
    client.sendall(b"more junk")
    assert conn.process() is True  # discarded
    client.shutdown(socket.SHUT_WR)
    assert conn.process() is False


def test_close_after_response_without_lingering(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits(), keepalive=0))
    client.sendall(get("/"))
    assert conn.process() is False  # nothing left unread: closed at once
    reader = Client(client)
    assert reader.response().header("connection") == "close"
    assert reader.at_eof()


def test_close_with_unread_body_lingers(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits(), keepalive=0))
    client.sendall(post("/", b"x" * 10)[:-5])
    assert conn.process() is True  # answered; the rest of the body may still be on its way
    reader = Client(client)
    assert reader.response().status == 200
    assert reader.at_eof()
    client.sendall(b"xxxxx")
    assert conn.process() is True
    client.shutdown(socket.SHUT_WR)
    assert conn.process() is False


def test_client_closing_idle_connection(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    client.close()
    assert conn.process() is False


# -- hooks, counters, logs ---------------------------------------------------------------------


def test_hooks_and_access_log(serve, client_of, caplog):
    seen = []

    def pre(req, environ):
        seen.append(("pre", req.method, environ["PATH_INFO"]))

    def post_(req, environ, resp):
        seen.append(("post", resp.status))
        assert resp.status_code == int(resp.status[:3])

    def access(environ, status, headers, sent, seconds):
        seen.append(("access", environ["PATH_INFO"], status, headers[0], sent, seconds >= 0))

    def broken_hook(req, environ):
        raise RuntimeError("hook failed")

    worker = serve(pre_request=pre, post_request=post_, access_log=access)
    client = client_of(worker)
    client.request(get("/hello"))
    client.request(get("/crash"))
    client.request(get("/next"))  # hooks run after each response: one round trip later they are done
    assert seen[:3] == [
        ("pre", "GET", "/hello"),
        ("post", "200 OK"),
        ("access", "/hello", "200 OK", ("Content-Type", "text/plain"), 13, True),
    ]
    assert seen[3:5] == [("pre", "GET", "/crash"), ("post", "500 Internal Server Error")]

    client = client_of(serve(pre_request=broken_hook))
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        assert client.request(get("/hello")).status == 200
    assert "hook failed" in caplog.text


def test_wsgi_errors_reach_the_error_log(serve, client_of, caplog):
    def app(environ, start_response):
        errors = environ["wsgi.errors"]
        errors.write("line one\n")
        errors.writelines(["line two\n"])
        start_response("200 OK", [])
        return []

    client = client_of(serve(app))
    with caplog.at_level(logging.ERROR, logger="pasteserve.error"):
        client.request(get("/"))
        client.request(get("/"))  # a response round trip later, the first request is finished
    assert [r.getMessage() for r in caplog.records].count("line one\nline two") >= 1


def test_unix_socket_peer(serve):
    worker = serve()
    ours, theirs = socket.socketpair()
    worker.adopt(ours, "")
    client = Client(theirs)
    try:
        env = json.loads(client.request(get("/environ", version="1.1")).body)
        assert env["REMOTE_ADDR"] == "" and "REMOTE_PORT" not in env
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("test", "80")
        # Unix peers are trusted for the scheme headers, like a local front proxy.
        env = json.loads(client.request(get("/environ", "X-Forwarded-Proto: https")).body)
        assert env["wsgi.url_scheme"] == "https"
    finally:
        client.close()


# -- PROXY protocol ----------------------------------------------------------------------------------

def proxy_ctx() -> ServerContext:
    from pasteserve.allowlist import AllowList

    # A unix socketpair's peer is allowed, as a local front proxy would be.
    return ServerContext(app=apps.echo_environ, limits=Limits(), proxy_protocol="v1",
                         proxy_allow=AllowList(["127.0.0.1"]))


def test_a_proxied_connection_carries_its_client_to_a_sibling(pair):
    server, client = pair
    conn = Connection(server, "", proxy_ctx())
    client.sendall(b"PROXY TCP4 192.0.2.1 1")
    assert conn.process() is True
    assert not conn.idle   # part of the header lives in this process
    client.sendall(b"92.0.2.2 1234 80\r\n" + get("/"))
    assert conn.process() is True
    environ = json.loads(Client(client).response().body)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("192.0.2.1", "1234")
    # Idle again: what a sibling given the descriptor needs besides it is the header's client.
    assert conn.idle
    note = conn.handoff_note()
    # The sibling's connection over the same socket: no header again, the same client.
    sibling = Connection(server, "", proxy_ctx())
    sibling.resume(note)
    client.sendall(get("/"))
    assert sibling.process() is True
    environ = json.loads(Client(client).response().body)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("192.0.2.1", "1234")
    sibling.close()


def test_eof_before_the_proxy_header_closes_silently(pair):
    server, client = pair
    conn = Connection(server, "", proxy_ctx())
    client.sendall(b"PROXY TCP4")
    assert conn.process() is True
    client.shutdown(socket.SHUT_WR)
    assert conn.process() is False
    assert client.recv(100) == b""


def test_a_plain_connection_resumes_as_it_was(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=apps.hello, limits=Limits()))
    client.sendall(get("/"))
    conn.process()
    Client(client).response()
    assert conn.idle and conn.handoff_note() == b"c"
    # A sibling's connection to a peer that owes a PROXY header still waits for it.
    owed = Connection(server, "", proxy_ctx())
    owed.resume(b"c")
    client.sendall(get("/"))
    owed.process()
    assert Client(client).response().status == 400


def taking_app(environ, start_response):
    """Answers on the socket itself, then says so as Gunicorn apps do (simple-websocket)."""
    if environ["PATH_INFO"] != "/ws":
        return apps.hello(environ, start_response)
    environ["gunicorn.socket"].sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\nmine")
    raise StopIteration


def test_taken_over_connection_is_left_to_the_app(pair):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=taking_app, limits=Limits(), takeover=True))
    client.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert conn.process() is False   # the worker forgets it
    assert client.recv(100) == b"HTTP/1.1 101 Switching Protocols\r\n\r\nmine"
    assert not readable(client, 0.2)  # we wrote nothing after the app
    conn.close()
    assert server.fileno() != -1      # and did not close the app's socket
    assert server.gettimeout() is None


def test_without_takeover_websocket_upgrades_are_refused_before_the_app(pair, caplog):
    server, client = pair
    conn = Connection(server, "", ServerContext(app=taking_app, limits=Limits()))
    client.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                   b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with caplog.at_level(logging.WARNING, logger="pasteserve.error"):
        assert conn.process() is True
    reader = Client(client)
    resp = reader.response()
    assert resp.status == 400 and b"worker_class = eventlet" in resp.body
    assert reader.response().body == b"Hello, World!"   # the next request, same connection
    assert "Refused a websocket upgrade" in caplog.text
    conn.close()


def test_tcp_connections_send_without_delay_and_unix_ones_need_no_option():
    ctx = ServerContext(app=apps.hello, limits=Limits())
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()) as client:
        server_side, peer = listener.accept()
        with server_side:
            conn = Connection(server_side, peer, ctx)
            assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            conn.close()
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        Connection(left, "", ctx).close()


def test_environ_template_is_shared_until_a_setting_changes():
    ctx = ServerContext(app=lambda environ, start_response: [], limits=Limits())
    first = ctx.environ_template()
    assert ctx.environ_template() is first
    ctx.multithread = True   # the threaded and eventlet workers set it after making the context
    second = ctx.environ_template()
    assert second is not first and second.common["wsgi.multithread"] is True
    ctx.root_path = "/app/"
    assert ctx.environ_template().common["SCRIPT_NAME"] == "/app"
