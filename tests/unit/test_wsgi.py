"""The PEP 3333 adapter: wsgi.input, wsgi.errors, file_wrapper, environ building.

The end-to-end checks run the shared test apps behind ``webtest.lint.middleware`` on a
real connection, so PEP 3333 conformance of our environ and start_response is checked
by an independent implementation.
"""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest
from webtest.lint import middleware as lint

from pasteserve.http.errors import BadRequest, ProtocolError
from pasteserve.http.parser import Limits, Request, RequestParser
from pasteserve.proxy import ProxyHeaders
from pasteserve.wsgi import EnvironBuilder, EnvironTemplate, ErrorStream, FileWrapper, Input
from tests import apps
from tests.unit.test_connection import client_of, get, post, serve  # noqa: F401 (fixtures)

# -- wsgi.input ---------------------------------------------------------------------------------


class Source:
    """A pull() callable over fixed pieces, recording how often it was called."""

    def __init__(self, *pieces: bytes, error: Exception | None = None) -> None:
        self.pieces = list(pieces)
        self.error = error
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.pieces:
            return self.pieces.pop(0)
        if self.error is not None:
            raise self.error
        return b""


def make_input(*pieces: bytes, length: int | None = None, **kw) -> Input:
    if length is None and "chunked" not in kw:
        length = sum(map(len, pieces))
    kw.pop("chunked", None)
    return Input(Source(*pieces, **kw), length)


class TestInputRead:
    def test_read_all_of_one_piece_returns_it_uncopied(self):
        piece = b"hello world"
        assert make_input(piece).read() is piece

    def test_read_all_of_many_pieces(self):
        inp = make_input(b"ab", b"cd", b"ef")
        assert inp.read() == b"abcdef"
        assert inp.read() == b""
        assert inp.done

    def test_read_none_means_all(self):
        assert make_input(b"ab", b"cd").read(None) == b"abcd"

    def test_read_sizes_across_pieces(self):
        inp = make_input(b"abc", b"defg", b"h")
        assert inp.read(2) == b"ab"
        assert inp.read(4) == b"cdef"
        assert inp.read(100) == b"gh"
        assert inp.read(1) == b""

    def test_read_zero_does_not_pull(self):
        source = Source(b"abc")
        inp = Input(source, 3)
        assert inp.read(0) == b""
        assert source.calls == 0

    def test_empty_body(self):
        inp = make_input()
        assert inp.read() == b"" and inp.readline() == b"" and inp.readlines() == [] and list(inp) == []

    def test_an_empty_body_is_never_pulled(self):
        # The connection ends a request without a body itself; wsgi.input must not ask it for bytes.
        source = Source()
        inp = Input(source, 0)
        assert inp.done and inp.received and not inp.blocks_reuse(0)
        assert inp.read() == b"" and inp.readline() == b"" and inp.read(5) == b""
        assert inp.drain(0)
        assert source.calls == 0

    def test_read_never_pulls_past_the_end(self):
        source = Source(b"ab")
        inp = Input(source, 2)
        assert inp.read(10) == b"ab"
        assert inp.read(10) == b""
        assert source.calls == 1  # the piece; the end of a Content-Length body is the connection's to take

    def test_read_after_partial_buffer(self):
        inp = make_input(b"line1\nrest", b"more")
        assert inp.readline() == b"line1\n"
        assert inp.read() == b"restmore"


class TestInputReadline:
    def test_lines_across_pieces(self):
        inp = make_input(b"a", b"b\ncd", b"\n", b"tail")
        assert [inp.readline(), inp.readline(), inp.readline(), inp.readline()] == [b"ab\n", b"cd\n", b"tail", b""]

    @pytest.mark.parametrize("size,expected", [
        (0, []),
        (1, [b"a", b"b", b"c", b"\n", b"d", b"e"]),
        (2, [b"ab", b"c\n", b"de"]),
        (4, [b"abc\n", b"de"]),
        (100, [b"abc\n", b"de"]),
        (-1, [b"abc\n", b"de"]),
        (None, [b"abc\n", b"de"]),
    ])
    def test_sizes(self, size, expected):
        inp = make_input(b"ab", b"c\nd", b"e")
        lines = []
        while True:
            line = inp.readline(size)
            lines.append(line)
            if not line:
                break
        assert lines[:-1] == expected

    def test_readlines_and_hint(self):
        assert make_input(b"a\nb\n", b"c\n").readlines() == [b"a\n", b"b\n", b"c\n"]
        assert make_input(b"a\nb\n", b"c\n").readlines(3) == [b"a\n", b"b\n"]
        assert make_input(b"a\nb\n").readlines(0) == [b"a\n", b"b\n"]

    def test_iteration(self):
        assert list(make_input(b"x\ny", b"\nz")) == [b"x\n", b"y\n", b"z"]

    def test_long_line_in_many_pieces(self):
        pieces = [b"x" * 1000] * 100 + [b"\n"]
        assert make_input(*pieces).readline() == b"x" * 100000 + b"\n"


