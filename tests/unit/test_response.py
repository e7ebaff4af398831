"""Response serialisation: status lines, header validation, head rendering, chunks, error pages."""

from __future__ import annotations

import email.utils

import pytest

from pasteserve.http import response as r


class TestStatusLine:
    def test_common_status(self):
        assert r.status_line("200 OK") == (200, b"HTTP/1.1 200 OK\r\n")

    def test_empty_reason_is_allowed(self):
        assert r.status_line("404 ") == (404, b"HTTP/1.1 404 \r\n")

    def test_latin1_reason(self):
        assert r.status_line("200 Tr\xe8s bien") == (200, b"HTTP/1.1 200 Tr\xe8s bien\r\n")

    @pytest.mark.parametrize(
        "status",
        ["200", "200OK", "OK 200", "20 OK", "2000 OK", "099 Low", "200 OK\r\nX-Injected: 1", "200 a\nb",
         "200 nul\x00", "200 \u20ac", "\uff12\uff10\uff10 fullwidth digits"],
    )
    def test_invalid_status_is_a_response_error(self, status):
        with pytest.raises(r.ResponseError):
            r.status_line(status)

    def test_status_must_be_str(self):
        with pytest.raises(r.ResponseError):
            r.status_line(b"200 OK")
        with pytest.raises(r.ResponseError):
            r.status_line(["200 OK"])

    def test_response_error_is_an_assertion_error(self):
        # PEP 3333 / wsgiref report app mistakes as AssertionError.
        assert issubclass(r.ResponseError, AssertionError)


class TestCheckHeaders:
    def test_renders_in_order(self):
        h = r.check_headers([("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")])
        assert h.block == b"Content-Type: text/plain\r\nX-A: 1\r\nX-A: 2\r\n"
        assert h.content_length is None
        assert not h.has_date and not h.has_server

    def test_content_length_date_server_are_noticed(self):
        h = r.check_headers([("content-length", " 12 "), ("DATE", "x"), ("Server", "app")])
        assert h.content_length == 12
        assert h.has_date and h.has_server

    def test_empty_list(self):
        h = r.check_headers([])
        assert h.block == b"" and h.content_length is None

    def test_tab_and_obs_text_in_value_are_allowed(self):
        assert r.check_headers([("X", "a\tb \xe9")]).block == b"X: a\tb \xe9\r\n"

    @pytest.mark.parametrize(
        "name",
        ["keep-alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Authenticate",
         "proxy-authorization"],
    )
    def test_hop_by_hop_is_refused(self, name):
        with pytest.raises(r.ResponseError, match="hop-by-hop"):
            r.check_headers([(name, "x")])

    @pytest.mark.parametrize("value", ["keep-alive", "upgrade", "x"])
    def test_connection_other_than_close_is_refused(self, value):
        with pytest.raises(r.ResponseError, match="hop-by-hop"):
            r.check_headers([("Connection", value)])

    @pytest.mark.parametrize("value", ["close", " Close "])
    def test_connection_close_closes_and_leaves_framing_to_the_server(self, value):
        h = r.check_headers([("X", "1"), ("Connection", value)])
        assert h.close and h.block == b"X: 1\r\n"
        assert not r.check_headers([("X", "1")]).close

    @pytest.mark.parametrize("name", ["", "X Y", "X:Y", "X\r\nY", "X\x00", "\xe9t\xe9", "X(Y)"])
    def test_invalid_names(self, name):
        with pytest.raises(r.ResponseError):
            r.check_headers([(name, "v")])

    @pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x", "a\nb", "a\rb", "nul\x00", "del\x7f", "bell\x07",
                                       "\u20ac"])
    def test_invalid_values(self, value):
        with pytest.raises(r.ResponseError):
            r.check_headers([("X-Ok", value)])

    @pytest.mark.parametrize(
        "headers",
        [("X", "v"), [["X", "v"]], [("X", "v", "w")], [(b"X", "v")], [("X", b"v")], [("X", 1)]],
    )
    def test_wrong_types(self, headers):
        with pytest.raises(r.ResponseError):
            r.check_headers(headers)

    @pytest.mark.parametrize("value", ["", "-1", "1.5", "0x10", "1 2", "\u0661"])
    def test_bad_content_length(self, value):
        with pytest.raises(r.ResponseError):
            r.check_headers([("Content-Length", value)])

    def test_two_content_lengths(self):
        with pytest.raises(r.ResponseError):
            r.check_headers([("Content-Length", "1"), ("Content-Length", "1")])

    def test_a_content_length_seen_before_is_still_counted_and_typed(self):
        assert r.check_headers([("Content-Length", "7")]).content_length == 7
        h = r.check_headers([("X", "1"), ("Content-Length", "7")])   # rendered from the cache now
        assert (h.content_length, h.block) == (7, b"X: 1\r\nContent-Length: 7\r\n")
        with pytest.raises(r.ResponseError, match="more than one Content-Length"):
            r.check_headers([("Content-Length", "7"), ("Content-Length", "7")])
        with pytest.raises(r.ResponseError, match="more than one Content-Length"):
            r.check_headers([("Content-Length", "8"), ("Content-Length", "7")])

        class Text(str):
            pass

        with pytest.raises(r.ResponseError):
            r.check_headers([("Content-Length", Text("7"))])

    def test_cached_name_is_still_checked_for_hop_by_hop(self):
        r.check_headers([("X-Cached", "1")])
        with pytest.raises(r.ResponseError):
            r.check_headers([("X-Cached", "1"), ("Upgrade", "h2c")])

    def test_an_item_checked_before_vouches_only_for_itself(self):
        class Text(str):
            pass

        first = r.check_headers([("X-Seen", "yes"), ("Content-Length", "3")])
        again = r.check_headers([("X-Seen", "yes"), ("Content-Length", "3")])
        assert again.block == first.block == b"X-Seen: yes\r\nContent-Length: 3\r\n"
        assert again.content_length == 3
        for item in [(Text("X-Seen"), "yes"), ("X-Seen", Text("yes")), ("X-Seen", ["yes"])]:
            with pytest.raises(r.ResponseError):
                r.check_headers([item])
        with pytest.raises(r.ResponseError):  # Content-Length is checked every time
            r.check_headers([("X-Seen", "yes"), ("Content-Length", "3"), ("Content-Length", "3")])


