"""Response serialisation: status line, header block, chunked framing, error pages.

Pure functions over str/bytes; no sockets. The WSGI adapter (``pasteserve.wsgi``) decides
*when* bytes go out, this module decides *what* they look like. Every check an app can
fail raises :class:`ResponseError`, an ``AssertionError`` (as wsgiref's asserts are), which
the connection answers with a 500.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from functools import lru_cache

__all__ = [
    "LAST_CHUNK",
    "CONTINUE",
    "ResponseError",
    "AppHeaders",
    "body_forbidden",
    "check_headers",
    "chunk",
    "date_line",
    "error_page",
    "error_response",
    "render_head",
    "server_line",
    "status_line",
]

LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# RFC 9110 5.6.2 token characters.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# RFC 9110 7.6.1 and PEP 3333: the app must leave these to the server.
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-authenticate", "proxy-authorization")
)

# What the header-name cache remembers about a valid name.
_PLAIN, _LENGTH, _DATE, _SERVER, _HOP, _CONNECTION = range(6)
_SPECIAL = {"content-length": _LENGTH, "date": _DATE, "server": _SERVER}
_SPECIAL.update(dict.fromkeys(_HOP_BY_HOP, _HOP))
_SPECIAL["connection"] = _CONNECTION

# Apps send the same few header names over and over: validating a name once and then
# looking it up is cheaper than scanning it per response. Bounded so that an app
# inventing names per request cannot grow it forever.
_NAME_CACHE_MAX = 1024
_names: dict[str, int] = {}

# Whole header items repeat too (Content-Type, Vary, X-Frame-Options ...): one checked once is
# rendered from here afterwards, already encoded, with its value as an int for a Content-Length
# (they repeat as bodies of the same size do; None for the others). Not Date and Server, whose
# kind needs handling every time. Bounded like the names, and only short values: a value an app
# never repeats (a cookie, a token) would otherwise fill it, with megabytes when values are long.
# Content-Length items only while it is less than half full: many body sizes cannot keep the
# plain items out.
_ITEMS_MAX = 2048
_ITEM_VALUE_CACHED_MAX = 256
_LENGTH_VALUE_CACHED_MAX = 32
_items: dict[tuple[str, str], tuple[bytes, int | None]] = {}

# Status strings repeat even more ("200 OK"); same idea.
_STATUS_CACHE_MAX = 256
_statuses: dict[str, tuple[int, bytes]] = {}

# [the time at which the cached line goes stale, the line]
_date_cache: list = [0.0, b""]


class ResponseError(AssertionError):
    """The application broke a PEP 3333 / HTTP rule in its status or headers."""


def date_line(now: float | None = None) -> bytes:
    """``Date: <IMF-fixdate>\\r\\n``, formatted once per second."""
    if now is None:
        now = time.time()
    cache = _date_cache
    # One float comparison per response; a clock that steps back re-renders too.
    if not cache[0] - 1.0 <= now < cache[0]:
        second = int(now)
        cache[1] = b"Date: %s\r\n" % formatdate(second, usegmt=True).encode("ascii")
        cache[0] = second + 1.0
    return cache[1]


@lru_cache(maxsize=16)  # called per connection, with the one configured string
def server_line(server_software: str) -> bytes:
    """``Server: ...\\r\\n`` for a configured server string (validated like app headers)."""
    if not server_software:
        return b""
    _check_value("Server", server_software)
    return b"Server: %s\r\n" % server_software.encode("latin-1")


def status_line(status: object) -> tuple[int, bytes]:
    """Validate a WSGI status string; return (code, ``HTTP/1.1 <status>\\r\\n``)."""
    if type(status) is not str:
        raise ResponseError(f"status must be a str, not {type(status).__name__}")
    cached = _statuses.get(status)
    if cached is not None:
        return cached
    # PEP 3333: three digits, one space, a reason phrase (which may be empty).
    if len(status) < 4 or not status[:3].isdigit() or status[3] != " " or not status[:3].isascii():
        raise ResponseError(f"invalid status {status!r}: want '<3 digits> <reason>'")
    code = int(status[:3])
    # 1xx are interim answers the server sends itself (100 Continue); an app's response is final.
    if not 200 <= code <= 599:
        raise ResponseError(f"invalid status code in {status!r}: an app's response needs 200 to 599")
    _check_value("status", status)
    try:
        line = b"HTTP/1.1 %s\r\n" % status.encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"status {status!r} is not latin-1") from None
    result = (code, line)
    if len(_statuses) < _STATUS_CACHE_MAX:
        _statuses[status] = result
    return result


def _check_name(name: object) -> int:
    if type(name) is not str:
        raise ResponseError(f"header name must be a str, not {type(name).__name__}: {name!r}")
    if not name or not _TOKEN.issuperset(name):
        raise ResponseError(f"invalid header name {name!r}")
    kind = _SPECIAL.get(name.lower(), _PLAIN)
    if len(_names) < _NAME_CACHE_MAX:
        _names[name] = kind
    return kind


def _check_value(name: str, value: object) -> None:
    if type(value) is not str:
        raise ResponseError(f"value of header {name!r} must be a str, not {type(value).__name__}")
    # isprintable() is a fast C scan that is True for almost every real value; only the
    # rest needs the exact rule (HTAB and obs-text 0x80-0xFF allowed, other CTLs not).
    if not value.isprintable():
        for ch in value:
            o = ord(ch)
            if (o < 0x20 and ch != "\t") or o == 0x7F or o > 0xFF:
                raise ResponseError(f"invalid character {ch!r} in value of header {name!r}")


class AppHeaders:
    """An app's header list, validated once and rendered to the wire form."""

    __slots__ = ("block", "content_length", "has_date", "has_server", "close")

    def __init__(self, block: bytes, content_length: int | None, has_date: bool, has_server: bool,
                 close: bool = False):
        self.block = block
        self.content_length = content_length
        self.has_date = has_date
        self.has_server = has_server
        self.close = close   # the app sent "Connection: close"


