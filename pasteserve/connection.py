"""One client connection: read requests, run the app, write the responses.

Written blocking-style with no knowledge of the worker driving it: the sync worker calls
:meth:`Connection.process` when its selector reports the socket readable and
:meth:`Connection.expire` at :attr:`Connection.deadline`; the eventlet worker does the same
from a green thread. A connection is in one of five states:

``idle``     between requests (or before the first); waits ``keepalive`` seconds
             (``header_timeout`` before the first request), then closes silently.
``head``     part of a request head is buffered; the rest must come within
             ``header_timeout`` of its first byte, else 408.
``linger``   we answered and shut down our side, but the client may still be sending:
             read and discard for up to :data:`LINGER` seconds so that closing with unread
             bytes does not reset the connection and destroy the answer in flight.
``taken``    the app took the socket over (a websocket, see :mod:`pasteserve.takeover`):
             we write nothing more, and leave the descriptor to the app; the worker forgets us.
``closed``
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from pasteserve import __version__, nonblocking, takeover
from pasteserve.allowlist import AllowList
from pasteserve.http.errors import HeaderFieldsTooLarge, IncompleteMessage, ProtocolError, RequestTimeout
from pasteserve.http.parser import CLOSED, NEED_DATA, Data, EndOfMessage, Limits, Request, RequestParser
from pasteserve.http.proxy_protocol import BadProxyHeader, parse_proxy_header
from pasteserve.http.response import error_response, server_line
from pasteserve.nonblocking import poll_readable
from pasteserve.proxy import ProxyHeaders
from pasteserve.wsgi import EnvironBuilder, EnvironTemplate, ErrorStream, Input, Response

__all__ = ["Connection", "ServerContext", "LINGER", "RECV_SIZE"]

RECV_SIZE = 65536
LINGER = 2.0

_IDLE, _HEAD, _LINGER, _CLOSED, _TAKEN = range(5)

# wsgi.input of every request without a body: it never pulls, and reading it changes nothing.
NO_BODY = Input(lambda: b"", 0)


def _secure_scheme_headers() -> dict[str, str]:
    return {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"}


@dataclass
class ServerContext:
    """Everything a connection needs from its worker; one per worker process."""

    app: Callable
    limits: Limits
    keepalive: float = 5.0
    header_timeout: float = 10.0
    io_timeout: float = 30.0
    root_path: str = ""
    url_scheme: str = "http"
    forwarded_allow_ips: frozenset[str] = frozenset({"127.0.0.1", "::1"})
    secure_scheme_headers: dict[str, str] = field(default_factory=_secure_scheme_headers)
    proxy_headers: ProxyHeaders = field(default_factory=ProxyHeaders)   # waitress's trusted_proxy_*
    expose_tracebacks: bool = False   # a 500 page shows the app's traceback (development)
    server_software: str = f"pasteserve/{__version__}"
    max_drain: int = 65536
    error_log: logging.Logger = logging.getLogger("pasteserve.error")
    access_log: Callable[[dict, str, list[tuple[str, str]], int, float], None] | None = None
    pre_request: Callable[[Request, dict], None] | None = None
    post_request: Callable[[Request, dict, Any], None] | None = None   # gets the Response (.status, .status_code, .headers, .sent)
    worker: object | None = None
    alive: bool = True
    requests: int = 0
    # Total seconds to receive one request body while the app reads it (None: only io_timeout
    # per read). The sync worker sets it so a trickling upload gets a 408, not a liveness kill.
    body_timeout: float | None = None
    # Called when body bytes arrive: waiting for a client is not being stuck (the heartbeat).
    on_progress: Callable[[], None] | None = None
    # wait_readable(sock, seconds) -> whether bytes came; the eventlet worker waits in its hub.
    wait_readable: Callable[[socket.socket, float], bool] = poll_readable
    # PROXY protocol: the versions expected ("off", "v1", "v2", "auto") from the peers allowed.
    proxy_protocol: str = "off"
    proxy_allow: AllowList | None = None
    # Told of every request: ``begin(req, started) -> token`` once its environ is built,
    # ``end(token, status, seconds)`` once answered (the worker's status slot and metrics).
    observer: Any = None
    # Apps may take the socket over (websockets); without it, websocket upgrades are refused.
    takeover: bool = False
    multithread: bool = False   # wsgi.multithread
    # sendfile(sock, file, offset, count) -> bytes sent, for sockets that cannot block.
    sendfile: Callable[[socket.socket, Any, int, int], int] | None = None
    # (the settings it was made from, the EnvironTemplate): see environ_template().
    _template: tuple | None = field(default=None, repr=False, compare=False)

    def environ_template(self) -> EnvironTemplate:
        """The environ settings every connection shares, made again only if one of them changed."""
        key = (self.root_path, self.url_scheme, self.server_software, self.forwarded_allow_ips,
               self.secure_scheme_headers, self.proxy_headers, self.multithread)
        cached = self._template
        if cached is None or cached[0] != key:
            template = EnvironTemplate(
                root_path=self.root_path, url_scheme=self.url_scheme, server_software=self.server_software,
                forwarded_allow_ips=self.forwarded_allow_ips, secure_scheme_headers=self.secure_scheme_headers,
                proxy_headers=self.proxy_headers, multithread=self.multithread)
            cached = self._template = (key, template)
        return cached[1]


class Connection:
    """A client socket and the requests on it (see the module docstring)."""

    __slots__ = ("_sock", "_ctx", "_parser", "_errors", "_environ", "_server", "_pending",
                 "_peer", "_state", "_since", "_wait", "_body_deadline", "_proxy", "_proxied",
                 "_nonblocking", "_send_wait")

    def __init__(self, sock: socket.socket, peer: tuple | str, ctx: ServerContext,
                 local: tuple | str | None = None) -> None:
        self._sock = sock
        self._ctx = ctx
        self._peer = peer
        if isinstance(peer, tuple):  # TCP (a unix peer is a str); cheaper than sock.family, an enum lookup
            try:
                # The head and a small body leave in one send; never wait for an ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._parser = RequestParser(ctx.limits)
        self._errors = ErrorStream(ctx.error_log)
        self._environ = EnvironBuilder(sock, peer, ctx.environ_template(), errors=self._errors, local=local)
        if ctx.takeover:
            takeover.prepare(self._environ.base, sock, NO_BODY)
        self._server = server_line(ctx.server_software)
        # TLS: decrypted bytes can wait inside the SSL object where select() cannot see them.
        self._pending: Callable[[], int] | None = getattr(sock, "pending", None)
        self._state = _IDLE
        self._since = time.monotonic()
        self._wait = ctx.header_timeout  # a new connection owes us a request
        self._body_deadline = 0.0        # set by the first body read that waits on the socket
        # A worker whose selector does the waiting hands us a non-blocking socket, and it stays
        # so: reads between requests never wait (a TLS record cut short goes back to the
        # selector), and while a request runs, body reads and writes wait by themselves, up to
        # io_timeout each, only when the kernel says they must (see pasteserve.nonblocking).
        self._nonblocking = sock.gettimeout() == 0.0
        self._send_wait = ctx.io_timeout if self._nonblocking else None
        # The bytes of a PROXY protocol header so far, while one is owed before the request.
        self._proxy: bytes | None = None
        # Once the header came: the client it named (None for LOCAL/UNKNOWN), and its TLS flag.
        self._proxied: tuple[tuple[str, int] | None, bool] | None = None
        if ctx.proxy_protocol != "off" and ctx.proxy_allow is not None and ctx.proxy_allow.allows(peer):
            self._proxy = b""

    # -- what the worker calls ------------------------------------------------------

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which more bytes must arrive, else call :meth:`expire`."""
        return self._since + self._wait

    @property
    def idle(self) -> bool:
        """Between requests with nothing buffered: all of the connection's state is in the
        socket (and in :meth:`handoff_note`), so the worker may close it on shutdown or pass its
        descriptor to a sibling (not for TLS, whose session state lives in this process)."""
        return self._state == _IDLE and not self._parser.buffered and not self._proxy

    def handoff_note(self) -> bytes:
        """What a sibling given the descriptor needs besides it (see :meth:`resume`): the client
        a PROXY header named, since that header does not come again."""
        if self._proxied is None:
            return b"c"
        return b"p" + json.dumps(self._proxied).encode()

    def resume(self, note: bytes) -> None:
        """Carry on a connection a sibling handed off with ``note``, its :meth:`handoff_note`."""
        if note[:1] != b"p":
            return
        source, tls = json.loads(note[1:])
        self._proxy = None
        self._set_proxied(tuple(source) if source else None, tls)

    @property
    def head_size(self) -> int:
        """Bytes buffered for a request head still arriving (0 in any other state)."""
        return self._parser.buffered_size if self._state == _HEAD else 0

    def refuse_head(self) -> bool:
        """The worker holds too much of unfinished heads: answer this one 431 and close.

        Returns True while the connection lingers (as after any protocol error)."""
        if self._state != _HEAD:
            return self._state != _CLOSED
        return self._reject(HeaderFieldsTooLarge("the server holds too many unfinished request heads"))

    @property
    def sock(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def process(self) -> bool:
        """Read what is there and serve every complete request; False once closed."""
        if self._state == _CLOSED:
            return False
        sock = self._sock
        try:
            data = sock.recv(RECV_SIZE)
            pending = self._pending
            if pending is not None and data:
                while pending():
                    data += sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, TimeoutError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True  # nothing (or part of a TLS record) after all; keep waiting until the deadline
        except OSError:
            self.close()
            return False
        if self._state == _LINGER:
            if not data:
                self.close()
                return False
            return True
        if self._proxy is not None:
            data = self._proxy_header(data)
            if not data:   # b"" here is the header's end, not the client's: feeding it would mean EOF
                return self._state != _CLOSED
        parser = self._parser
        try:
            req = parser.whole_head(data)
        except ProtocolError as exc:
            return self._reject(exc)
        if req is None:
            parser.feed(data)
        elif not self._handle(req):
            return self._state == _LINGER
        elif parser.skip_end():   # its end, and nothing pipelined behind it
            return True
        return self._serve()

    def expire(self) -> bool:
        """The deadline passed: answer 408 if a head was under way, then close.

        Returns True while the connection lingers after the 408 (the client may still be
        sending; closing now would reset the connection and lose the answer): the worker keeps
        watching it until its new deadline, as after any other protocol error.
        """
        if self._state == _HEAD:
            try:
                self._sock.sendall(error_response(408, "Request Timeout", "the request head did not arrive in time",
                                                  self._server))
            except OSError:
                self.close()
                return False
            self._linger()
            return self._state == _LINGER
        self.close()
        return False

    def close(self) -> None:
        if self._state != _CLOSED:
            taken = self._state == _TAKEN
            self._state = _CLOSED
            self._errors.flush()
            if not taken:   # else the descriptor is the app's to close
                self._sock.close()

    # -- requests -------------------------------------------------------------------

    def _serve(self) -> bool:
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except ProtocolError as exc:
                return self._reject(exc)
            if event is NEED_DATA:
                if parser.in_message:
                    if self._state != _HEAD:
                        self._state = _HEAD
                        self._since = time.monotonic()
                        self._wait = self._ctx.header_timeout
                return True
            if event is CLOSED:  # the client closed an idle connection
                self.close()
                return False
            if type(event) is EndOfMessage:  # of a request without a body, which Input never pulls
                continue
            # A Request: _handle consumes its body, so Data never reaches here.
            if not self._handle(event):
                return self._state == _LINGER
            if parser.skip_end():   # its end, and nothing pipelined behind it
                return True

    def _proxy_header(self, data: bytes) -> bytes | None:
        """The bytes after the PROXY header once it is whole; None while it is not (or refused)."""
        buf = self._proxy + data
        try:
            result = parse_proxy_header(buf, self._ctx.proxy_protocol)
        except BadProxyHeader as exc:
            self._proxy = None
            self._reject(exc)
            return None
        if result is None:
            if not data:   # the peer closed before the header was whole
                self.close()
            self._proxy = buf
            return None
        header, used = result
        self._proxy = None
        self._set_proxied(header.source, header.tls)
        return buf[used:]

    def _set_proxied(self, source: tuple[str, int] | None, tls: bool) -> None:
        self._proxied = (source, tls)
        if source is not None:
            self._environ.set_client(source, tls)

    def _handle(self, req: Request) -> bool:
        """Serve one request; True if the connection stays open for the next."""
        ctx = self._ctx
        started = time.monotonic()
        inp = Input(self._pull, None if req.chunked else req.content_length) if req.chunked or req.content_length \
            else NO_BODY
        resp = Response(self._sock, req, inp, ctx, self._server,
                        req.keep_alive and ctx.keepalive > 0 and ctx.alive, self._send_wait)
        if req.expect_continue and req.version >= (1, 1) and (req.chunked or req.content_length):
            inp.on_first_read = resp.send_continue
        try:
            environ = self._environ.build(req, inp)
        except ProtocolError as exc:
            self._reject(exc)
            return False
        observer = ctx.observer
        token = observer.begin(req, started) if observer is not None else None
        if ctx.takeover:   # before the hook: it sees what the app will
            takeover.offer(environ, self._sock)
        if ctx.pre_request is not None:
            self._hook(ctx.pre_request, req, environ)
        upgrade = "HTTP_UPGRADE" in environ and takeover.is_websocket_upgrade(environ)
        if upgrade and not ctx.takeover:
            ctx.error_log.warning("Refused a websocket upgrade from %r to %s: %s", self._peer,
                                  environ["RAW_URI"], takeover.REFUSAL)
            self._try(resp.send_error, 400, "Bad Request", takeover.REFUSAL)
        else:
            if upgrade:
                # The app may keep this socket for hours, idle between messages: its business.
                self._sock.settimeout(None)
            self._run_app(environ, resp, inp)
            if self._state == _TAKEN:
                self._taken_over(req, environ, resp, started)
                return False
            if upgrade:
                self._sock.settimeout(ctx.io_timeout)
        if inp.error is not None:
            # The error's traceback holds the frames that read the body (and its bytes), one of
            # which holds the Input that holds the error: a cycle that only the cyclic GC frees,
            # late, so memory grew with every aborted upload. The app is done with it.
            inp.error.__traceback__ = None
        self._body_deadline = 0.0
        self._errors.flush()
        status = resp.status or "500 Internal Server Error"
        if ctx.post_request is not None:
            self._hook(ctx.post_request, req, environ, resp)
        done = time.monotonic()
        if ctx.access_log is not None:
            self._hook(ctx.access_log, environ, status, resp.headers, resp.sent, done - started)
        if observer is not None:
            try:   # _hook() inlined: this runs for every request
                observer.end(token, status, done - started)
            except Exception:
                ctx.error_log.exception("Error in the request observer")
        ctx.requests += 1

        # resp.keep_alive is what the head promised; a stop that began since must not break the
        # promise: the worker hands the idle connection on (or closes it) once it stops.
        keep = resp.keep_alive and not resp.broken
        if keep and inp is not NO_BODY and not inp.done:
            keep = inp.drain(ctx.max_drain)
        # A body that failed (even if the app swallowed the error) leaves the parser inside it:
        # what the client sends next cannot be framed, so the connection is never reused.
        keep = keep and inp.error is None
        if keep:
            self._state = _IDLE
            # Idle from now: `done` is now, unless a body was drained since.
            self._since = done if inp is NO_BODY else time.monotonic()
            self._wait = ctx.keepalive
            return True
        if resp.broken or inp.received:
            self.close()
        else:
            self._linger()
        return False

    def _run_app(self, environ: dict[str, Any], resp: Response, inp: Input) -> None:
        result = None
        ctx = self._ctx
        try:
            if ctx.takeover:
                takeover.reset()
            result = ctx.app(environ, resp.start_response)
            if ctx.takeover and takeover.handled_by_app(result):
                self._state = _TAKEN
                return
            resp.send_body(result)
        except StopIteration:
            if ctx.takeover:
                self._state = _TAKEN   # Gunicorn's way for an app to say it took the socket
            else:
                self._app_failed(environ, resp, inp)
        except Exception:
            self._app_failed(environ, resp, inp)
        finally:
            # A list (the usual result) has no close: skip the failed attribute lookup.
            close = None if type(result) is list else getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self._ctx.error_log.exception("Error closing the response iterable of %s %s",
                                                  environ["REQUEST_METHOD"], environ["RAW_URI"])

    def _app_failed(self, environ: dict[str, Any], resp: Response, inp: Input) -> None:
        """The app (or sending its response) raised; answer what can still be answered."""
        if resp.broken:
            return  # the client is gone or stopped reading: nobody to answer
        err = inp.error
        if isinstance(err, ProtocolError):
            # The request body was bad; the app only passed that on. The client's fault.
            resp.keep_alive = False
            if not resp.head_sent:
                self._try(resp.send_error, err.status, err.reason, err.detail, True)
            return
        self._ctx.error_log.exception("Error handling request %s %s", environ["REQUEST_METHOD"], environ["RAW_URI"])
        if resp.head_sent:
            resp.keep_alive = False  # the response is cut short; only closing tells the client
        else:
            # The request itself was fine, so the connection may serve the next one.
            self._try(resp.internal_error, traceback.format_exc() if self._ctx.expose_tracebacks else None)

    def _pull(self) -> bytes:
        """The next piece of the current request body for wsgi.input; b"" at its end."""
        parser = self._parser
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                ctx = self._ctx
                try:
                    if ctx.body_timeout is not None:
                        data = self._recv_body()
                    elif self._nonblocking:
                        data = nonblocking.recv(self._sock, RECV_SIZE, ctx.io_timeout)
                    else:
                        data = self._sock.recv(RECV_SIZE)
                except TimeoutError:
                    raise RequestTimeout("timed out reading the request body") from None
                except OSError as exc:
                    raise IncompleteMessage(f"connection lost while reading the request body: {exc}") from None
                if ctx.on_progress is not None:
                    ctx.on_progress()
                parser.feed(data)
                continue
            kind = type(event)
            if kind is Data:
                if event.data:
                    return event.data
                continue
            if kind is EndOfMessage:
                return b""
            raise IncompleteMessage("the connection closed in the middle of the request body")

    def _recv_body(self) -> bytes:
        """The next body bytes, waiting no longer than the body's deadline."""
        body_timeout = self._ctx.body_timeout
        self._wait_for_body(body_timeout)
        sock = self._sock
        if self._pending is None and not self._nonblocking:
            return sock.recv(RECV_SIZE)   # readable: a plain recv returns at once
        # Never wait inside recv: readable may be only part of a TLS record, which a timed recv
        # would wait for past the deadline.
        timed = not self._nonblocking
        if timed:
            sock.settimeout(0.0)
        try:
            while True:
                try:
                    return sock.recv(RECV_SIZE)
                except (ssl.SSLWantReadError, BlockingIOError):
                    self._wait_for_body(body_timeout)
        finally:
            if timed:
                sock.settimeout(self._ctx.io_timeout)

    def _wait_for_body(self, body_timeout: float) -> None:
        """Wait for body bytes only until the body's deadline (the socket's own timeout stays
        io_timeout, so nothing shortened here can cut the response short later)."""
        now = time.monotonic()
        if not self._body_deadline:
            self._body_deadline = now + body_timeout
        left = self._body_deadline - now
        if left <= 0:
            raise RequestTimeout(f"the request body did not arrive within {body_timeout:g} s")
        if self._pending is not None and self._pending():
            return   # decrypted bytes already wait inside the TLS object
        ctx = self._ctx
        end = now + min(left, ctx.io_timeout)
        # In slices, beating the heartbeat: waiting for a client is not being stuck.
        while not ctx.wait_readable(self._sock, max(0.0, min(end - time.monotonic(), 1.0))):
            if time.monotonic() >= end:
                raise RequestTimeout(f"the request body did not arrive within {body_timeout:g} s")
            if ctx.on_progress is not None:
                ctx.on_progress()

    def _taken_over(self, req: Request, environ: dict[str, Any], resp: Response, started: float) -> None:
        """The app answered on the socket itself and is done with it: log, and forget it."""
        ctx = self._ctx
        self._errors.flush()
        if ctx.post_request is not None:
            self._hook(ctx.post_request, req, environ, resp)
        if ctx.access_log is not None:
            # The app wrote the 101 handshake itself (what it may have passed to start_response
            # never reached the client); the time is the websocket's whole life.
            self._hook(ctx.access_log, environ, "101 Switching Protocols", [], 0, time.monotonic() - started)
        ctx.requests += 1

    # -- closing --------------------------------------------------------------------

    def _reject(self, exc: ProtocolError) -> bool:
        """Answer a protocol error and close; True while lingering."""
        log = self._ctx.error_log
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Bad request from %r: %s %s", self._peer, exc.status, exc.detail)
        try:
            self._sock.sendall(error_response(exc.status, exc.reason, exc.detail, self._server))
        except OSError:
            self.close()
            return False
        self._linger()
        return self._state != _CLOSED

    def _linger(self) -> None:
        # Nothing more of this client is parsed: free what it had sent (a head can be large).
        self._parser = RequestParser(self._ctx.limits)
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self._state = _LINGER
        self._since = time.monotonic()
        self._wait = LINGER

    def _hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            self._ctx.error_log.exception("Error in %s", getattr(hook, "__name__", hook))

    @staticmethod
    def _try(send: Callable[..., None], *args: Any) -> None:
        try:
            send(*args)
        except OSError:
            pass  # Response marked itself broken; the connection closes