class TestDate:
    def test_format(self):
        line = r.date_line(784111777)
        assert line == b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

    def test_cached_per_second(self):
        first = r.date_line(1_000_000_000.1)
        assert r.date_line(1_000_000_000.9) is first
        assert r.date_line(1_000_000_001.0) != first

    def test_now_parses_as_http_date(self):
        value = r.date_line()[len(b"Date: "):-2].decode()
        assert email.utils.parsedate_to_datetime(value).tzname() == "UTC"


class TestRenderHead:
    def test_adds_server_and_date(self):
        h = r.check_headers([("Content-Type", "text/plain")])
        head = r.render_head(b"HTTP/1.1 200 OK\r\n", r.server_line("test/1"), h, b"Content-Length: 2\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert lines[1] == b"Server: test/1"
        assert lines[2].startswith(b"Date: ")
        assert lines[3:] == [b"Content-Type: text/plain", b"Content-Length: 2", b"", b""]

    def test_app_date_and_server_win(self):
        h = r.check_headers([("Date", "yesterday"), ("Server", "mine")])
        head = r.render_head(b"HTTP/1.1 200 OK\r\n", r.server_line("test/1"), h, b"")
        assert head.count(b"Date:") == 1 and b"Date: yesterday\r\n" in head
        assert head.count(b"Server:") == 1 and b"Server: mine\r\n" in head

    def test_empty_server_software_sends_no_server_header(self):
        assert r.server_line("") == b""

    def test_server_software_is_validated(self):
        with pytest.raises(r.ResponseError):
            r.server_line("evil\r\nX: y")


class TestChunks:
    def test_chunk(self):
        assert r.chunk(b"hello") == b"5\r\nhello\r\n"
        assert r.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"

    def test_last_chunk(self):
        assert r.LAST_CHUNK == b"0\r\n\r\n"


class TestBodyForbidden:
    @pytest.mark.parametrize("method,code,expected", [
        ("GET", 200, False), ("HEAD", 200, True), ("GET", 204, True), ("GET", 304, True),
        ("GET", 101, True), ("POST", 205, False), ("GET", 404, False),
    ])
    def test_cases(self, method, code, expected):
        assert r.body_forbidden(method, code) is expected


class TestErrorResponse:
    def test_complete_response(self):
        data = r.error_response(400, "Bad Request", "invalid chunk size", b"Server: s\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 400 Bad Request"
        assert b"Server: s" in lines
        assert b"Connection: close" in lines
        assert b"Content-Type: text/plain; charset=utf-8" in lines
        assert b"Content-Length: %d" % len(body) in lines
        assert body == b"400 Bad Request\ninvalid chunk size\n"

    def test_keep_alive_variant(self):
        assert b"Connection:" not in r.error_response(500, "Internal Server Error", close=False)

    def test_head_only(self):
        data = r.error_response(500, "Internal Server Error", "x", head_only=True)
        assert data.endswith(b"\r\n\r\n")
        assert b"Content-Length: 28\r\n" in data
        assert data.count(b"\r\n\r\n") == 1

    def test_detail_is_short_and_ascii(self):
        body = r.error_page(400, "Bad Request", "\xff\u20ac" + "a" * 500)
        assert body.isascii()
        assert len(body) < 260