class TestInputErrors:
    def test_error_is_recorded_and_raised_again(self):
        error = BadRequest("invalid chunk size")
        inp = make_input(b"ok", error=error, chunked=True)
        with pytest.raises(BadRequest):
            inp.read()
        assert inp.error is error
        with pytest.raises(BadRequest):
            inp.read(1)
        assert inp.blocks_reuse(65536)

    def test_first_read_callback_runs_once(self):
        calls = []
        inp = make_input(b"ab", b"cd")
        inp.on_first_read = lambda: calls.append(1)
        inp.read(0)
        assert calls == []
        assert inp.blocks_reuse(65536)  # the client may be waiting for 100 Continue
        inp.read(1)
        inp.read()
        assert calls == [1]
        assert not inp.blocks_reuse(65536)


class TestDrain:
    def test_drain_small_remainder(self):
        inp = make_input(b"ab", b"cd")
        inp.read(1)
        assert inp.drain(10)
        assert inp.done

    def test_refuses_known_large_remainder_without_reading(self):
        source = Source(b"x" * 100)
        inp = Input(source, 100)
        assert inp.blocks_reuse(50)
        assert not inp.drain(50)
        assert source.calls == 0

    def test_gives_up_on_large_chunked_body(self):
        inp = Input(Source(*[b"x" * 10] * 10), None)
        assert not inp.blocks_reuse(50)
        assert not inp.drain(50)

    def test_body_error_while_draining(self):
        assert not Input(Source(b"x", error=BadRequest("bad")), None).drain(100)

    def test_waiting_for_100_continue_is_not_drained(self):
        source = Source(b"x")
        inp = Input(source, 1)
        inp.on_first_read = lambda: None
        assert not inp.drain(100)
        assert source.calls == 0


# -- wsgi.errors and file_wrapper --------------------------------------------------------------------


def test_error_stream_groups_writes_until_flush(caplog):
    stream = ErrorStream(logging.getLogger("pasteserve.test.errors"))
    with caplog.at_level(logging.ERROR, logger="pasteserve.test.errors"):
        stream.write("Traceback:\n")
        stream.writelines(["  line 1\n", "  line 2\n"])
        assert caplog.records == []
        stream.flush()
        stream.flush()
    assert [r.getMessage() for r in caplog.records] == ["Traceback:\n  line 1\n  line 2"]


def test_error_stream_flushes_long_text_early(caplog):
    stream = ErrorStream(logging.getLogger("pasteserve.test.errors"))
    with caplog.at_level(logging.ERROR, logger="pasteserve.test.errors"):
        stream.write("x" * 10000)
    assert len(caplog.records) == 1


