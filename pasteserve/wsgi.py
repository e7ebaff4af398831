"""The PEP 3333 adapter: environ, wsgi.input, wsgi.errors, file_wrapper, start_response.

Nothing here reads the socket: request bytes reach :class:`Input` through a ``pull``
callable supplied by the connection. :class:`Response` writes to the socket it is given (waiting
for room itself when the socket is non-blocking) and decides the framing of each response.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import stat
from functools import lru_cache
from typing import Any, Callable, Iterable
from urllib.parse import unquote_to_bytes

from pasteserve import nonblocking
from pasteserve.http.errors import BadRequest
from pasteserve.http.parser import FIELD_NAME_CACHED_MAX
from pasteserve.http.response import (
    CONTINUE,
    LAST_CHUNK,
    AppHeaders,
    ResponseError,
    body_forbidden,
    check_headers,
    chunk,
    error_page,
    error_response,
    render_head,
    status_line,
)
from pasteserve.proxy import ProxyHeaders, trusted_peer

__all__ = ["CLIENT_CERT_KEY", "PEERCERT_KEY", "EnvironBuilder", "EnvironTemplate", "ErrorStream", "FileWrapper",
           "Input", "Response", "peer_certificate"]

# Read size of FileWrapper iteration (the fallback when sendfile is not possible).
FILE_BLOCK = 65536


class FileWrapper:
    """``wsgi.file_wrapper``: iterates a file-like object in blocks.

    :class:`Response` recognises it and sends a regular file with ``socket.sendfile``.
    """

    def __init__(self, filelike: Any, blksize: int = FILE_BLOCK) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


class ErrorStream:
    """``wsgi.errors``: text written by the app goes to the error log.

    Text is collected until ``flush()`` (the connection flushes after every request, and
    long text is flushed early), so a traceback printed in many writes becomes one record.
    """

    __slots__ = ("_log", "_parts", "_size")
    _FLUSH_AT = 8192

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._parts: list[str] = []
        self._size = 0

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            s = bytes(s).decode("utf-8", "replace")
        self._parts.append(s)
        self._size += len(s)
        if self._size >= self._FLUSH_AT:
            self.flush()
        return len(s)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._parts:
            text = "".join(self._parts).rstrip("\n")
            self._parts.clear()
            self._size = 0
            if text:
                self._log.error("%s", text)


class Input:
    """``wsgi.input`` over one request body.

    ``pull()`` returns the next piece of the body, ``b""`` at its end, or raises a
    ``ProtocolError`` (bad chunk, timeout, disconnect), which is recorded in
    :attr:`error` so the connection can answer it even if the app swallows it.
    :attr:`on_first_read`, when set, runs once before the first pull: the connection
    sets it to send ``100 Continue``.
    """

    __slots__ = ("_pull", "_buf", "_done", "on_first_read", "_length", "consumed", "error")

    def __init__(self, pull: Callable[[], bytes], length: int | None = None) -> None:
        self._pull = pull
        self._buf = bytearray()
        self._done = length == 0  # nothing to pull: the connection takes the end from the parser
        self.on_first_read: Callable[[], None] | None = None
        self._length = length  # None for a chunked body
        self.consumed = 0  # bytes pulled so far (some may still be in our buffer)
        self.error: Exception | None = None

    @property
    def done(self) -> bool:
        """The whole body has been pulled from the connection."""
        return self._done

    @property
    def received(self) -> bool:
        """The client has nothing more to send for this request (no body, or all of it read)."""
        return self.error is None and (self._done or self._length == 0)

    def _next(self) -> bytes:
        if self._done:
            if self.error is not None:
                raise self.error
            return b""
        if self.on_first_read is not None:
            first, self.on_first_read = self.on_first_read, None
            first()
        try:
            data = self._pull()
        except Exception as exc:
            self.error = exc
            self._done = True
            raise
        if data:
            self.consumed += len(data)
            if self.consumed == self._length:
                # All of a Content-Length body: the connection takes its end from the parser,
                # so no further pull (and no drain after the app) is needed.
                self._done = True
        else:
            self._done = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            if not buf:
                # Common case (read the whole body): no copy for a one-piece body.
                first = self._next()
                if not first:
                    return b""
                second = self._next()
                if not second:
                    return first
                parts = [first, second]
            else:
                parts = [bytes(buf)]
                buf.clear()
            while True:
                data = self._next()
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if not buf and size:
            data = self._next()
            if len(data) == size or not data:
                return data  # the usual read of a whole body that came in one piece: no copy
            buf += data
        while len(buf) < size:
            data = self._next()
            if not data:
                break
            buf += data
        out = bytes(buf[:size])
        del buf[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        limit = -1 if size is None else size
        start = 0
        while True:
            end = buf.find(b"\n", start) + 1
            if end:
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)
            data = self._next()
            if not data:
                end = len(buf)
                break
            buf += data
        if 0 <= limit < end:
            end = limit
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if line:
            return line
        raise StopIteration

    def blocks_reuse(self, max_drain: int) -> bool:
        """Known now that the connection cannot be reused after this response?

        True after a body error, when the client still waits for ``100 Continue`` (it
        may never send the body), or when more than ``max_drain`` bytes remain unread.
        """
        if self._done:
            return self.error is not None
        if self.on_first_read is not None:
            return True
        return self._length is not None and self._length - self.consumed > max_drain

    def drain(self, max_drain: int) -> bool:
        """Discard the rest of the body; False if that is impossible or too much."""
        self._buf.clear()
        if self.blocks_reuse(max_drain):
            return False
        start = self.consumed
        try:
            while self._next():
                if self.consumed - start > max_drain:
                    return False
        except Exception:
            return False
        return True


_HEADER_KEYS_MAX = 1024
# Parser header name (upper case) -> environ key, or "" for names we drop.
_header_keys: dict[str, str] = {"CONTENT-TYPE": "CONTENT_TYPE", "CONTENT-LENGTH": "CONTENT_LENGTH"}

_PROTOCOLS = {(1, 1): "HTTP/1.1", (1, 0): "HTTP/1.0"}


def _header_key(name: str) -> str:
    # A "_" in a name would make it indistinguishable from "-" once in the environ
    # (HTTP_X_USER from X-User or X_User): such fields are dropped, never guessed.
    key = "" if "_" in name else "HTTP_" + name.replace("-", "_")
    if len(_header_keys) < _HEADER_KEYS_MAX and len(name) <= FIELD_NAME_CACHED_MAX:
        _header_keys[name] = key
    return key


def _path_of(target: str) -> tuple[str, str | None]:
    """The path and, for absolute-form, the authority of a target that is not origin-form."""
    scheme_end = target.find("://")
    if scheme_end > 0:
        # absolute-form: the path starts at the first "/" after the authority.
        slash = target.find("/", scheme_end + 3)
        end = slash if slash >= 0 else len(target)
        authority = target[scheme_end + 3:end].rpartition("@")[2]
        return (target[slash:] if slash >= 0 else "/"), authority
    # asterisk-form ("OPTIONS *") and authority-form ("CONNECT host:port") name no
    # resource: PATH_INFO is "" (CGI wants it empty or starting with "/"); RAW_URI
    # keeps the target.
    return "", None


def _split_host(host: str, default_port: str) -> tuple[str, str]:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end > 0:
            port = host[end + 2:] if host[end + 1:end + 2] == ":" else ""
            return host[1:end], port or default_port
    name, _, port = host.partition(":")
    return name, port or default_port


PEERCERT_KEY = "pasteserve.peercert"
CLIENT_CERT_KEY = "SSL_CLIENT_CERT"


def peer_certificate(sock: ssl.SSLSocket) -> dict[str, Any]:
    """Environ entries for a verified TLS client certificate (none without one).

    ``pasteserve.peercert``: the dict of ``SSLSocket.getpeercert()`` (subject, issuer,
    notAfter, subjectAltName, ...); ``SSL_CLIENT_CERT``: the certificate in PEM, under
    mod_ssl's name that apps behind Apache already read.
    """
    try:
        info = sock.getpeercert()
        der = sock.getpeercert(binary_form=True)
    except (ValueError, OSError):   # not connected any more, or no handshake
        return {}
    if not info or not der:
        return {}   # none sent, or not verified (cert_reqs = none asks for none)
    return {PEERCERT_KEY: info, CLIENT_CERT_KEY: ssl.DER_cert_to_PEM_cert(der)}


# Per connection, these would be the costliest part of its setup (parsing the peer's address
# takes more than serving a request); their inputs come from the settings and the few peers
# a worker sees, so they are computed once per distinct input.
@lru_cache(maxsize=1024)
def _trusted_peer(address: str, allow: frozenset[str]) -> bool:
    return trusted_peer(address, allow)


@lru_cache(maxsize=16)
def _scheme_keys(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    """(environ key, lower-case value meaning https) for each trusted scheme header, and the keys."""
    keys = tuple(("HTTP_" + name.upper().replace("-", "_"), value.lower()) for name, value in headers)
    return keys, frozenset(key for key, _ in keys)


class EnvironTemplate:
    """What every connection's environ base shares: the settings' part, worked out once per
    worker instead of per connection (it cost more than half of a connection's setup)."""

    __slots__ = ("root", "url_scheme", "common", "allow", "scheme_keys", "proxy")

    def __init__(self, *, root_path: str = "", url_scheme: str = "http", server_software: str = "",
                 forwarded_allow_ips: frozenset[str] | set[str] = frozenset(),
                 secure_scheme_headers: dict[str, str] | None = None,
                 proxy_headers: ProxyHeaders | None = None, multithread: bool = False) -> None:
        self.root = root_path.rstrip("/")
        self.url_scheme = url_scheme
        self.common: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": server_software,
            "SCRIPT_NAME": self.root,
        }
        self.allow = frozenset(forwarded_allow_ips)
        # Each indexed by whether the peer is trusted with forwarded headers.
        untrusted: tuple[tuple[tuple[str, str], ...], frozenset[str]] = ((), frozenset())
        self.scheme_keys = (
            untrusted,
            _scheme_keys(tuple(secure_scheme_headers.items())) if secure_scheme_headers else untrusted,
        )
        self.proxy = tuple(proxy_headers if proxy_headers is not None and proxy_headers.active(trusted) else None
                           for trusted in (False, True))


