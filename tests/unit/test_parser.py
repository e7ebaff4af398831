"""The request parser, fed whole, one byte at a time and in seeded random cuts."""

from __future__ import annotations

import random

import pytest

from pasteserve.http.errors import (
    BadRequest,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    IncompleteMessage,
    NotImplementedCoding,
    PayloadTooLarge,
    ProtocolError,
    URITooLong,
    VersionNotSupported,
)
from pasteserve.http.parser import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Limits,
    Request,
    RequestParser,
)

# "head-first" is "whole" read the way a connection reads: whole_head() before feed().
STYLES = ("whole", "head-first", "bytewise", "random")


@pytest.fixture(params=STYLES)
def style(request: pytest.FixtureRequest) -> str:
    return request.param


def cut(data: bytes, style: str, seed: int = 0) -> list[bytes]:
    """``data`` split the way ``style`` says (random cuts are seeded)."""
    if style in ("whole", "head-first"):
        return [data]
    if style == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed * 7919 + len(data))
    cuts = sorted(rng.sample(range(1, len(data)), min(max(len(data) - 1, 0), 8)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def merge(events: list) -> list:
    """Join adjacent Data events: how the body is cut depends on the feeding."""
    merged: list = []
    for event in events:
        if isinstance(event, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def parse(data: bytes, style: str = "whole", limits: Limits = Limits(), eof: bool = True) -> list:
    """Every event ``data`` produces, Data merged; NEED_DATA left out.

    With ``eof`` the peer closes after the last byte. A ProtocolError
    propagates.
    """
    parser = RequestParser(limits)
    events: list = []
    for piece in [*cut(data, style), *([b""] if eof else [])]:
        head = parser.whole_head(piece) if style == "head-first" else None
        if head is None:
            parser.feed(piece)
        else:
            events.append(head)
        while (event := parser.next_event()) is not NEED_DATA:
            if isinstance(event, Data):
                assert event.data, "empty Data event"
            events.append(event)
            if event is CLOSED:
                return merge(events)
    return merge(events)


def req(
    method: str = "GET",
    target: str = "/",
    version: tuple[int, int] = (1, 1),
    headers: list[tuple[str, str]] | None = None,
    content_length: int | None = None,
    chunked: bool = False,
    keep_alive: bool | None = None,
    expect_continue: bool = False,
) -> Request:
    if keep_alive is None:
        keep_alive = version != (1, 0)
    return Request(
        method, target, version, headers or [], content_length, chunked, keep_alive, expect_continue
    )


END = EndOfMessage([])

# --- good requests ----------------------------------------------------------

GOOD = [
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", [req(), END], id="minimal"),
    pytest.param(
        b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        [req(target="/a?b=c", headers=[("HOST", "example.com"), ("ACCEPT", "*/*")]), END],
        id="headers-in-order",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nx-Mixed_Case: v\r\n\r\n",
        [req(headers=[("X-MIXED_CASE", "v")]), END],
        id="names-upper-cased-underscore-kept",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nA: \t v a l \t \r\nB:\r\nC:x\r\n\r\n",
        [req(headers=[("A", "v a l"), ("B", ""), ("C", "x")]), END],
        id="ows-trimmed",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
        [req(headers=[("X", "caf\xc3\xa9 \x80\xff")]), END],
        id="obs-text-latin-1",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nX: a\x0bb\r\n\r\n".replace(b"\x0b", b"\t"),
        [req(headers=[("X", "a\tb")]), END],
        id="inner-htab",
    ),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", [req(version=(1, 0)), END], id="http10-closes"),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        [req(version=(1, 0), headers=[("CONNECTION", "Keep-Alive")], keep_alive=True), END],
        id="http10-keep-alive",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n",
        [req(headers=[("CONNECTION", "keep-alive, CLOSE")], keep_alive=False), END],
        id="close-wins",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
        [req(headers=[("CONNECTION", "upgrade"), ("CONNECTION", "close")], keep_alive=False), END],
        id="close-in-second-connection-field",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: keep-alive,close\r\n\r\n",
        [req(version=(1, 0), headers=[("CONNECTION", "keep-alive,close")]), END],
        id="http10-close-wins",
    ),
    pytest.param(b"GET / HTTP/1.7\r\n\r\n", [req(), END], id="http1x-as-11"),
    pytest.param(b"\r\nGET / HTTP/1.1\r\n\r\n", [req(), END], id="one-leading-crlf"),
    pytest.param(b"-BLARGH /x HTTP/1.1\r\n\r\n", [req("-BLARGH", "/x"), END], id="token-method"),
    pytest.param(b"get / HTTP/1.1\r\n\r\n", [req("get"), END], id="method-case-kept"),
    pytest.param(
        b'GET /with_"quotes"?a=b#frag HTTP/1.1\r\n\r\n',
        [req(target='/with_"quotes"?a=b#frag'), END],
        id="target-any-vchar",
    ),
    pytest.param(b"GET //x HTTP/1.1\r\n\r\n", [req(target="//x"), END], id="double-slash"),
    pytest.param(
        b"GET http://u:p@example.com:80/x?y HTTP/1.1\r\n\r\n",
        [req(target="http://u:p@example.com:80/x?y"), END],
        id="absolute-form",
    ),
    pytest.param(
        b"GET https://[::1]:8443 HTTP/1.1\r\n\r\n",
        [req(target="https://[::1]:8443"), END],
        id="absolute-form-ipv6-no-path",
    ),
    pytest.param(b"OPTIONS * HTTP/1.1\r\n\r\n", [req("OPTIONS", "*"), END], id="asterisk-form"),
    pytest.param(
        b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        [req("CONNECT", "example.com:443"), END],
        id="authority-form",
    ),
    pytest.param(
        b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n",
        [req("CONNECT", "[2001:db8::1]:443"), END],
        id="authority-form-ipv6",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        [req("POST", "/p", headers=[("CONTENT-LENGTH", "5")], content_length=5), Data(b"hello"), END],
        id="content-length",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nContent-Length: 007\r\n\r\nhello!!",
        [req("POST", "/p", headers=[("CONTENT-LENGTH", "007")], content_length=7), Data(b"hello!!"), END],
        id="content-length-leading-zeros",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        [req("POST", "/p", headers=[("CONTENT-LENGTH", "0")], content_length=0), END],
        id="content-length-zero",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        [req("POST", "/p", headers=[("TRANSFER-ENCODING", "chunked")], chunked=True),
         Data(b"hello world"), END],
        id="chunked",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"00A\r\n0123456789\r\na\r\n0123456789\r\n000\r\n\r\n",
        [req("POST", "/p", headers=[("TRANSFER-ENCODING", "Chunked")], chunked=True),
         Data(b"01234567890123456789"), END],
        id="chunked-hex-case-and-zeros",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5 ; a ; b = c ;d="q \\" ;x"\t;e=f\r\nhello\r\n0;last\r\n\r\n',
        [req("POST", "/p", headers=[("TRANSFER-ENCODING", "chunked")], chunked=True),
         Data(b"hello"), END],
        id="chunk-extensions",
    ),
    pytest.param(
        b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nVary: *\r\nX-Sum:  abc \r\n\r\n",
        [req("POST", "/p", headers=[("TRANSFER-ENCODING", "chunked")], chunked=True),
         Data(b"hello"), EndOfMessage([("VARY", "*"), ("X-SUM", "abc")])],
        id="trailers",
    ),
    pytest.param(
        b"PUT /p HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx",
        [req("PUT", "/p", headers=[("EXPECT", "100-Continue"), ("CONTENT-LENGTH", "1")],
             content_length=1, expect_continue=True), Data(b"x"), END],
        id="expect-continue",
    ),
    pytest.param(
        b"PUT /p HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
        [req("PUT", "/p", (1, 0), headers=[("EXPECT", "100-continue")]), END],
        id="expect-continue-ignored-on-http10",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", [req(headers=[("HOST", "")]), END], id="host-empty"),
]

HOSTS = [
    "example.com", "example.com:8080", "EXAMPLE.com:", "127.0.0.1", "1.2.3.4:0", "[::1]",
    "[::1]:80", "[::ffff:1.2.3.4]", "a%41b", "0.0.0.0=5000", "xn--bcher-kva.example",
]


@pytest.mark.parametrize(("data", "expected"), GOOD)
def test_good_request(data: bytes, expected: list, style: str) -> None:
    assert parse(data, style) == [*expected, CLOSED]


@pytest.mark.parametrize("host", HOSTS)
def test_valid_host(host: str) -> None:
    data = b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
    assert parse(data) == [req(headers=[("HOST", host)]), END, CLOSED]


def test_missing_host_on_http11_is_served() -> None:
    assert parse(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")[0].headers == [("ACCEPT", "*/*")]


def test_data_is_bytes(style: str) -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    parser = RequestParser()
    for piece in cut(data, style):
        parser.feed(piece)
    events = []
    while (event := parser.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, EndOfMessage):
            break
    assert all(type(e.data) is bytes for e in events if isinstance(e, Data))


# --- bad requests -------------------------------------------------------------

BAD_REQUEST_LINES = [
    pytest.param(b"GET  / HTTP/1.1", BadRequest, id="double-space"),
    pytest.param(b"GET  HTTP/1.1", BadRequest, id="empty-target"),
    pytest.param(b"GET /a\tb HTTP/1.1", BadRequest, id="target-tab"),
    pytest.param(b"GET / HTTP/1.1 ", BadRequest, id="trailing-space"),
    pytest.param(b" GET / HTTP/1.1", BadRequest, id="leading-space"),
    pytest.param(b"GET /", BadRequest, id="no-version"),
    pytest.param(b"GET HTTP/1.1", BadRequest, id="no-target"),
    pytest.param(b"GET\t/ HTTP/1.1", BadRequest, id="tab-separator"),
    pytest.param(b"G(T / HTTP/1.1", BadRequest, id="method-not-token"),
    pytest.param(b"GET: / HTTP/1.1", BadRequest, id="method-colon"),
    pytest.param(b"GET\x00 / HTTP/1.1", BadRequest, id="method-nul"),
    pytest.param(b"G\xc3\x89T / HTTP/1.1", BadRequest, id="method-non-ascii"),
    pytest.param(b"GET / HTTP/1.01", BadRequest, id="version-two-minor-digits"),
    pytest.param(b"GET / HTTP/11.1", BadRequest, id="version-two-major-digits"),
    pytest.param(b"GET / http/1.1", BadRequest, id="version-lower-case"),
    pytest.param(b"GET / HTTP/1", BadRequest, id="version-no-minor"),
    pytest.param(b"GET / HTTP/1.1.1", BadRequest, id="version-extra"),
    pytest.param(b"GET / FTP/1.1", BadRequest, id="version-wrong-name"),
    pytest.param(b"GET / HTTP/2.0", VersionNotSupported, id="http2"),
    pytest.param(b"GET / HTTP/0.9", VersionNotSupported, id="http09"),
    pytest.param(b"GET / HTTP/3.1", VersionNotSupported, id="http3"),
    pytest.param(b"PRI * HTTP/2.0", VersionNotSupported, id="h2-preface"),
    pytest.param(b"GET /a\x7f HTTP/1.1", BadRequest, id="target-del"),
    pytest.param(b"GET /a\x01 HTTP/1.1", BadRequest, id="target-ctl"),
    pytest.param(b"GET /\xc3\xa9 HTTP/1.1", BadRequest, id="target-non-ascii"),
    pytest.param(b"GET /a\rb HTTP/1.1", BadRequest, id="target-bare-cr"),
    pytest.param(b"GET foo HTTP/1.1", BadRequest, id="target-relative"),
    pytest.param(b"GET * HTTP/1.1", BadRequest, id="asterisk-not-options"),
    pytest.param(b"GET example.com:80 HTTP/1.1", BadRequest, id="authority-not-connect"),
    pytest.param(b"CONNECT / HTTP/1.1", BadRequest, id="connect-origin-form"),
    pytest.param(b"CONNECT example.com HTTP/1.1", BadRequest, id="connect-no-port"),
    pytest.param(b"CONNECT :443 HTTP/1.1", BadRequest, id="connect-no-host"),
    pytest.param(b"CONNECT [::zz]:443 HTTP/1.1", BadRequest, id="connect-bad-ipv6"),
    pytest.param(b"CONNECT [1::2::3]:443 HTTP/1.1", BadRequest, id="connect-invalid-ipv6"),
    pytest.param(b"GET http://[1:2]/ HTTP/1.1", BadRequest, id="absolute-invalid-ipv6"),
    pytest.param(b"GET http:///x HTTP/1.1", BadRequest, id="absolute-empty-host"),
    pytest.param(b"GET http://[::1/x HTTP/1.1", BadRequest, id="absolute-open-bracket"),
    pytest.param(b"GET http://a]b/ HTTP/1.1", BadRequest, id="absolute-bad-host"),
    pytest.param(b"GET http://a:b/ HTTP/1.1", BadRequest, id="absolute-bad-port"),
    pytest.param(b"GET 1http://a/ HTTP/1.1", BadRequest, id="absolute-bad-scheme"),
]


@pytest.mark.parametrize(("line", "error"), BAD_REQUEST_LINES)
def test_bad_request_line(line: bytes, error: type[ProtocolError], style: str) -> None:
    with pytest.raises(error) as caught:
        parse(line + b"\r\nHost: a\r\n\r\n", style)
    assert type(caught.value) is error


BAD_HEADS = [
    pytest.param(b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n", BadRequest, id="obs-fold-first"),
    pytest.param(b"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", BadRequest, id="obs-fold-htab"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", BadRequest, id="space-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", BadRequest, id="tab-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost a\r\n\r\n", BadRequest, id="no-colon"),
    pytest.param(b"GET / HTTP/1.1\r\n: a\r\n\r\n", BadRequest, id="empty-name"),
    pytest.param(b"GET / HTTP/1.1\r\nX(y): 1\r\n\r\n", BadRequest, id="name-separator"),
    pytest.param(b"GET / HTTP/1.1\r\nX y: 1\r\n\r\n", BadRequest, id="name-space"),
    pytest.param(b"GET / HTTP/1.1\r\nX\xc3\xa9: 1\r\n\r\n", BadRequest, id="name-non-ascii"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", BadRequest, id="value-nul"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\x07b\r\n\r\n", BadRequest, id="value-bel"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", BadRequest, id="value-del"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\x1bb\r\n\r\n", BadRequest, id="value-esc"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\x0cb\r\n\r\n", BadRequest, id="value-ff"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", BadRequest, id="value-bare-cr"),
    pytest.param(b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", BadRequest, id="bare-lf-between-fields"),
    pytest.param(b"GET / HTTP/1.1\nHost: a\r\n\r\n", BadRequest, id="bare-lf-after-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\n", BadRequest, id="bare-lf-ends-head"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", BadRequest, id="cr-cr-lf"),
    pytest.param(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", BadRequest, id="two-leading-crlf"),
    pytest.param(b"\nGET / HTTP/1.1\r\n\r\n", BadRequest, id="leading-bare-lf"),
    pytest.param(b"\rGET / HTTP/1.1\r\n\r\n", BadRequest, id="leading-bare-cr"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", BadRequest, id="duplicate-host"),
    pytest.param(b"GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n", BadRequest, id="duplicate-host-case"),
    pytest.param(
        b"GET / HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n\r\n",
        BadRequest,
        id="duplicate-content-type",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nExpect: bogus\r\n\r\n", ExpectationFailed, id="expect-other"),
    pytest.param(
        b"GET / HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n", ExpectationFailed, id="expect-list"
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nExpect: bogus\r\n\r\n", ExpectationFailed, id="expect-other-http10"
    ),
]


@pytest.mark.parametrize(("data", "error"), BAD_HEADS)
def test_bad_head(data: bytes, error: type[ProtocolError], style: str) -> None:
    with pytest.raises(error) as caught:
        parse(data, style)
    assert type(caught.value) is error


@pytest.mark.parametrize(
    "host",
    ["a b", "a/b", "user@host", "[::1", "[zz::1]", "[::1]x", "a:b", "a%4", "[v1.x]", "é.example",
     "[1:2]", "[1.2.3.4]", "[1::2::3]"],
)
def test_invalid_host(host: str) -> None:
    with pytest.raises(BadRequest):
        parse(b"GET / HTTP/1.1\r\nHost: " + host.encode("latin-1") + b"\r\n\r\n")


def test_bare_lf_head_is_refused_before_eof() -> None:
    # Never waits for a CRLFCRLF that a bare-LF client will not send.
    with pytest.raises(BadRequest):
        parse(b"GET / HTTP/1.1\nHost: a\n\n", eof=False)


# --- framing ------------------------------------------------------------------

BAD_FRAMING = [
    *[
        pytest.param(f"Content-Length: {value}\r\n", BadRequest, id=f"cl-{name}")
        for name, value in [
            ("plus", "+5"), ("minus", "-1"), ("minus-zero", "-0"), ("two-numbers", "5 5"),
            ("list", "5,5"), ("list-space", "5, 5"), ("hex", "0x5"), ("float", "5.0"),
            ("empty", ""), ("underscore", "0_1"), ("exponent", "1e3"), ("letters", "abc"),
        ]
    ],
    pytest.param("Content-Length: \xb2\r\n", BadRequest, id="cl-superscript-two"),
    pytest.param("Content-Length: 5\r\nContent-Length: 5\r\n", BadRequest, id="cl-duplicate-equal"),
    pytest.param("Content-Length: 5\r\nContent-Length: 6\r\n", BadRequest, id="cl-duplicate"),
    pytest.param("Content-Length: 99999999999999999999\r\n", PayloadTooLarge, id="cl-over-int64"),
    pytest.param("Content-Length: " + "9" * 5000 + "\r\n", PayloadTooLarge, id="cl-5000-digits"),
    pytest.param(
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", BadRequest, id="te-and-cl"
    ),
    pytest.param(
        "Content-Length: 5\r\nTransfer-Encoding: identity\r\n", BadRequest, id="cl-and-te-identity"
    ),
    pytest.param("Transfer-Encoding: chunked, chunked\r\n", BadRequest, id="te-chunked-twice"),
    pytest.param(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        BadRequest,
        id="te-chunked-twice-lines",
    ),
    pytest.param("Transfer-Encoding: gzip\r\n", BadRequest, id="te-not-chunked"),
    pytest.param("Transfer-Encoding: identity\r\n", BadRequest, id="te-identity"),
    pytest.param("Transfer-Encoding: chunked, gzip\r\n", BadRequest, id="te-chunked-not-last"),
    pytest.param("Transfer-Encoding:\r\n", BadRequest, id="te-empty"),
    pytest.param("Transfer-Encoding: chunked;x=1\r\n", BadRequest, id="te-chunked-params"),
    pytest.param("Transfer-Encoding: g(z, chunked\r\n", BadRequest, id="te-bad-token"),
    pytest.param("Transfer-Encoding: gzip, chunked\r\n", NotImplementedCoding, id="te-gzip-chunked"),
    pytest.param(
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        NotImplementedCoding,
        id="te-identity-chunked",
    ),
    pytest.param("Transfer-Encoding: x-custom, chunked\r\n", NotImplementedCoding, id="te-unknown"),
    # Empty list elements: every peer refuses them, so a proxy could frame the body otherwise.
    pytest.param("Transfer-Encoding: , chunked\r\n", BadRequest, id="te-leading-empty-element"),
    pytest.param("Transfer-Encoding: chunked,\r\n", BadRequest, id="te-trailing-empty-element"),
    pytest.param("Transfer-Encoding: gzip,,chunked\r\n", BadRequest, id="te-inner-empty-element"),
    pytest.param("Transfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n", BadRequest,
                 id="te-empty-element-line"),
]


@pytest.mark.parametrize(("fields", "error"), BAD_FRAMING)
def test_bad_framing(fields: str, error: type[ProtocolError], style: str) -> None:
    data = ("POST / HTTP/1.1\r\n" + fields + "\r\n").encode("latin-1") + b"0\r\n\r\n"
    with pytest.raises(error) as caught:
        parse(data, style)
    assert type(caught.value) is error


def test_transfer_encoding_on_http10() -> None:
    with pytest.raises(BadRequest):
        parse(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")


def test_content_length_over_max_content_length() -> None:
    limits = Limits(max_content_length=10)
    assert parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", limits=limits)[1] == Data(
        b"0123456789"
    )
    with pytest.raises(PayloadTooLarge):
        parse(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", limits=limits)


CHUNKED = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

BAD_CHUNKS = [
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", BadRequest, id="0x-prefix"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", BadRequest, id="minus"),
    pytest.param(b"+5\r\nhello\r\n0\r\n\r\n", BadRequest, id="plus"),
    pytest.param(b" 5\r\nhello\r\n0\r\n\r\n", BadRequest, id="leading-space"),
    pytest.param(b"5 \r\nhello\r\n0\r\n\r\n", BadRequest, id="trailing-space"),
    pytest.param(b"5\nhello\r\n0\r\n\r\n", BadRequest, id="bare-lf"),
    pytest.param(b"5\rhello\r\n0\r\n\r\n", BadRequest, id="bare-cr"),
    pytest.param(b"\r\nhello\r\n0\r\n\r\n", BadRequest, id="empty-size"),
    pytest.param(b"g\r\nhello\r\n0\r\n\r\n", BadRequest, id="not-hex"),
    pytest.param(b"6_0\r\nhello\r\n0\r\n\r\n", BadRequest, id="underscore"),
    pytest.param(b"1" + b"0" * 16 + b"\r\n", BadRequest, id="17-digits"),
    pytest.param(b"5;\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-empty"),
    pytest.param(b"5;=x\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-no-name"),
    pytest.param(b"5;a=\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-no-value"),
    pytest.param(b'5;a="x\r\nhello\r\n0\r\n\r\n', BadRequest, id="ext-unterminated-quote"),
    pytest.param(b"5;a=b c\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-space-in-value"),
    pytest.param(b"5;a\x00\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-nul"),
    pytest.param(b"5;ext=val\rue\r\nhello\r\n0\r\n\r\n", BadRequest, id="ext-bare-cr"),
    pytest.param(b"5\r\nhelloX\r\n0\r\n\r\n", BadRequest, id="data-too-long"),
    pytest.param(b"5\r\nhello\n0\r\n\r\n", BadRequest, id="data-then-bare-lf"),
    pytest.param(b"5\r\nhello0\r\n\r\n", BadRequest, id="data-no-crlf"),
    pytest.param(b"0\r\nX: y\n\r\n", BadRequest, id="trailer-bare-lf"),
    pytest.param(b"0\r\n\n", BadRequest, id="end-bare-lf"),
    pytest.param(b"0\r\n\rX", BadRequest, id="end-bare-cr"),
    pytest.param(b"0\r\n folded: x\r\n\r\n", BadRequest, id="trailer-obs-fold"),
    pytest.param(b"0\r\nX : y\r\n\r\n", BadRequest, id="trailer-space-before-colon"),
    pytest.param(b"0\r\nX: \x00\r\n\r\n", BadRequest, id="trailer-nul"),
    *[
        pytest.param(b"0\r\n" + name + b": 1\r\n\r\n", BadRequest, id=f"trailer-{name.decode()}")
        for name in [b"Content-Length", b"transfer-encoding", b"Host", b"Trailer", b"Connection"]
    ],
]


@pytest.mark.parametrize(("body", "error"), BAD_CHUNKS)
def test_bad_chunked_body(body: bytes, error: type[ProtocolError], style: str) -> None:
    with pytest.raises(error) as caught:
        parse(CHUNKED + body, style)
    assert type(caught.value) is error


def test_chunk_digits_and_extension_limits(style: str) -> None:
    limits = Limits(max_chunk_size_digits=4, max_chunk_ext_length=8)
    good = CHUNKED + b"0005;abc=def\r\nhello\r\n0\r\n\r\n"
    assert merge(parse(good, style, limits))[1] == Data(b"hello")
    with pytest.raises(BadRequest):
        parse(CHUNKED + b"10005\r\nhello\r\n0\r\n\r\n", style, limits)
    with pytest.raises(BadRequest):
        parse(CHUNKED + b"5;abc=defg\r\nhello\r\n0\r\n\r\n", style, limits)


def test_leading_zeros_do_not_count_as_chunk_size_digits(style: str) -> None:
    # Peers (h11, llhttp) accept them; only significant digits can overflow a size.
    body = CHUNKED + b"0" * 40 + b"5\r\nhello\r\n" + b"0" * 40 + b"\r\n\r\n"
    events = parse(body, style)
    assert events[1] == Data(b"hello") and isinstance(events[2], EndOfMessage)
    with pytest.raises(BadRequest):   # the line length still bounds the zeros
        parse(CHUNKED + b"0" * 5000 + b"5\r\nhello\r\n0\r\n\r\n", style)


@pytest.mark.parametrize("fields", ["Content-Length: 5\r\n", "Content-Length: 0\r\n",
                                    "Transfer-Encoding: chunked\r\n"])
def test_connect_with_content_is_refused(fields: str, style: str) -> None:
    # RFC 9110 section 9.3.6: CONNECT has no content; what follows its head is tunnel data.
    data = f"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n{fields}\r\n".encode()
    with pytest.raises(BadRequest):
        parse(data + b"hello", style)


def test_unbounded_chunk_extension_is_refused_before_its_end() -> None:
    with pytest.raises(BadRequest):
        parse(CHUNKED + b"5;" + b"a" * 5000, eof=False)


def test_chunked_total_over_max_content_length() -> None:
    limits = Limits(max_content_length=8)
    with pytest.raises(PayloadTooLarge):
        parse(CHUNKED + b"5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n", limits=limits)


def test_trailer_limits() -> None:
    limits = Limits(limit_request_fields=2, limit_request_field_size=30)  # the head fits
    assert parse(CHUNKED + b"0\r\nA: 1\r\nB: 2\r\n\r\n", limits=limits)[-2] == EndOfMessage(
        [("A", "1"), ("B", "2")]
    )
    with pytest.raises(HeaderFieldsTooLarge):
        parse(CHUNKED + b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits=limits)
    with pytest.raises(HeaderFieldsTooLarge):
        parse(CHUNKED + b"0\r\nA: " + b"1" * 26 + b"\r\n\r\n", limits=limits)
    with pytest.raises(HeaderFieldsTooLarge):
        parse(CHUNKED + b"0\r\nA: " + b"1" * 100, limits=limits, eof=False)


# --- limits -------------------------------------------------------------------


def line_of(length: int) -> bytes:
    """A request line of exactly ``length`` bytes."""
    return b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"


def test_request_line_limit(style: str) -> None:
    limits = Limits(limit_request_line=100)
    assert parse(line_of(100) + b"\r\n\r\n", style, limits)[0].target.startswith("/aaa")
    with pytest.raises(URITooLong):
        parse(line_of(101) + b"\r\n\r\n", style, limits)


def test_request_line_limit_applies_before_the_line_ends() -> None:
    limits = Limits(limit_request_line=100)
    parser = RequestParser(limits)
    parser.feed(b"GET /" + b"a" * 95)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"a\r")  # 101 bytes, might still be followed by LF
    with pytest.raises(URITooLong):
        parser.next_event()


def test_request_line_limit_applies_before_the_head_ends() -> None:
    parser = RequestParser(Limits(limit_request_line=100))
    parser.feed(line_of(101) + b"\r\nHost: a")
    with pytest.raises(URITooLong):
        parser.next_event()


def test_request_line_limit_zero_means_unlimited() -> None:
    assert parse(line_of(20000) + b"\r\n\r\n", limits=Limits(limit_request_line=0))[0].method == "GET"


def test_field_size_limit_counts_the_crlf(style: str) -> None:
    limits = Limits(limit_request_field_size=10)
    assert parse(b"GET / HTTP/1.1\r\nA: 12345\r\n\r\n", style, limits)[0].headers == [("A", "12345")]
    with pytest.raises(HeaderFieldsTooLarge):
        parse(b"GET / HTTP/1.1\r\nA: 123456\r\n\r\n", style, limits)


def test_field_size_limit_applies_before_the_head_ends() -> None:
    parser = RequestParser(Limits(limit_request_field_size=100))
    parser.feed(b"GET / HTTP/1.1\r\nA: " + b"x" * 95)
    assert parser.next_event() is NEED_DATA
    parser.feed(b"x" * 5)
    with pytest.raises(HeaderFieldsTooLarge):
        parser.next_event()


def test_field_count_limit(style: str) -> None:
    limits = Limits(limit_request_fields=3)
    three = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
    assert len(parse(three + b"\r\n", style, limits)[0].headers) == 3
    with pytest.raises(HeaderFieldsTooLarge):
        parse(three + b"D: 4\r\n\r\n", style, limits)


def test_head_is_bounded_while_it_trickles_in() -> None:
    limits = Limits(limit_request_line=50, limit_request_fields=4, limit_request_field_size=20)
    parser = RequestParser(limits)
    line = b"A: 123456789012\r\n"  # each line within limits, never a blank one
    parser.feed(b"GET / HTTP/1.1\r\n")
    fed = 16
    with pytest.raises(HeaderFieldsTooLarge):
        while fed < 10_000:
            parser.feed(line)
            fed += len(line)
            assert parser.next_event() is NEED_DATA
    assert fed <= 50 + 4 + 4 * 20 + len(line)


def test_head_ceiling_holds_with_every_limit_at_its_largest() -> None:
    limits = Limits(limit_request_line=0, limit_request_fields=0, limit_request_field_size=65535)
    field = b"X: " + b"x" * 65000 + b"\r\n"
    assert len(parse(b"GET / HTTP/1.1\r\n" + field * 2 + b"\r\n", limits=limits)[0].headers) == 2
    with pytest.raises(HeaderFieldsTooLarge):
        parse(b"GET / HTTP/1.1\r\n" + field * 260 + b"\r\n", limits=limits)


def test_zero_limits_mean_what_they_mean_in_gunicorn_27() -> None:
    # Gunicorn 27's code: fields 0 -> its maximum (32768), field size 0 -> its default (8190).
    limits = Limits(limit_request_fields=0, limit_request_field_size=0)
    many = b"".join(b"F%d: v\r\n" % i for i in range(32768))
    assert len(parse(b"GET / HTTP/1.1\r\n" + many + b"\r\n", limits=limits)[0].headers) == 32768
    with pytest.raises(HeaderFieldsTooLarge):
        parse(b"GET / HTTP/1.1\r\n" + many + b"G: v\r\n\r\n", limits=limits)
    fits = b"X: " + b"x" * (8190 - 5) + b"\r\n"   # 8190 bytes with its CRLF
    assert parse(b"GET / HTTP/1.1\r\n" + fits + b"\r\n", limits=limits)[0].headers[0][0] == "X"
    with pytest.raises(HeaderFieldsTooLarge):
        parse(b"GET / HTTP/1.1\r\nX: x" + fits[3:] + b"\r\n", limits=limits)


def test_limits_reject_negative_values() -> None:
    with pytest.raises(ValueError):
        Limits(limit_request_fields=-1)
    with pytest.raises(ValueError):
        Limits(max_chunk_size_digits=0)


# --- what was checked once (caches) vouches for nothing else ------------------


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", id="host-changes-to-invalid"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token\r\n\r\n", id="known-name-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token : 1\r\n\r\n", id="known-name-then-space"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token: \x01\r\n\r\n", id="known-name-bad-value"),
    ],
)
def test_a_valid_request_does_not_vouch_for_the_next(second: bytes, style: str) -> None:
    first = b"GET / HTTP/1.1\r\nHost: a\r\nX-Token: 1\r\n\r\n"
    with pytest.raises(BadRequest):
        parse(first + second, style)
    assert parse(first, style)[0] == req(headers=[("HOST", "a"), ("X-TOKEN", "1")])


# --- pipelining, streaming, EOF, state ---------------------------------------


def test_pipelined_requests(style: str) -> None:
    data = (
        b"GET /1 HTTP/1.1\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
        b"\r\nGET /4 HTTP/1.0\r\n\r\n"
    )
    assert parse(data, style) == [
        req(target="/1"), END,
        req("POST", "/2", headers=[("CONTENT-LENGTH", "3")], content_length=3), Data(b"abc"), END,
        req("POST", "/3", headers=[("TRANSFER-ENCODING", "chunked")], chunked=True), Data(b"xyz"), END,
        req(target="/4", version=(1, 0)), END,
        CLOSED,
    ]


def test_body_bytes_that_look_like_a_request_stay_body(style: str) -> None:
    data = b"POST / HTTP/1.1\r\nContent-Length: 19\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
    assert parse(data, style)[1:] == [Data(b"GET /x HTTP/1.1\r\n\r\n"), END, CLOSED]


def test_buffered_and_in_message_through_a_pipeline() -> None:
    parser = RequestParser()
    assert not parser.buffered and not parser.in_message
    parser.feed(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HT")
    assert parser.buffered and parser.in_message
    assert isinstance(parser.next_event(), Request)
    assert parser.in_message
    assert parser.next_event() == END
    assert parser.buffered and parser.in_message  # the partial second head
    assert parser.next_event() is NEED_DATA
    parser.feed(b"TP/1.1\r\n\r\n")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == END
    assert not parser.buffered and not parser.in_message
    assert parser.next_event() is NEED_DATA


def test_body_is_streamed_as_it_arrives() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Data(b"0123")
    assert parser.next_event() is NEED_DATA
    assert parser.in_message
    parser.feed(b"456789GET")
    assert parser.next_event() == Data(b"456789")
    assert parser.next_event() == END
    assert parser.buffered


def test_chunk_larger_than_the_buffer_is_streamed() -> None:
    parser = RequestParser()
    parser.feed(CHUNKED + b"a\r\n01234")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Data(b"01234")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"56789\r\n0\r\n\r\n")
    assert parser.next_event() == Data(b"56789")
    assert parser.next_event() == END


def test_sentinels_name_themselves() -> None:
    assert (repr(NEED_DATA), repr(CLOSED)) == ("NEED_DATA", "CLOSED")


def test_eof_between_requests_is_closed() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    parser.feed(b"")
    assert [parser.next_event() for _ in range(4)] == [req(), END, CLOSED, CLOSED]
    assert not parser.in_message


def test_eof_after_one_empty_line_is_closed() -> None:
    assert parse(b"GET / HTTP/1.1\r\n\r\n\r\n") == [req(), END, CLOSED]


def test_feed_after_eof_is_a_bug() -> None:
    parser = RequestParser()
    parser.feed(b"")
    parser.feed(b"")
    with pytest.raises(RuntimeError):
        parser.feed(b"GET")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"G", id="request-line"),
        pytest.param(b"\r", id="first-cr"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", id="headers"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r", id="last-cr"),
        pytest.param(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel", id="body"),
        pytest.param(CHUNKED + b"5", id="chunk-size"),
        pytest.param(CHUNKED + b"5\r\nhel", id="chunk-data"),
        pytest.param(CHUNKED + b"5\r\nhello", id="chunk-crlf"),
        pytest.param(CHUNKED + b"5\r\nhello\r", id="chunk-cr"),
        pytest.param(CHUNKED + b"0\r\n", id="last-chunk"),
        pytest.param(CHUNKED + b"0\r\nX: y\r\n", id="trailers"),
    ],
)
def test_eof_mid_message_is_incomplete(data: bytes, style: str) -> None:
    with pytest.raises(IncompleteMessage):
        parse(data, style)


def test_parser_stays_dead_after_an_error() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/2.0\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    with pytest.raises(VersionNotSupported):
        parser.next_event()
    parser.feed(b"GET / HTTP/1.1\r\n\r\n")
    for _ in range(3):
        with pytest.raises(VersionNotSupported) as caught:
            parser.next_event()
        assert caught.value.status == 505
    assert not parser.in_message


def test_nothing_after_a_bad_request_is_parsed() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nBad Header\r\n\r\nGET /y HTTP/1.1\r\n\r\n")
    assert parser.next_event() == req()
    assert parser.next_event() == END
    for _ in range(2):
        with pytest.raises(BadRequest):
            parser.next_event()


def test_errors_carry_status_and_reason() -> None:
    cases = [
        (BadRequest, 400, "Bad Request"), (IncompleteMessage, 400, "Bad Request"),
        (PayloadTooLarge, 413, "Payload Too Large"), (URITooLong, 414, "URI Too Long"),
        (ExpectationFailed, 417, "Expectation Failed"),
        (HeaderFieldsTooLarge, 431, "Request Header Fields Too Large"),
        (NotImplementedCoding, 501, "Not Implemented"),
        (VersionNotSupported, 505, "HTTP Version Not Supported"),
    ]
    for cls, status, reason in cases:
        exc = cls("detail")
        assert (exc.status, exc.reason, exc.detail, str(exc)) == (status, reason, "detail", "detail")


def test_error_detail_is_short_and_ascii() -> None:
    with pytest.raises(BadRequest) as caught:
        parse(b"G\xff" + b"E" * 10000 + b" / HTTP/1.1\r\n\r\n", limits=Limits(limit_request_line=0))
    assert caught.value.detail.isascii()
    assert len(caught.value.detail) < 200


def test_remembered_header_lines_parse_as_new_ones_and_stay_bounded() -> None:
    from pasteserve.http import parser as module

    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Mixed-Case:  spaced value \t\r\nACCEPT: */*\r\n\r\n"
    first = parse(head)[0]
    again = parse(head)[0]   # every line is remembered now
    assert first == again
    assert again.headers == [("HOST", "a"), ("X-MIXED-CASE", "spaced value"), ("ACCEPT", "*/*")]
    for number in range(3 * module._FIELD_LINES_MAX):
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Id: %d\r\n\r\n" % number)
        assert len(module._field_lines) <= module._FIELD_LINES_MAX
    # A line the cache remembered is still checked as part of its head: a bare CR is refused.
    with pytest.raises(BadRequest):
        parse(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n")


def test_remembered_request_lines_stay_bounded_and_still_meet_each_parsers_limit() -> None:
    from pasteserve.http import parser as module

    head = b"GET /" + b"p" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert parse(head)[0].target == "/" + "p" * 100
    assert parse(head)[0].target == "/" + "p" * 100   # remembered now
    with pytest.raises(URITooLong):
        parse(head, limits=Limits(limit_request_line=50))
    for number in range(3 * module._REQUEST_LINES_MAX):
        assert parse(b"GET /%d HTTP/1.0\r\n\r\n" % number)[0].version == (1, 0)
        assert len(module._request_lines) <= module._REQUEST_LINES_MAX


def test_remembered_hosts_stay_bounded_and_a_bad_one_is_still_refused() -> None:
    from pasteserve.http import parser as module

    for number in range(3 * module._VALID_HOSTS_MAX):
        assert parse(b"GET / HTTP/1.1\r\nHost: h%d.example:80\r\n\r\n" % number)[0].headers
        assert len(module._valid_hosts) <= module._VALID_HOSTS_MAX
    with pytest.raises(BadRequest):
        parse(b"GET / HTTP/1.1\r\nHost: h1.example:80x\r\n\r\n")


def test_whole_head_reads_one_whole_head_and_nothing_else() -> None:
    head = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    parser = RequestParser()
    assert parser.whole_head(head) == req(target="/a", headers=[("HOST", "x")])
    assert parser.next_event() == END
    assert parser.next_event() is NEED_DATA
    # What follows the head is buffered: a pipelined request, or a body.
    pipelined = RequestParser()
    assert pipelined.whole_head(head + head) == req(target="/a", headers=[("HOST", "x")])
    assert pipelined.buffered_size == len(head)
    assert [pipelined.next_event() for _ in range(3)] == [END, req(target="/a", headers=[("HOST", "x")]), END]
    post = RequestParser()
    assert post.whole_head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").content_length == 3
    assert post.next_event() == Data(b"abc")
    # Not the usual case: nothing is fed, and feed() + next_event() read it as always.
    for data in (head[:-1], b"\r\n" + head, b"", b"\r\n\r", b"GET / HTTP/1.1\r\n"):
        assert RequestParser().whole_head(data) is None, data
    busy = RequestParser()
    busy.feed(b"GET")
    assert busy.whole_head(head) is None and busy.buffered_size == 3
    small = Limits(limit_request_line=4, limit_request_fields=1, limit_request_field_size=4)
    assert RequestParser(small).whole_head(head) is None   # over head_max: next_event() refuses it


def test_whole_head_errors_like_next_event() -> None:
    parser = RequestParser()
    with pytest.raises(BadRequest, match="invalid Host"):
        parser.whole_head(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
    with pytest.raises(BadRequest, match="invalid Host"):   # the parser is dead, as after next_event()
        parser.next_event()