def test_file_wrapper_iterates_blocks_and_closes():
    f = io.BytesIO(b"abcdefg")
    wrapper = FileWrapper(f, 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    wrapper.close()
    assert f.closed


def test_file_wrapper_without_close():
    class Reader:
        def read(self, n):
            return b""

    wrapper = FileWrapper(Reader())
    assert list(wrapper) == []
    wrapper.close()


# -- environ --------------------------------------------------------------------------------------


def parse(raw: bytes) -> Request:
    parser = RequestParser(Limits())
    parser.feed(raw)
    req = parser.next_event()
    assert isinstance(req, Request)
    return req


@pytest.fixture
def tcp_pair():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, peer = listener.accept()
    listener.close()
    yield server, peer
    server.close()
    client.close()


def build(sock: socket.socket, peer, raw: bytes, **kw) -> dict:
    return EnvironBuilder(sock, peer, EnvironTemplate(**kw)).build(parse(raw), make_input())


class TestEnviron:
    def test_basic_keys(self, tcp_pair):
        sock, peer = tcp_pair
        env = build(sock, peer, get("/a%20b/c?x=1&y=%20", "Content-Type: text/plain", "Content-Length: 0",
                                    "X-Thing: 1", method="POST"), server_software="test/1")
        assert env["REQUEST_METHOD"] == "POST"
        assert env["SCRIPT_NAME"] == ""
        assert env["PATH_INFO"] == "/a b/c"
        assert env["QUERY_STRING"] == "x=1&y=%20"
        assert env["RAW_URI"] == "/a%20b/c?x=1&y=%20"
        assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "0"
        assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
        assert env["HTTP_X_THING"] == "1" and env["HTTP_HOST"] == "test"
        assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert (env["SERVER_NAME"], env["SERVER_PORT"]) == sock.getsockname()[:1] + (str(sock.getsockname()[1]),)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (peer[0], str(peer[1]))
        assert env["SERVER_SOFTWARE"] == "test/1"
        assert env["wsgi.version"] == (1, 0) and env["wsgi.url_scheme"] == "http"
        assert env["wsgi.multithread"] is False and env["wsgi.multiprocess"] is True
        assert env["wsgi.run_once"] is False and env["wsgi.input_terminated"] is True
        assert env["wsgi.file_wrapper"] is FileWrapper
        assert isinstance(env["wsgi.input"], Input)

    def test_path_is_decoded_bytes_as_latin1(self, tcp_pair):
        env = build(*tcp_pair, get("/caf%C3%A9/%2F/%e9"))
        assert env["PATH_INFO"] == "/caf\xc3\xa9///\xe9"
        assert env["PATH_INFO"].encode("latin-1").decode("utf-8", "replace").startswith("/café")

    def test_http10(self, tcp_pair):
        assert build(*tcp_pair, get("/", version="1.0"))["SERVER_PROTOCOL"] == "HTTP/1.0"

    def test_absolute_form(self, tcp_pair):
        env = build(*tcp_pair, b"GET http://example.com:8080/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/p/q", "z=1")
        assert env["RAW_URI"] == "http://example.com:8080/p/q?z=1"
        env = build(*tcp_pair, b"GET http://example.com?z HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/", "z")

    def test_asterisk_form_has_empty_path_info(self, tcp_pair):
        env = build(*tcp_pair, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (env["PATH_INFO"], env["RAW_URI"]) == ("", "*")

    def test_repeated_headers_are_joined(self, tcp_pair):
        env = build(*tcp_pair, get("/", "Accept: a", "accept: b", "Cookie: x=1", "Cookie: y=2"))
        assert env["HTTP_ACCEPT"] == "a,b"
        assert env["HTTP_COOKIE"] == "x=1; y=2"

    def test_header_names_with_underscore_are_dropped(self, tcp_pair):
        env = build(*tcp_pair, get("/", "X-User: real", "X_User: spoofed"))
        assert env["HTTP_X_USER"] == "real"

    @pytest.mark.parametrize("root,target,script,path", [
        ("/app", "/app/x", "/app", "/x"),
        ("/app/", "/app/x", "/app", "/x"),
        ("/app", "/app", "/app", ""),
        ("/app", "/application", "/app", "/application"),
        ("/app", "/other", "/app", "/other"),
        ("", "/x", "", "/x"),
    ])
    def test_root_path(self, tcp_pair, root, target, script, path):
        env = build(*tcp_pair, get(target), root_path=root)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, path)

    def test_scheme_from_trusted_peer(self, tcp_pair):
        sock, peer = tcp_pair
        kw = dict(forwarded_allow_ips=frozenset({"127.0.0.1"}),
                  secure_scheme_headers={"X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"})
        assert build(sock, peer, get("/", "X-Forwarded-Proto: HTTPS"), **kw)["wsgi.url_scheme"] == "https"
        assert build(sock, peer, get("/", "X-Forwarded-Proto: http"), **kw)["wsgi.url_scheme"] == "http"
        assert build(sock, peer, get("/", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: on"),
                     **kw)["wsgi.url_scheme"] == "https"
        with pytest.raises(ProtocolError) as info:
            build(sock, peer, get("/", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"), **kw)
        assert info.value.status == 400

    def test_scheme_headers_ignored_from_untrusted_peer(self, tcp_pair):
        sock, peer = tcp_pair
        kw = dict(forwarded_allow_ips=frozenset({"10.0.0.1"}), secure_scheme_headers={"X-FORWARDED-PROTO": "https"})
        assert build(sock, peer, get("/", "X-Forwarded-Proto: https"), **kw)["wsgi.url_scheme"] == "http"
        kw["forwarded_allow_ips"] = frozenset({"*"})
        assert build(sock, peer, get("/", "X-Forwarded-Proto: https"), **kw)["wsgi.url_scheme"] == "https"

    def test_tls_listener_scheme(self, tcp_pair):
        assert build(*tcp_pair, get("/"), url_scheme="https")["wsgi.url_scheme"] == "https"

    @pytest.mark.parametrize("host,name,port", [
        ("example.com", "example.com", "80"),
        ("example.com:8000", "example.com", "8000"),
        ("[::1]:8443", "::1", "8443"),
        ("[::1]", "::1", "80"),
    ])
    def test_unix_socket_server_name_from_host(self, host, name, port):
        a, b = socket.socketpair()
        try:
            env = EnvironBuilder(a, "").build(parse(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()), make_input())
            assert (env["SERVER_NAME"], env["SERVER_PORT"], env["REMOTE_ADDR"]) == (name, port, "")
            assert "REMOTE_PORT" not in env
        finally:
            a.close()
            b.close()

    def test_unix_socket_peer_is_a_trusted_proxy_and_its_port_wins(self):
        a, b = socket.socketpair()
        proxy = ProxyHeaders(frozenset({"x-forwarded-for", "x-forwarded-port"}))
        try:
            env = EnvironBuilder(a, "", EnvironTemplate(proxy_headers=proxy)).build(parse(
                b"GET / HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Port: 8443\r\n\r\n"),
                make_input())
            assert (env["REMOTE_ADDR"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("192.0.2.9", "shop", "8443")
        finally:
            a.close()
            b.close()

    def test_proxy_headers_from_a_trusted_network(self, tcp_pair):
        sock, peer = tcp_pair
        kw = dict(proxy_headers=ProxyHeaders(frozenset({"x-forwarded-for"}), clear_untrusted=True))
        raw = get("/", "X-Forwarded-For: 192.0.2.9")
        assert build(sock, peer, raw, forwarded_allow_ips={"127.0.0.0/8"}, **kw)["REMOTE_ADDR"] == "192.0.2.9"
        env = build(sock, peer, raw, forwarded_allow_ips={"10.0.0.0/8"}, **kw)
        assert (env["REMOTE_ADDR"], "HTTP_X_FORWARDED_FOR" in env) == ("127.0.0.1", False)

    def test_unix_socket_without_host(self):
        a, b = socket.socketpair()
        try:
            env = EnvironBuilder(a, "", EnvironTemplate(url_scheme="https")).build(parse(b"GET / HTTP/1.0\r\n\r\n"), make_input())
            assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", "443")
        finally:
            a.close()
            b.close()

    def test_each_request_gets_a_fresh_environ(self, tcp_pair):
        builder = EnvironBuilder(*tcp_pair)
        first = builder.build(parse(get("/", "X-A: 1")), make_input())
        first["mutated"] = True
        second = builder.build(parse(get("/")), make_input())
        assert "mutated" not in second and "HTTP_X_A" not in second


# -- end to end, behind webtest's PEP 3333 lint ---------------------------------------------------


@pytest.fixture
def lint_server(serve, client_of, caplog):  # noqa: F811
    caplog.set_level(logging.ERROR, logger="pasteserve.error")
    worker = serve(lambda e, s: lint(apps.router)(e, s))
    client = client_of(worker)
    yield client
    # An AssertionError from lint becomes a 500 with a logged traceback: there must be none.
    assert not [r for r in caplog.records if r.name == "pasteserve.error"], caplog.text


def test_lint_environ(lint_server):
    resp = lint_server.request(get("/environ?q=1", "X-Forwarded-For: 1.2.3.4"))
    assert resp.status == 200
    env = json.loads(resp.body)
    assert env["PATH_INFO"] == "/environ" and env["QUERY_STRING"] == "q=1"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"


def test_lint_echo_content_length(lint_server):
    assert lint_server.request(post("/echo", b"some body")).body == b"some body"


def test_lint_echo_chunked(lint_server):
    assert lint_server.request(post("/echo", b"chunked body", chunked=True)).body == b"chunked body"


@pytest.mark.parametrize("size,expected", [(-1, ["ab\n", "cd\n", "e"]), (2, ["ab", "\n", "cd", "\n", "e"])])
def test_lint_readline(lint_server, size, expected):
    resp = lint_server.request(post(f"/readlines?size={size}", b"ab\ncd\ne", chunked=True))
    assert json.loads(resp.body) == expected


@pytest.mark.parametrize("path", ["/hello", "/stream", "/write", "/file", "/status?code=304", "/large?size=100000"])
def test_lint_apps(lint_server, path):
    assert lint_server.request(get(path)).status in (200, 304)


def test_file_wrapper_over_a_non_file_falls_back_to_iteration(serve, client_of):  # noqa: F811
    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory " * 100), 7)

    client = client_of(serve(app))
    resp = client.request(get("/"))
    assert resp.body == b"in memory " * 100
    assert resp.header("transfer-encoding") == "chunked"
