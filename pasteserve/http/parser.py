"""A strict, sans-I/O HTTP/1.1 request parser (RFC 9112 / RFC 9110).

The parser never touches a socket: the connection feeds it bytes and pulls
events, so both workers share it and tests can cut input anywhere::

    parser = RequestParser(Limits())
    parser.feed(data)              # b"" means the peer closed
    event = parser.next_event()    # Request | Data | EndOfMessage | NEED_DATA | CLOSED

Events for one request are ``Request``, zero or more ``Data``, ``EndOfMessage``;
then the parser is idle again and parses the next pipelined request from what
is buffered. Every violation raises a ``ProtocolError`` subclass carrying its
status; after one the parser is dead and raises that error class again.

Choices worth knowing (the RFCs allow either way, we pick the strict side):

* Bare LF is rejected like bare CR (RFC 9112 section 2.2 lets a recipient
  accept LF alone; we don't, because front ends that split lines differently
  are how requests get smuggled, and the Gunicorn corpus expects 400 too).
  This holds in the head, chunk-size lines and trailers.
* A duplicate Host, Content-Length or Content-Type is a 400: each becomes one
  CGI variable in the WSGI environ, and components disagreeing on which copy
  wins is an attack surface.
* Limits follow Gunicorn's meaning so settings carry over: a request line is
  measured without its CRLF, a header field line with it. ``0`` does what it
  does in Gunicorn 27's code (its docs say otherwise): no request line limit
  of its own (the line still stops at 1 MiB), the field count at its maximum
  of 32768, and the field size at its default of 8190. Whatever the limits, a
  head or trailer section stops at 16 MiB.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import ClassVar, Union

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

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "Event",
    "Limits",
    "Request",
    "RequestParser",
]

# What a limit of 0 ("unlimited") stands for per line, and the most head or
# trailer bytes buffered whatever the settings say.
_CEILING = 1 << 20
_HEAD_CEILING = 16 << 20
_MAX_FIELDS_UNLIMITED = 32768  # Gunicorn's cap for limit_request_fields = 0
_DEFAULT_FIELD_SIZE = 8190  # Gunicorn's value for limit_request_field_size = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may make the parser buffer or accept."""

    limit_request_line: int = 8190  # bytes, CRLF excluded; over it -> 414
    limit_request_fields: int = 100  # header (and trailer) field lines; over it -> 431
    limit_request_field_size: int = 8190  # one field line, CRLF included; over it -> 431 (0: 8190)
    max_chunk_size_digits: int = 16  # hex digits in a chunk size
    max_chunk_ext_length: int = 4096  # bytes of extensions per chunk; over it -> 400
    max_content_length: int = 2**63 - 1  # Content-Length or chunked total; over it -> 413 (limit_request_body)
    # The bounds the parser applies, derived once here rather than for every connection.
    line_max: int = field(init=False, repr=False, compare=False)
    field_max: int = field(init=False, repr=False, compare=False)
    fields_max: int = field(init=False, repr=False, compare=False)
    head_max: int = field(init=False, repr=False, compare=False)
    trailers_max: int = field(init=False, repr=False, compare=False)
    chunk_line_max: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for item in fields(self):
            if not item.init:
                continue
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{item.name} must be a non-negative integer, not {value!r}")
        if self.max_chunk_size_digits < 1:
            raise ValueError("max_chunk_size_digits must be at least 1")
        line_max = self.limit_request_line or _CEILING
        field_max = self.limit_request_field_size or _DEFAULT_FIELD_SIZE
        fields_max = self.limit_request_fields or _MAX_FIELDS_UNLIMITED
        derived = {
            "line_max": line_max,
            "field_max": field_max,
            "fields_max": fields_max,
            "head_max": min(line_max + 4 + fields_max * field_max, _HEAD_CEILING),
            "trailers_max": min(2 + fields_max * field_max, _HEAD_CEILING),
            "chunk_line_max": self.max_chunk_size_digits + self.max_chunk_ext_length,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)   # frozen: the dataclass way to set it once