class EnvironBuilder:
    """Builds WSGI environs for one connection: a prepared base dict, copied per request."""

    __slots__ = ("_root", "_url_scheme", "_unix", "base", "_tls", "_sock", "_scheme_keys",
                 "_scheme_key_set", "_trusted", "_proxy")

    def __init__(self, sock: socket.socket, peer: tuple | str | bytes, template: EnvironTemplate | None = None, *,
                 errors: ErrorStream | None = None, local: tuple | str | None = None) -> None:
        """``template``: the worker's settings (default ones if None); ``local``: the socket's own
        address when the caller knows it (its listener's)."""
        if template is None:
            template = EnvironTemplate()
        self._root = template.root
        self._url_scheme = template.url_scheme
        base = template.common.copy()
        base["wsgi.errors"] = errors if errors is not None else ErrorStream(logging.getLogger("pasteserve.error"))
        if isinstance(peer, tuple):
            base["REMOTE_ADDR"] = peer[0]
            base["REMOTE_PORT"] = str(peer[1])
            trusted = _trusted_peer(peer[0], template.allow)
        else:
            # Unix socket: the peer has no address (Gunicorn passes "" too). Only local
            # processes can connect, typically a front proxy, so it is trusted like one.
            base["REMOTE_ADDR"] = peer.decode("utf-8", "replace") if isinstance(peer, bytes) else peer
            trusted = True
        if local is None:
            local = sock.getsockname()
        self._unix = not isinstance(local, tuple)
        if not self._unix:
            base["SERVER_NAME"] = local[0]
            base["SERVER_PORT"] = str(local[1])
        self.base = base
        # The client certificate is read at the first request: by then the handshake is done.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._sock = sock
        self._scheme_keys, self._scheme_key_set = template.scheme_keys[trusted]
        self._trusted = trusted
        self._proxy = template.proxy[trusted]

    def set_client(self, client: tuple[str, int], tls: bool) -> None:
        """The client a PROXY protocol header names, in place of the socket's peer.

        The socket's peer (the proxy) stays the one whose forwarded headers are trusted or not.
        """
        self.base["REMOTE_ADDR"] = client[0]
        self.base["REMOTE_PORT"] = str(client[1])
        if tls:
            self.base["wsgi.url_scheme"] = self._url_scheme = "https"

    def build(self, req: Any, wsgi_input: Input) -> dict[str, Any]:
        """The environ for a parsed request (``pasteserve.http.parser.Request``)."""
        if self._tls:
            self._tls = False
            self.base.update(peer_certificate(self._sock))
        env = self.base.copy()
        target = req.target
        if "#" in target:
            target = target.partition("#")[0]
        path, _, query = target.partition("?")
        authority = None
        if path[:1] != "/":
            path, authority = _path_of(path)
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        root = self._root
        if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
            path = path[len(root):]
        env["REQUEST_METHOD"] = req.method
        env["RAW_URI"] = req.target
        env["PATH_INFO"] = path
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(req.version) or "HTTP/%d.%d" % req.version
        env["wsgi.input"] = wsgi_input
        keys = _header_keys
        for name, value in req.headers:
            key = keys.get(name)
            if key is None:
                key = _header_key(name)
            if not key:
                continue
            if key in env:
                env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                env[key] = value
        if authority is not None:
            # RFC 9112 3.2.2: with an absolute-form target the server ignores Host.
            env["HTTP_HOST"] = authority
        # In C, over the few scheme keys (a keys view against a set iterates the set).
        if self._scheme_keys and not env.keys().isdisjoint(self._scheme_key_set):
            self._apply_scheme_headers(env)
        if self._unix:
            default_port = "443" if env["wsgi.url_scheme"] == "https" else "80"
            env["SERVER_NAME"], env["SERVER_PORT"] = _split_host(env.get("HTTP_HOST") or "localhost", default_port)
        if self._proxy is not None:
            self._proxy.apply(env, self._trusted)
        return env

    def _apply_scheme_headers(self, env: dict[str, Any]) -> None:
        scheme = None
        for key, secure_value in self._scheme_keys:
            value = env.get(key)
            if value is None:
                continue
            this = "https" if value.strip().lower() == secure_value else "http"
            if scheme is not None and this != scheme:
                raise BadRequest("conflicting secure scheme headers")
            scheme = this
        if scheme is not None:
            env["wsgi.url_scheme"] = scheme


