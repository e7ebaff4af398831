"""Property tests for the request parser (hypothesis).

* Any bytes, cut anywhere, give events or a ProtocolError, never another
  exception, and the same outcome however they are cut, and whether each
  piece goes first to ``whole_head`` (as a connection does) or to ``feed``.
* Valid requests built from the grammar round-trip in any split, pipelined.
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from pasteserve.http.errors import ProtocolError
from pasteserve.http.parser import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Request,
    RequestParser,
)

FUZZ = settings(max_examples=200, deadline=None)

TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
# Names the parser interprets; generated fields avoid them so framing stays ours.
RESERVED = {
    "CONTENT-LENGTH", "TRANSFER-ENCODING", "HOST", "CONNECTION", "EXPECT", "CONTENT-TYPE",
    "TRAILER", "KEEP-ALIVE", "UPGRADE", "TE",
}


def outcome(pieces: list[bytes], head_first: bool = False) -> tuple[list, str | None]:
    """Merged events and the error class name, feeding ``pieces`` then EOF (each piece offered
    to ``whole_head`` first with ``head_first``)."""
    parser = RequestParser()
    events: list = []
    try:
        for piece in [*pieces, b""]:
            head = parser.whole_head(piece) if head_first else None
            if head is None:
                parser.feed(piece)
            else:
                events.append(head)
            for _ in range(len(piece) + 4):  # a stuck parser fails, not hangs
                event = parser.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Data):
                    assert type(event.data) is bytes and event.data
                    if events and isinstance(events[-1], Data):
                        event = Data(events.pop().data + event.data)
                else:
                    assert isinstance(event, (Request, EndOfMessage)) or event is CLOSED
                events.append(event)
                if event is CLOSED:
                    return events, None
            else:
                if piece:
                    raise AssertionError("parser produced events without consuming input")
        raise AssertionError("EOF fed but the parser never reported CLOSED or an error")
    except ProtocolError as exc:
        error = type(exc)
        for _ in range(2):  # dead for good, with the same class
            try:
                parser.next_event()
            except ProtocolError as again:
                assert type(again) is error
            else:
                raise AssertionError("parser revived after an error")
        return events, error.__name__


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points``; never an empty piece, which would mean EOF."""
    bounds = sorted({p % (len(data) + 1) for p in points})
    pieces = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)])]
    return [piece for piece in pieces if piece]


def assert_split_invariant(data: bytes, points: list[int]) -> tuple[list, str | None]:
    whole = outcome([data])
    assert outcome(cuts(data, points)) == whole
    assert outcome([data], head_first=True) == whole
    assert outcome(cuts(data, points), head_first=True) == whole
    assert outcome([data[i : i + 1] for i in range(len(data))]) == whole
    return whole


# --- arbitrary and mutated input ----------------------------------------------

HEADISH = st.sampled_from(
    [b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.0\r\n", b"\r\n", b"Host: a\r\n", b"\r\n\r\n",
     b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n", b"0\r\n",
     b"\n", b"\r", b" ", b":", b";", b"\x00", b"\xff", b"HTTP/2.0", b"Expect: 100-continue\r\n"]
)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes(data: bytes, points: list[int]) -> None:
    assert_split_invariant(data, points)


@FUZZ
@given(st.lists(st.one_of(HEADISH, st.binary(max_size=6)), max_size=30), st.lists(st.integers(0, 600)))
def test_http_shaped_fragments(parts: list[bytes], points: list[int]) -> None:
    assert_split_invariant(b"".join(parts), points)


# --- valid requests -------------------------------------------------------------

tokens = st.text(TCHARS, min_size=1, max_size=12)
names = tokens.filter(lambda name: name.upper() not in RESERVED)
ows = st.text(" \t", max_size=2)
value_chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
values = st.text(st.one_of(value_chars, st.just("\t")), max_size=20)
path_chars = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%"
targets = st.text(path_chars, max_size=20).map(lambda rest: "/" + rest)


@st.composite
def fields(draw: st.DrawFn, max_size: int = 5) -> tuple[bytes, list[tuple[str, str]]]:
    """Serialized field lines and what the parser must report for them."""
    wire, expected = b"", []
    for name, value in draw(st.lists(st.tuples(names, values), max_size=max_size)):
        line = name + ":" + draw(ows) + value + draw(ows) + "\r\n"
        wire += line.encode("latin-1")
        expected.append((name.upper(), value.strip(" \t")))
    return wire, expected


@st.composite
def chunk_extensions(draw: st.DrawFn) -> bytes:
    out = b""
    for name in draw(st.lists(tokens, max_size=2)):
        out += draw(ows).encode() + b";" + draw(ows).encode() + name.encode()
        kind = draw(st.sampled_from(["none", "token", "quoted"]))
        if kind == "token":
            out += b"=" + draw(tokens).encode()
        elif kind == "quoted":
            text = draw(st.text(string.ascii_letters + ' \t!#\\"', max_size=8))
            out += b'="' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'
    return out


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list]:
    """One valid request on the wire and the events it must produce."""
    method = draw(tokens.filter(lambda m: m != "CONNECT"))  # CONNECT takes host:port, not these targets
    target = draw(targets)
    version = draw(st.sampled_from([(1, 0), (1, 1)]))
    head, headers = draw(fields())
    body = draw(st.binary(max_size=60))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == (1, 1) else ["none", "length"]))
    if framing == "none":
        body = b""
    content_length = len(body) if framing == "length" else None
    trailers: list[tuple[str, str]] = []
    payload = body
    if framing == "length":
        head += b"Content-Length: %d\r\n" % len(body)
        headers.append(("CONTENT-LENGTH", str(len(body))))
    elif framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n"
        headers.append(("TRANSFER-ENCODING", "chunked"))
        payload, rest = b"", body
        while rest:
            size = draw(st.integers(1, len(rest)))
            digits = draw(st.sampled_from(["%x", "%X", "%03x"])) % size
            payload += digits.encode() + draw(chunk_extensions()) + b"\r\n" + rest[:size] + b"\r\n"
            rest = rest[size:]
        trailer_lines, trailers = draw(fields(max_size=2))
        payload += b"0" + draw(chunk_extensions()) + b"\r\n" + trailer_lines + b"\r\n"
    wire = b"%s %s HTTP/%d.%d\r\n%s\r\n%s" % (
        method.encode(), target.encode(), *version, head, payload
    )
    request = Request(
        method, target, version, headers, content_length, framing == "chunked",
        version == (1, 1), False,
    )
    return wire, [request, *([Data(body)] if body else []), EndOfMessage(trailers)]


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=3), st.lists(st.integers(0, 2000), max_size=10))
def test_valid_requests_round_trip(pipeline: list[tuple[bytes, list]], points: list[int]) -> None:
    data = b"".join(wire for wire, _ in pipeline)
    expected = [event for _, events in pipeline for event in events] + [CLOSED]
    assert assert_split_invariant(data, points) == (expected, None)


@FUZZ
@given(
    requests(),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3), st.integers(0, 3)), min_size=1, max_size=4),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_mutated_requests(
    request: tuple[bytes, list], edits: list[tuple[int, bytes, int]], points: list[int]
) -> None:
    data = request[0]
    for position, insert, remove in edits:
        position %= len(data) + 1
        data = data[:position] + insert + data[position + remove :]
    assert_split_invariant(data, points)