@dataclass(slots=True)
class Request:
    """The head of one request; its body follows as Data events."""

    method: str
    target: str
    version: tuple[int, int]
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool


@dataclass(slots=True)
class Data:
    """A non-empty piece of request body, already de-chunked."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The end of one request's body; trailers are informational only."""

    trailers: list[tuple[str, str]] = field(default_factory=list)


# The end of a request without trailers (nearly all): one shared event, never mutated.
_END_OF_MESSAGE = EndOfMessage([])


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")

Event = Union[Request, Data, EndOfMessage, _Sentinel]

# --- grammar (RFC 9110 section 5.6, RFC 9112 sections 3 and 7) --------------

_TCHARS = "!#$%&'*+\\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(f"[{_TCHARS}]+")
_REQUEST_LINE = re.compile(f"([{_TCHARS}]+) ([\\x21-\\x7e]+) HTTP/([0-9])\\.([0-9])")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_VERSIONS = {"HTTP/1.1": (1, 1), "HTTP/1.0": (1, 0)}
_COMMON_METHODS = frozenset(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"]
)
# A field value may hold HTAB, SP, VCHAR and obs-text, nothing else.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Bytes allowed anywhere in a head or trailer section; CR/LF pairing and the
# stricter request-line grammar are checked separately.
# As a translation table: allowed bytes become 1, the others 0, so one table lookup per
# byte and a memchr find a bad byte (cheaper than translate() with deletechars, which
# builds its table on every call).
_SECTION_CLASSES = bytes(
    1 if b in (9, 10, 13) or 0x20 <= b < 0x7F or b >= 0x80 else 0 for b in range(256)
)
_BARE_CR_OR_LF = re.compile(rb"\r[^\n]|(?<!\r)\n")

_SUB = "A-Za-z0-9\\-._~!$&'()*+,;="  # unreserved and sub-delims (RFC 3986)
# Written as "run, then (%XX run)*" so a failing match backtracks in linear time.
_REG_NAME = f"[{_SUB}]*(?:%[0-9A-Fa-f]{{2}}[{_SUB}]*)*"
_REG_NAME_1 = f"(?:[{_SUB}]|%[0-9A-Fa-f]{{2}}){_REG_NAME}"  # not empty
_USERINFO = f"[{_SUB}:]*(?:%[0-9A-Fa-f]{{2}}[{_SUB}:]*)*"
_IP_LITERAL = r"\[([0-9A-Fa-f:.]+)\]"
_HOST_FIELD = re.compile(f"(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?")
_AUTHORITY_FORM = re.compile(f"(?:{_IP_LITERAL}|{_REG_NAME_1}):[0-9]+")
_ABSOLUTE_FORM = re.compile(
    "[A-Za-z][A-Za-z0-9+\\-.]*://"
    f"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_REG_NAME_1})(?::[0-9]*)?"
    "(?:[/?#][\\x21-\\x7e]*)?"
)