# Response framing, decided when the head is sent.
_NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)

_JOIN_MAX = 65536

_GENERIC_500 = "The server encountered an unexpected error; it has been logged."
_TRACEBACK_MAX = 65536


class Response:
    """start_response, write() and the body loop for one request.

    ``keep_alive`` starts as what the request allows and ends as the final word on
    whether the connection may serve another request after this response.
    """

    __slots__ = (
        "sock", "status", "headers", "code", "head_sent", "sent", "keep_alive", "broken",
        "_method", "_http10", "_input", "_ctx", "_server", "_line", "_app",
        "_mode", "_remaining", "_warned", "_wait",
    )

    @property
    def status_code(self) -> int:
        """Gunicorn's name, for post_request hooks written for it."""
        return self.code

    def __init__(self, sock: socket.socket, req: Any, wsgi_input: Input, ctx: Any,
                 server: bytes, keep_alive: bool,
                 wait: float | None = None) -> None:
        self.sock = sock
        # None: the socket waits by itself (timeout mode, or green); else it is non-blocking and a
        # send waits up to this long for room, only when it must (see pasteserve.nonblocking).
        self._wait = wait
        self.status: str | None = None  # as given by the app (or our error page)
        self.headers: list[tuple[str, str]] = []
        self.code = 0
        self.head_sent = False
        self.sent = 0  # body bytes sent, without framing
        self.keep_alive = keep_alive
        self.broken = False  # a send failed: the client is gone or stalled
        self._method = req.method
        self._http10 = req.version < (1, 1)
        self._input = wsgi_input
        self._ctx = ctx  # reads .alive, .max_drain, .error_log
        self._server = server
        self._line = b""
        self._app: AppHeaders | None = None
        self._mode = _NONE
        self._remaining = 0
        self._warned = False

    # -- PEP 3333 callables -------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        code, line = status_line(status)
        app = check_headers(headers)
        self.status, self.headers, self.code, self._line, self._app = status, headers, code, line, app
        return self.write

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray)):
                raise ResponseError(f"response body must be bytes, not {type(data).__name__}")
            data = bytes(data)
        if self.head_sent:
            if data:
                self._send(self._frame(data))
        elif data:  # PEP 3333: the head leaves with the first non-empty block
            self._send_head(self._head(None), self._frame(data))
        elif self._app is None:
            raise ResponseError("write() called before start_response()")

    # -- the body -----------------------------------------------------------------

    def send_body(self, result: Iterable[bytes]) -> None:
        """Send the app's iterable and end the response (not closing the iterable)."""
        if not self.head_sent:
            kind = type(result)
            if kind is list or kind is tuple:
                # All of it exists already: one send with an exact Content-Length.
                body = result[0] if len(result) == 1 else b"".join(result)  # type: ignore[index]
                if type(body) is not bytes:
                    if not isinstance(body, bytearray):
                        raise ResponseError(f"response body must be bytes, not {type(body).__name__}")
                    body = bytes(body)
                head = self._head(len(body))
                if self._mode == _LENGTH and self._remaining == len(body):
                    # The usual: the body is exactly what the head announced; nothing to frame
                    # and nothing left to check at the end.
                    self._remaining = 0
                    self.sent = len(body)
                    self._send_head(head, body)
                    return
                self._send_head(head, self._frame(body))
                self._end()
                return
            if kind is FileWrapper and self._send_file(result):  # type: ignore[arg-type]
                self._end()
                return
        write = self.write
        for data in result:
            write(data)
        self._end()

    def _end(self) -> None:
        if not self.head_sent:
            if self._app is None:
                raise ResponseError("the application did not call start_response()")
            self._send(self._head(0))
        if self._mode == _CHUNKED:
            self._send(LAST_CHUNK)
        elif self._mode == _LENGTH and self._remaining:
            self._ctx.error_log.error(
                "%s %s: the application sent %d bytes less than its Content-Length; closing the connection",
                self._method, self.status, self._remaining)
            self.keep_alive = False
        elif self._mode == _CLOSE:
            self.keep_alive = False

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with sendfile(2); False to fall back to iteration."""
        if isinstance(self.sock, ssl.SSLSocket):
            return False
        f = wrapper.filelike
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            offset = f.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode) or self._app is None:
            return False
        size = max(st.st_size - offset, 0)
        self._send(self._head(size))
        if self._mode == _NONE:
            return True
        count = size if self._mode == _CLOSE else min(size, self._remaining)
        if count:
            sendfile = getattr(self._ctx, "sendfile", None)
            try:
                sent = sendfile(self.sock, f, offset, count) if sendfile else self.sock.sendfile(f, offset, count)
            except (ValueError, NotImplementedError, AttributeError):
                # The socket cannot sendfile (non-blocking, e.g. green): copy through it.
                f.seek(offset)
                for data in wrapper:
                    self.write(data)
                return True
            except OSError:
                self.broken = True
                self.keep_alive = False
                raise
            self.sent += sent
            if self._mode == _LENGTH:
                self._remaining -= sent
        return True

    def send_error(self, status: int, reason: str, detail: str = "", close: bool = False,
                   max_detail: int = 200) -> None:
        """Answer with a short server-made page instead of the app's response."""
        keep = self.keep_alive and not close and self._ctx.alive and not self._input.blocks_reuse(self._ctx.max_drain)
        head_only = body_forbidden(self._method, status)
        data = error_response(status, reason, detail, self._server, close=not keep, head_only=head_only,
                              max_detail=max_detail)
        self.keep_alive = keep
        self.status = f"{status} {reason}"
        self.code = status
        self.headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.head_sent = True
        self._mode = _NONE
        self._send(data)
        if not head_only:
            self.sent = len(error_page(status, reason, detail, max_detail))

    def internal_error(self, traceback_text: str | None = None) -> None:
        """500; with ``traceback_text`` (expose_tracebacks) the page shows it instead of a generic line."""
        if traceback_text:
            self.send_error(500, "Internal Server Error", traceback_text, max_detail=_TRACEBACK_MAX)
        else:
            self.send_error(500, "Internal Server Error", _GENERIC_500)

    # -- framing ------------------------------------------------------------------

    def _head(self, body_len: int | None) -> bytes:
        """Render the head and fix the framing; ``body_len`` is the whole body's length
        when it is known (the app gave no Content-Length)."""
        app = self._app
        if app is None:
            raise ResponseError("the response body started before start_response() was called")
        keep = (self.keep_alive and not app.close and self._ctx.alive
                and not self._input.blocks_reuse(self._ctx.max_drain))
        code = self.code
        framing = b""
        if code < 200 or code == 204 or code == 304 or self._method == "HEAD":  # body_forbidden(), inlined
            self._mode = _NONE
            if app.content_length is not None and (code < 200 or code == 204):
                # RFC 9110 8.6: never a Content-Length on 1xx or 204.
                app = check_headers([h for h in self.headers if h[0].lower() != "content-length"])
        elif app.content_length is not None:
            self._mode = _LENGTH
            self._remaining = app.content_length
        elif body_len is not None:
            self._mode = _LENGTH
            self._remaining = body_len
            framing = b"Content-Length: %d\r\n" % body_len
        elif not self._http10:
            self._mode = _CHUNKED
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            self._mode = _CLOSE
            keep = False
        if not keep:
            framing += b"Connection: close\r\n"
        elif self._http10:
            framing += b"Connection: keep-alive\r\n"
        self.keep_alive = keep
        self.head_sent = True
        return render_head(self._line, self._server, app, framing)

    def _frame(self, data: bytes) -> bytes:
        mode = self._mode
        if mode == _LENGTH:
            if len(data) > self._remaining:
                if not self._warned:
                    self._warned = True
                    self._ctx.error_log.error(
                        "%s %s: the application sent more than its Content-Length; extra bytes dropped",
                        self._method, self.status)
                data = data[:self._remaining]
            self._remaining -= len(data)
        elif mode == _CHUNKED:
            self.sent += len(data)
            return chunk(data)
        elif mode == _NONE:
            return b""
        self.sent += len(data)
        return data

    def _send_head(self, head: bytes, data: bytes) -> None:
        # One send for the head and a first block of ordinary size; a large block would
        # cost a copy bigger than the extra system call it saves.
        if len(data) <= _JOIN_MAX:
            self._send(head + data)
        else:
            self._send(head)
            self._send(data)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            wait = self._wait
            if wait is None:
                self.sock.sendall(data)
                return
            try:
                sent = self.sock.send(data)
            except nonblocking.WOULD_BLOCK:
                sent = 0
            if sent != len(data):   # the send buffer is full: wait for the client
                nonblocking.sendall(self.sock, memoryview(data)[sent:], wait)
        except OSError:
            self.broken = True
            self.keep_alive = False
            raise

    def send_continue(self) -> None:
        """``100 Continue``, unless a final response has started (then it is too late)."""
        if not self.head_sent:
            self._send(CONTINUE)