def check_headers(headers: object) -> AppHeaders:
    """Validate WSGI response headers; raise ResponseError on anything PEP 3333 forbids."""
    if type(headers) is not list:
        raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
    lines = []
    content_length = None
    has_date = has_server = close = False
    names = _names
    items = _items
    for item in headers:
        if type(item) is not tuple:
            raise ResponseError(f"each header must be a (name, value) tuple, not {item!r}")
        try:
            known = items.get(item)
        except TypeError:  # an unhashable member: the checks below name it
            known = None
        # Equal to a checked item; exact types too, as equality alone would let a str subclass in.
        if known is not None and type(item[0]) is str and type(item[1]) is str:
            line, length = known
            if length is not None:
                if content_length is not None:
                    raise ResponseError("more than one Content-Length header")
                content_length = length
            lines.append(line)
            continue
        try:
            name, value = item
        except ValueError:
            raise ResponseError(f"each header must be a (name, value) tuple, not {item!r}") from None
        kind = names.get(name) if type(name) is str else None
        if kind is None:
            kind = _check_name(name)
        if type(value) is not str or not value.isprintable():  # the common case without a call
            _check_value(name, value)
        if kind:
            if kind == _CONNECTION:
                # Only "close" (eventlet.websocket and many apps send it with a refusal): the
                # server frames the connection and writes its own Connection header.
                if value.strip(" \t").lower() != "close":
                    raise ResponseError(f"hop-by-hop header {name!r} is not allowed from a WSGI app"
                                        " (only \"Connection: close\")")
                close = True
                continue
            if kind == _HOP:
                raise ResponseError(f"hop-by-hop header {name!r} is not allowed from a WSGI app")
            if kind == _LENGTH:
                if content_length is not None:
                    raise ResponseError("more than one Content-Length header")
                digits = value if value.isdigit() else value.strip(" \t")  # rarely anything to strip
                if not digits.isdigit() or not digits.isascii():
                    raise ResponseError(f"invalid Content-Length {value!r}")
                content_length = int(digits)
            elif kind == _DATE:
                has_date = True
            else:
                has_server = True
        try:
            line = f"{name}: {value}\r\n".encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ResponseError(f"header value is not latin-1: {exc.object[exc.start:exc.end]!r}") from None
        if kind == _LENGTH:
            if len(items) < _ITEMS_MAX // 2 and len(value) <= _LENGTH_VALUE_CACHED_MAX:
                items[item] = (line, content_length)
        elif not kind and len(items) < _ITEMS_MAX and len(value) <= _ITEM_VALUE_CACHED_MAX:
            items[item] = (line, None)
        lines.append(line)
    return AppHeaders(b"".join(lines), content_length, has_date, has_server, close)


def body_forbidden(method: str, code: int) -> bool:
    """RFC 9110 6.4.1: HEAD responses and 1xx/204/304 never carry content."""
    return method == "HEAD" or code < 200 or code == 204 or code == 304


def render_head(status: bytes, server: bytes, headers: AppHeaders, framing: bytes) -> bytes:
    """The whole response head.

    ``status`` is a :func:`status_line`, ``server`` a :func:`server_line`, ``framing`` the
    headers the server adds itself (Content-Length / Transfer-Encoding / Connection lines).
    """
    date = b""
    if not headers.has_date:
        date = _date_cache[1]
        now = time.time()
        if not _date_cache[0] - 1.0 <= now < _date_cache[0]:  # date_line()'s check, without the call
            date = date_line(now)
    return b"".join(
        (
            status,
            b"" if headers.has_server else server,
            date,
            headers.block,
            framing,
            b"\r\n",
        )
    )


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``data`` must not be empty: that would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def error_page(status: int, reason: str, detail: str = "", max_detail: int = 200) -> bytes:
    """The text/plain body of a page the server sends on its own behalf."""
    body = f"{status} {reason}\n"
    if detail:
        # The detail may echo client bytes: keep it short and printable ASCII.
        body += detail[:max_detail].encode("ascii", "backslashreplace").decode("ascii") + "\n"
    return body.encode("ascii")


def error_response(status: int, reason: str, detail: str = "", server: bytes = b"",
                   close: bool = True, head_only: bool = False, max_detail: int = 200) -> bytes:
    """A complete short text/plain response (just its head when ``head_only``)."""
    payload = error_page(status, reason, detail, max_detail)
    head = b"HTTP/1.1 %d %s\r\n%s%sContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        reason.encode("ascii"),
        server,
        date_line(),
        len(payload),
        b"Connection: close\r\n" if close else b"",
    )
    return head if head_only else head + payload