_BWS = rb"[ \t]*"
_BTOKEN = _TCHARS.encode()
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)((?:" + _BWS + rb";" + _BWS + rb"[" + _BTOKEN + rb"]+"
    rb"(?:" + _BWS + rb"=" + _BWS + rb"(?:[" + _BTOKEN + rb"]+|" + _QUOTED + rb"))?)*)"
)

# Header fields the parser reads for framing and connection handling.
_SPECIAL = frozenset(
    ["CONTENT-LENGTH", "TRANSFER-ENCODING", "HOST", "CONNECTION", "EXPECT", "CONTENT-TYPE"]
)
# What clients usually send as their one Connection field, already split and lower-cased.
_USUAL_CONNECTION = {
    (value,): (value.lower(),) for value in ("keep-alive", "Keep-Alive", "close", "Close")
}
# Trailers that would change framing or routing if anything merged them into
# the header section (RFC 9110 section 6.5.1); refusing them is cheap.
_FORBIDDEN_TRAILERS = frozenset(
    ["CONTENT-LENGTH", "TRANSFER-ENCODING", "TRAILER", "HOST", "CONNECTION", "KEEP-ALIVE",
     "UPGRADE", "TE", "EXPECT"]
)

# Clients send the same few field names over and over: a name checked once is then
# looked up, with its upper-case form. Bounded so that a client inventing names per
# request cannot grow it forever, and only short names, so that those cannot hold
# megabytes (1,024 names of 8 KB) for the worker's life.
_FIELD_NAMES_MAX = 1024
FIELD_NAME_CACHED_MAX = 64
_field_names: dict[str, str] = {}
# Whole field lines repeat too: a client sends the same User-Agent, Accept and Host lines with
# every request. A line seen before is a dict lookup instead of a split, a name lookup and a
# strip. Cleared when full rather than frozen, so that lines that never repeat (cookies, request
# ids) cannot keep the repeating ones out for good; short lines only, so it stays small.
_FIELD_LINES_MAX = 512
FIELD_LINE_CACHED_MAX = 256
_field_lines: dict[str, tuple[str, str]] = {}
# Request lines the same way: the few URLs a site serves most, checked once.
_REQUEST_LINES_MAX = 512
REQUEST_LINE_CACHED_MAX = 256
_request_lines: dict[str, tuple[str, str, tuple[int, int]]] = {}
# Host values checked before (its regex ran once per connection when each connection kept its own).
_VALID_HOSTS_MAX = 256
_valid_hosts: dict[str, None] = {}


def _remember(cache: dict, key: str, value: object, most: int) -> None:
    """Keep ``value`` under ``key``; a full cache starts again, so that keys which never repeat
    cannot keep the repeating ones out for good."""
    if len(cache) >= most:
        cache.clear()
    cache[key] = value


# Parser states; each has one reader (see RequestParser._READERS).
_IDLE = "idle"
_END = "end"
_BODY = "body"
_CHUNK_SIZE = "chunk-size"
_CHUNK_DATA = "chunk-data"
_CHUNK_END = "chunk-end"
_TRAILERS = "trailers"
_CLOSED = "closed"
_DEAD = "dead"

_WAITING_FOR = {
    _IDLE: "request head",
    _BODY: "body",
    _CHUNK_SIZE: "chunk size line",
    _CHUNK_DATA: "chunk data",
    _CHUNK_END: "CRLF after chunk data",
    _TRAILERS: "trailer section",
}


def _excerpt(text: str | bytes, limit: int = 40) -> str:
    """A short, ASCII-only rendering of client input for error details."""
    shown = ascii(text[:limit])
    return shown + "..." if len(text) > limit else shown


def _split_lines(section: bytes | bytearray, what: str) -> list[str]:
    """Decode a head or trailer section, with the empty line that ends it, into lines.

    Bulk checks only: allowed bytes and CR/LF pairing. Returns the lines
    without the empty one.
    """
    lines = section.decode("latin-1").split("\r\n")
    lines.pop()
    lines.pop()
    rest = "".join(lines)  # a CR or LF left once the CRLFs are gone is a bare one
    if "\r" in rest or "\n" in rest:
        raise BadRequest(f"bare CR or LF in the {what}")
    if 0 in section.translate(_SECTION_CLASSES):
        number = next(n for n, line in enumerate(lines, 1) if _BAD_VALUE_CHAR.search(line))
        raise BadRequest(f"control character in line {number} of the {what}")
    return lines


def _field_error(lines: list[str], what: str) -> BadRequest:
    """Name the first malformed field line (the slow path, errors only).

    Only called once a line had no colon or its name was no token, after
    ``_split_lines`` vouched for the characters, so one of these problems is found.
    """
    number, line = next(
        (number, line)
        for number, line in enumerate(lines, 1)
        if ":" not in line or not _TOKEN.fullmatch(line.partition(":")[0])
    )
    name = line.partition(":")[0]
    if line[:1] in (" ", "\t"):
        problem = "obsolete line folding"
    elif ":" not in line:
        problem = f"no colon ({_excerpt(line)})"
    elif not name:
        problem = "empty field name"
    elif name[-1] in " \t":
        problem = "whitespace before the colon"
    else:
        problem = f"invalid field name {_excerpt(name)}"
    return BadRequest(f"{problem} in {what} line {number}")


def _request_line_error(line: str) -> ProtocolError:
    """Name what is wrong with a request line that failed the fast match."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        return BadRequest(f"malformed request line: {_excerpt(line)}")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        return BadRequest(f"invalid method: {_excerpt(method)}")
    if not _VERSION.fullmatch(version):
        return BadRequest(f"malformed HTTP version: {_excerpt(version)}")
    return BadRequest(f"invalid character in request target: {_excerpt(target)}")


def _valid_ip_literal(match: re.Match[str]) -> bool:
    literal = match.group(1)
    if literal is None:
        return True
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True


def _check_target(method: str, target: str) -> None:
    """Enforce the four request-target forms of RFC 9112 section 3.2."""
    if method == "CONNECT":
        match = _AUTHORITY_FORM.fullmatch(target)
        if match is None or not _valid_ip_literal(match):
            raise BadRequest(f"CONNECT needs host:port as target, got {_excerpt(target)}")
    elif target[0] == "/":
        return
    elif target == "*":
        if method != "OPTIONS":
            raise BadRequest("the asterisk target is only allowed with OPTIONS")
    else:
        match = _ABSOLUTE_FORM.fullmatch(target)
        if match is None or not _valid_ip_literal(match):
            raise BadRequest(f"invalid request target: {_excerpt(target)}")


def _request_line(line: str) -> tuple[str, str, tuple[int, int]]:
    """Method, target and version of a request line (its length already checked)."""
    # Fast path for the usual line: string methods are cheaper than the regex, which
    # decides (and words the error) whenever they do not vouch for the line.
    parts = line.split(" ")
    if (
        len(parts) == 3
        and parts[0] in _COMMON_METHODS
        and parts[2] in _VERSIONS
        and parts[1]
        and parts[1].isascii()
        and "\t" not in parts[1]  # the bulk check refused other controls: VCHAR only
    ):
        method, target, protocol = parts
        version = _VERSIONS[protocol]
    else:
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise _request_line_error(line)
        method, target, major, minor = match.groups()
        if major != "1":
            raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
        version = (1, 0) if minor == "0" else (1, 1)
    if target[0] != "/" or method == "CONNECT":
        _check_target(method, target)
    return method, target, version


def _list_members(values: tuple[str, ...]) -> list[str]:
    """Members of a comma-separated list field, lower-cased, empties dropped."""
    members = []
    for value in values:
        for member in value.split(","):
            member = member.strip(" \t")
            if member:
                members.append(member.lower())
    return members


def _transfer_codings(values: tuple[str, ...]) -> None:
    """Validate Transfer-Encoding: ``chunked`` exactly once and last."""
    # An empty element (", chunked", "chunked,") is legal list syntax, but peers refuse it and a
    # proxy that ignores such a field would frame the body differently: refuse it too.
    if any(not member.strip(" \t") for value in values for member in value.split(",")):
        raise BadRequest("empty element in Transfer-Encoding")
    codings = _list_members(values)
    names = [coding.split(";", 1)[0].rstrip(" \t") for coding in codings]
    if not names or names[-1] != "chunked":
        raise BadRequest("chunked must be the final transfer coding")
    if names.count("chunked") > 1:
        raise BadRequest("chunked applied more than once")
    if codings[-1] != "chunked":
        raise BadRequest("the chunked transfer coding takes no parameters")
    for name in names[:-1]:
        if not _TOKEN.fullmatch(name):
            raise BadRequest(f"malformed transfer coding: {_excerpt(name)}")
    if len(names) > 1:
        raise NotImplementedCoding(f"unsupported transfer coding: {_excerpt(names[0])}")


class RequestParser:
    """Turns the bytes of one client connection into request events."""

    __slots__ = ("_limits", "_line_max", "_field_max", "_fields_max", "_head_max", "_trailers_max",
                 "_chunk_line_max", "_buf", "_eof", "_state", "_error", "_scanned", "_line_end",
                 "_line_start", "_skipped_empty_line", "_remaining", "_body_total")

    def __init__(self, limits: Limits = Limits()) -> None:
        self._limits = limits
        self._line_max = limits.line_max
        self._field_max = limits.field_max
        self._fields_max = limits.fields_max
        self._head_max = limits.head_max
        self._trailers_max = limits.trailers_max
        self._chunk_line_max = limits.chunk_line_max
        self._buf = bytearray()
        self._eof = False
        self._state = _IDLE
        self._error: ProtocolError | None = None
        # Incremental search state, so a head trickling in byte by byte is
        # not rescanned from its start on every feed.
        self._scanned = 0
        self._line_end = -1
        self._line_start = 0
        self._skipped_empty_line = False
        self._remaining = 0
        self._body_total = 0

    # --- public interface ---------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer; ``b""`` means it closed."""
        if self._eof:
            if data:
                raise RuntimeError("feed() called with data after EOF")
            return
        if data:
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next event, NEED_DATA, or CLOSED; raises ProtocolError."""
        error = self._error
        if error is not None:
            raise type(error)(error.detail)
        try:
            event = self._READERS[self._state](self)
            if event is NEED_DATA and self._eof:
                raise IncompleteMessage(
                    f"connection closed in the middle of the {_WAITING_FOR[self._state]}"
                )
        except ProtocolError as exc:
            self._error = exc
            self._state = _DEAD
            raise
        return event

    def whole_head(self, data: bytes) -> Request | None:
        """``feed(data)`` then ``next_event()`` in one call, for the usual case: the parser waits
        for a request with nothing buffered, and ``data`` begins with a whole head (its body or
        a pipelined request may follow, and is buffered). None when that is not so, and nothing
        was fed: the caller feeds ``data`` as usual. Raises ProtocolError as next_event() does.
        (The head then skips the buffer and the incremental search.)"""
        if self._state is not _IDLE or self._buf or self._eof:
            return None
        end = data.find(b"\r\n\r\n")
        size = end + 4
        if end < 0 or size > self._head_max or data[0] in b"\r\n":
            return None   # partial, too large, or after an empty line: next_event() says
        whole = size == len(data)
        try:
            req = self._parse_head(_split_lines(data if whole else data[:size], "request head"), size - 2)
        except ProtocolError as exc:
            self._error = exc
            self._state = _DEAD
            raise
        if not whole:
            self._buf += memoryview(data)[size:]
        return req

    def skip_end(self) -> bool:
        """Drop the ``EndOfMessage`` next in line, for a caller that knows the body is all read;
        True when the parser then waits for the next request with nothing buffered (the next
        event would be ``NEED_DATA`` outside a message). Two event round trips fewer per
        keep-alive request."""
        if self._state is _END:
            self._state = _IDLE
        return self._state is _IDLE and not self._buf and not self._eof

    @property
    def buffered(self) -> bool:
        """Bytes are waiting that no event has returned yet."""
        return bool(self._buf)

    @property
    def buffered_size(self) -> int:
        """How many bytes are waiting that no event has returned yet."""
        return len(self._buf)

    @property
    def in_message(self) -> bool:
        """A request has started (partly buffered or its events under way)."""
        state = self._state
        if state == _IDLE:
            return bool(self._buf)
        return state not in (_CLOSED, _DEAD)

    # --- shared helpers -------------------------------------------------------

    def _find(self, terminator: bytes) -> int:
        """Index of ``terminator`` in the buffer, or -1 after checking the
        newly arrived bytes for a bare CR or LF."""
        buf = self._buf
        index = buf.find(terminator, max(self._scanned - len(terminator) + 1, 0))
        if index >= 0:
            self._scanned = 0
            return index
        if _BARE_CR_OR_LF.search(buf, max(self._scanned - 1, 0)):
            raise BadRequest(f"bare CR or LF in the {_WAITING_FOR[self._state]}")
        self._scanned = len(buf)
        return -1

    def _take(self, count: int) -> bytes:
        """Remove and return up to ``count`` bytes, copying them once."""
        buf = self._buf
        if len(buf) <= count:
            data = bytes(buf)
            buf.clear()
            return data
        with memoryview(buf) as view:
            data = bytes(view[:count])
        del buf[:count]  # cheap: a bytearray drops its head without moving the rest
        return data

    def _parse_fields(
        self, lines: list[str], what: str, size: int, watch: frozenset[str]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Header or trailer fields from their lines (``size`` bytes in all), and
        those of them whose names are in ``watch``."""
        if len(lines) > self._fields_max:
            raise HeaderFieldsTooLarge(f"more than {self._fields_max} {what} fields")
        field_max = self._field_max
        if size > field_max:  # only then can one line be too long
            for number, line in enumerate(lines, 1):
                if len(line) + 2 > field_max:
                    raise HeaderFieldsTooLarge(
                        f"{what} line {number} is longer than {field_max} bytes"
                    )
        fields = []
        append = fields.append
        watched = []
        known = _field_names
        parsed = _field_lines
        try:
            for line in lines:
                field = parsed.get(line)
                if field is None:
                    name, value = line.split(":", 1)
                    upper = known.get(name)
                    if upper is None:
                        if _TOKEN.fullmatch(name) is None:
                            raise _field_error(lines, what)
                        upper = name.upper()
                        if len(known) < _FIELD_NAMES_MAX and len(name) <= FIELD_NAME_CACHED_MAX:
                            known[name] = upper
                    field = (upper, value.strip(" \t"))
                    if len(line) <= FIELD_LINE_CACHED_MAX:
                        _remember(parsed, line, field, _FIELD_LINES_MAX)
                append(field)
                if field[0] in watch:
                    watched.append(field)
        except ValueError:
            raise _field_error(lines, what) from None
        return fields, watched

    # --- readers, one per state ----------------------------------------------

    def _read_head(self) -> Event:
        buf = self._buf
        if not buf:
            if self._eof:
                self._state = _CLOSED
                return CLOSED
            return NEED_DATA
        if self._scanned == 0 and buf[0] in b"\r\n":
            # RFC 9112 section 2.2: ignore one empty line before a request line.
            if buf[:2] != b"\r\n":
                if len(buf) == 1 and buf[0] == 13:
                    return NEED_DATA
                raise BadRequest("bare CR or LF before the request line")
            if self._skipped_empty_line:
                raise BadRequest("more than one empty line before the request line")
            self._skipped_empty_line = True
            del buf[:2]
            return self._read_head()
        scanned = self._scanned
        # Usually the whole head came in one piece: found without the incremental scan.
        end = -1 if scanned else buf.find(b"\r\n\r\n")
        if end < 0:
            end = self._find(b"\r\n\r\n")  # checks the new bytes, remembers how far
        if end < 0:
            self._check_partial_head(scanned)
            return NEED_DATA
        size = end + 4
        if size > self._head_max:
            raise HeaderFieldsTooLarge(f"request head larger than {self._head_max} bytes")
        if size == len(buf):   # the usual: nothing pipelined behind the head, no copy to make
            lines = _split_lines(buf, "request head")
            buf.clear()
        else:
            lines = _split_lines(buf[:size], "request head")
            del buf[:size]
        if scanned or self._skipped_empty_line:
            self._line_end = -1
            self._line_start = 0
            self._skipped_empty_line = False
        return self._parse_head(lines, size - 2)

    def _check_partial_head(self, scanned: int) -> None:
        """Bound a head that has not ended yet, so no client makes us buffer
        without limit; ``scanned`` is how much was looked at before."""
        buf = self._buf
        size = len(buf)
        pending_cr = buf[-1] == 13
        start = max(scanned - 1, 0)
        if self._line_end < 0:
            self._line_end = buf.find(b"\r\n", start)
            if self._line_end < 0:
                if size - pending_cr > self._line_max:
                    raise URITooLong(f"request line longer than {self._line_max} bytes")
                return
        if self._line_end > self._line_max:
            raise URITooLong(f"request line longer than {self._line_max} bytes")
        last_lf = buf.rfind(b"\n", start)
        if last_lf >= 0:
            self._line_start = last_lf + 1
        if self._line_start > self._line_end and (
            size - self._line_start - pending_cr + 2 > self._field_max
        ):
            raise HeaderFieldsTooLarge(f"a header line is longer than {self._field_max} bytes")
        if size > self._head_max:
            raise HeaderFieldsTooLarge(f"request head larger than {self._head_max} bytes")

    def _parse_head(self, lines: list[str], size: int) -> Request:
        """The request from its head's lines (``size`` bytes with their CRLFs)."""
        line = lines[0]
        if len(line) > self._line_max:
            raise URITooLong(f"request line longer than {self._line_max} bytes")
        known = _request_lines.get(line)
        if known is None:
            known = _request_line(line)
            if len(line) <= REQUEST_LINE_CACHED_MAX:
                _remember(_request_lines, line, known, _REQUEST_LINES_MAX)
        method, target, version = known
        del lines[0]
        headers, special = self._parse_fields(lines, "header", size, _SPECIAL)

        # Tuples: nothing allocated for the fields a request does not have.
        lengths: tuple[str, ...] = ()
        codings: tuple[str, ...] = ()
        connection: tuple[str, ...] = ()
        expect: tuple[str, ...] = ()
        seen_host = seen_type = False
        for name, value in special:
            if name == "HOST":   # first: nearly every request has one
                if seen_host:
                    raise BadRequest("more than one Host header")
                seen_host = True
                if value not in _valid_hosts:  # a site's requests name a few hosts
                    host = _HOST_FIELD.fullmatch(value)
                    if host is None or (value[:1] == "[" and not _valid_ip_literal(host)):
                        raise BadRequest(f"invalid Host header: {_excerpt(value)}")
                    if len(value) <= FIELD_LINE_CACHED_MAX:
                        _remember(_valid_hosts, value, None, _VALID_HOSTS_MAX)
            elif name == "CONTENT-LENGTH":
                lengths += (value,)
            elif name == "TRANSFER-ENCODING":
                codings += (value,)
            elif name == "CONNECTION":
                connection += (value,)
            elif name == "EXPECT":
                expect += (value,)
            elif name == "CONTENT-TYPE":
                if seen_type:
                    raise BadRequest("more than one Content-Type header")
                seen_type = True

        content_length = None
        chunked = False
        if method == "CONNECT" and (codings or lengths):
            # RFC 9110 section 9.3.6: CONNECT has no content; peers take the bytes after its
            # head as tunnel data, so reading them as a body would desynchronise us from them.
            raise BadRequest("CONNECT request with Content-Length or Transfer-Encoding")
        if codings:
            if lengths:
                raise BadRequest("both Content-Length and Transfer-Encoding")
            if version == (1, 0):
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            _transfer_codings(codings)
            chunked = True
        elif lengths:
            content_length = self._content_length(lengths)

        members = _USUAL_CONNECTION.get(connection) if connection else ()
        if members is None:
            members = _list_members(connection)
        if "close" in members:
            keep_alive = False
        else:
            keep_alive = version == (1, 1) or "keep-alive" in members

        expect_continue = False
        if expect:
            # Only 100-continue is defined; refuse any other whatever the
            # version (RFC 9110 section 10.1.1 allows 417 for it).
            expectations = _list_members(expect)
            for expectation in expectations:
                if expectation != "100-continue":
                    raise ExpectationFailed(f"unsupported expectation: {_excerpt(expectation)}")
            # RFC 9110 section 10.1.1: ignore 100-continue from HTTP/1.0.
            expect_continue = bool(expectations) and version == (1, 1)

        if chunked:
            self._body_total = 0
            self._state = _CHUNK_SIZE
        elif content_length:
            self._remaining = content_length
            self._state = _BODY
        else:
            self._state = _END
        return Request(
            method, target, version, headers, content_length, chunked, keep_alive, expect_continue
        )

    def _content_length(self, values: tuple[str, ...]) -> int:
        if len(values) > 1:
            raise BadRequest("more than one Content-Length header")
        value = values[0]
        if not (value.isascii() and value.isdigit()):
            raise BadRequest(f"invalid Content-Length: {_excerpt(value)}")
        maximum = self._limits.max_content_length
        # Compare lengths first: int() of a huge digit string is slow or refused.
        if len(value.lstrip("0")) > len(str(maximum)):
            raise PayloadTooLarge(f"Content-Length over {maximum}")
        length = int(value)
        if length > maximum:
            raise PayloadTooLarge(f"Content-Length over {maximum}")
        return length

    def _read_end(self) -> Event:
        self._state = _IDLE
        return _END_OF_MESSAGE

    def _read_body(self) -> Event:
        return self._read_data(_END)

    def _read_data(self, then: str) -> Event:
        """Up to the rest of the current body or chunk; `then` is the state once it is all read."""
        if not self._buf:
            return NEED_DATA
        data = self._take(self._remaining)
        self._remaining -= len(data)
        if not self._remaining:
            self._state = then
        return Data(data)

    def _read_chunk_size(self) -> Event:
        buf = self._buf
        end = self._find(b"\r\n")
        length = end if end >= 0 else len(buf) - (buf[-1:] == b"\r")
        if length > self._chunk_line_max:
            raise BadRequest("chunk size line too long")
        if end < 0:
            return NEED_DATA
        match = _CHUNK_LINE.fullmatch(buf, 0, end)
        if match is None:
            raise BadRequest(f"invalid chunk size line: {_excerpt(bytes(buf[:end]))}")
        digits, extensions = match.group(1, 2)
        del buf[: end + 2]
        limits = self._limits
        # Leading zeros add nothing to the size: only significant digits count toward the limit
        # (the line length bounds the zeros).
        if len(digits.lstrip(b"0")) > limits.max_chunk_size_digits:
            raise BadRequest(f"chunk size has more than {limits.max_chunk_size_digits} digits")
        if len(extensions) > limits.max_chunk_ext_length:
            raise BadRequest(f"chunk extensions longer than {limits.max_chunk_ext_length} bytes")
        size = int(digits, 16)
        if not size:
            self._state = _TRAILERS
            return self._read_trailers()
        self._body_total += size
        if self._body_total > limits.max_content_length:
            raise PayloadTooLarge(f"chunked body over {limits.max_content_length} bytes")
        self._remaining = size
        self._state = _CHUNK_DATA
        return self._read_chunk_data()

    def _read_chunk_data(self) -> Event:
        return self._read_data(_CHUNK_END)

    def _read_chunk_end(self) -> Event:
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = _CHUNK_SIZE
            return self._read_chunk_size()
        if buf == b"\r" or not buf:
            return NEED_DATA
        raise BadRequest("chunk data not followed by CRLF")

    def _read_trailers(self) -> Event:
        buf = self._buf
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = _IDLE
            return _END_OF_MESSAGE
        if buf == b"\r" or not buf:
            return NEED_DATA
        end = self._find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._trailers_max:
                raise HeaderFieldsTooLarge(
                    f"trailer section larger than {self._trailers_max} bytes"
                )
            return NEED_DATA
        section = buf[: end + 4]
        del buf[: end + 4]
        lines = _split_lines(section, "trailer section")
        trailers, forbidden = self._parse_fields(lines, "trailer", end + 2, _FORBIDDEN_TRAILERS)
        if forbidden:
            raise BadRequest(f"{_excerpt(forbidden[0][0])} is not allowed in a trailer section")
        self._state = _IDLE
        return EndOfMessage(trailers)

    def _read_closed(self) -> Event:
        return CLOSED

    _READERS: ClassVar[dict] = {
        _IDLE: _read_head,
        _END: _read_end,
        _BODY: _read_body,
        _CHUNK_SIZE: _read_chunk_size,
        _CHUNK_DATA: _read_chunk_data,
        _CHUNK_END: _read_chunk_end,
        _TRAILERS: _read_trailers,
        _CLOSED: _read_closed,
    }
