"""What every worker does, whatever its concurrency: boot, signals, liveness, retirement.

Signals a worker answers (the master sends the first two; see docs/signals.md):
  TERM        graceful stop: finish in-flight requests, close idle connections, exit
  HUP         retire (reload, fewer workers): like TERM, but idle keep-alive connections are
              handed to sibling workers instead of being closed, so their clients see nothing
  INT, QUIT   fast stop (worker_int hook)
  ABRT        the master found us silent past `timeout` (worker_abort hook), exit at once
  USR1        reopen log files

Handlers only take note (and, to leave at once, raise SystemExit in whatever code they
interrupted): the hooks and the log reopening run outside them, once that code has unwound
or when the worker's loop comes round, never in the middle of a log write or an allocation.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import random
import signal
import socket
import sys
import time
import traceback
from typing import Any

from .. import logs, metrics, reloader, users
from ..allowlist import AllowList
from ..connection import Connection, ServerContext
from ..green import original
from ..hooks import HookRequest
from ..http.parser import Limits
from ..loader import AppLoadError
from ..proctitle import set_title
from ..proxy import ProxyHeaders

log = logging.getLogger(logs.ERROR_LOGGER)

# Most hand-off messages a stopping worker takes from the queue (the kernel queues 512 by default).
HANDOFF_DRAIN = 1024
# Room for a hand-off message: Connection.handoff_note, at most a PROXY header's client.
HANDOFF_NOTE_MAX = 256
# accept() errors that mean this process (or the system) ran out of something, not a client failing.
STARVED_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Seconds accepting pauses once descriptors ran out (a connection closing resumes it sooner).
ACCEPT_PAUSE = 0.5
# Seconds without a failed accept() that end an out-of-descriptors episode.
STARVED_QUIET = 2.0

# How long a stopping worker keeps watching its idle keep-alive connections (bounded by
# graceful_timeout). A proxy may be sending on one right now: closing it would make the proxy fail
# that request (nginx retries a GET elsewhere, never a POST). Within the window a request that
# arrives is answered with `Connection: close`, so the proxy drops the connection itself; idle
# connections still open at its end were not picked by the proxy for that long, and are closed.
# Not under a development reloader (see Worker.drain_window).
DRAIN_WINDOW = 2.0


def _access_logging() -> bool:
    # On when `accesslog` gave the logger a handler, or when an INI's [loggers] routes it somewhere.
    logger = logging.getLogger(logs.ACCESS_LOGGER)
    return logger.isEnabledFor(logging.INFO) and logger.hasHandlers()


class Worker:
    def __init__(self, *, age: int, ppid: int, listeners: list[socket.socket], source: Any, app: Any,
                 settings: Any, heartbeat: Any, slot: int, hooks: Any, handoff: tuple[socket.socket, socket.socket],
                 title: str, ssl: Any = None) -> None:
        self.age = age
        self.ppid = ppid
        self.pid = 0
        self.listeners = listeners
        self.source = source
        self.app = app
        self.settings = settings
        self.cfg = settings   # the name Gunicorn's hooks use
        self.heartbeat = heartbeat
        self.slot = slot
        self.beats = heartbeat.writer(slot)   # the slot's stores made per request
        self.hooks = hooks
        self.handoff_send, self.handoff_recv = handoff
        self.title = title
        self.ssl = ssl   # the master's TLS context, or None
        self.log = log
        self.alive = True
        self.retiring = False
        self.drain_until = 0.0   # set when told to stop (see DRAIN_WINDOW)
        # Under a development reloader no proxy is in front, and pserve --reload waits one second
        # for the server to stop: a browser's idle keep-alive connection must not hold the restart.
        # Decided here, not in the signal handler that starts the stop (no imports in there).
        self.drain_window = 0.0 if reloader.active() else min(DRAIN_WINDOW, settings.graceful_timeout)
        # Set by signal handlers, acted on by the worker's loop (reopen) or init_process (hook).
        self.reopen_logs = False
        self.exit_hook: str | None = None
        self.ctx: ServerContext | None = None
        self.starved = False   # accept() ran out of descriptors; reported once per episode
        self.starved_at = 0.0  # when an accept() last failed for lack of descriptors
        self.spare_fd = -1     # held in reserve for receiving handed-off descriptors
        jitter = random.randint(0, settings.max_requests_jitter) if settings.max_requests_jitter else 0
        self.max_requests = settings.max_requests + jitter if settings.max_requests else sys.maxsize

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} slot={self.slot}>"

    # --- boot ---------------------------------------------------------------------------------

    def init_process(self) -> None:
        # Switch first: a process titled "worker" already runs as `user`.
        self.switch_user()
        set_title(f"worker [{self.title}]")
        self.init_signals()
        try:
            if self.app is None:
                self.app = self.load_app()
            self.ctx = self.make_context()
            self.reserve_spare()
            self.hooks.call("post_worker_init", self)
            self.notify()   # the first beat tells the master we booted
            self.run()
        except SystemExit:
            if self.exit_hook:
                # INT, QUIT or ABRT unwound whatever ran; now the hook runs in a sane state.
                hook, self.exit_hook = self.exit_hook, None
                self.hooks.call(hook, self)
            raise

    def load_app(self) -> Any:
        try:
            return self.source.load_app()
        except AppLoadError:
            raise
        except Exception as exc:
            log.error("Cannot load the app:\n%s", traceback.format_exc())
            raise AppLoadError(f"{type(exc).__name__}: {exc}") from exc

    def switch_user(self) -> None:
        """Become `user`/`group`; failing that, a boot error (the master stops instead of forking on)."""
        s = self.settings
        try:
            uid, gid = users.ids(s.user, s.group)
            if gid >= 0:
                os.setgid(gid)
            if uid >= 0:
                try:
                    name = pwd.getpwuid(uid).pw_name
                except KeyError:   # a bare uid without a passwd entry: no supplementary groups
                    os.setgroups([os.getgid()])
                else:
                    os.initgroups(name, os.getgid())
                os.setuid(uid)
        except (OSError, KeyError) as exc:
            raise AppLoadError(f"cannot switch to user {s.user!r} / group {s.group!r}: {exc}") from None

    def make_context(self) -> ServerContext:
        s = self.settings
        ctx = ServerContext(
            app=self.app,
            limits=Limits(limit_request_line=s.limit_request_line, limit_request_fields=s.limit_request_fields,
                          limit_request_field_size=s.limit_request_field_size,
                          max_content_length=s.limit_request_body or Limits().max_content_length),
            keepalive=s.keepalive,
            header_timeout=s.header_timeout,
            io_timeout=s.timeout or 30.0,
            root_path=s.root_path or "",
            url_scheme="https" if self.ssl is not None else s.url_scheme,
            server_software=s.ident or ServerContext.server_software,
            expose_tracebacks=s.expose_tracebacks,
            forwarded_allow_ips=frozenset(s.forwarded_allow_ips),
            secure_scheme_headers=dict(s.secure_scheme_headers),
            proxy_headers=ProxyHeaders(frozenset(s.trusted_proxy_headers), s.trusted_proxy_count,
                                       s.clear_untrusted_proxy_headers, s.log_untrusted_proxy_headers),
            access_log=logs.AccessLog(s.access_log_format) if _access_logging() else None,
            worker=self,
            proxy_protocol=s.proxy_protocol,
            proxy_allow=AllowList(s.proxy_allow_ips),
            observer=RequestObserver(self.heartbeat, self.slot, metrics.installed()),
        )
        if self.hooks.has("pre_request"):
            ctx.pre_request = lambda req, environ: self.hooks.call("pre_request", self, HookRequest(req, environ))
        if self.hooks.has("post_request"):
            ctx.post_request = lambda req, environ, resp: self.hooks.call(
                "post_request", self, HookRequest(req, environ), environ, resp)
        return ctx

    # --- signals ------------------------------------------------------------------------------

    def init_signals(self) -> None:
        for sig in (signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.handle_term)
        signal.signal(signal.SIGHUP, self.handle_retire)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        # The master blocked its signals across the fork (see Workforce.spawn_worker); with our own
        # handlers in place, a worker starts with nothing blocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    def stop_serving(self, retire: bool) -> None:
        if self.alive:
            self.drain_until = time.monotonic() + self.drain_window
        self.alive = False
        self.heartbeat.set_stopping(self.slot)
        self.retiring = self.retiring or retire
        if self.ctx is not None:
            self.ctx.alive = False

    def handle_term(self, signum: int, frame: Any) -> None:
        self.stop_serving(retire=False)

    def handle_retire(self, signum: int, frame: Any) -> None:
        self.stop_serving(retire=True)

    def handle_quit(self, signum: int, frame: Any) -> None:
        self.exit_hook = "worker_int"
        sys.exit(0)

    def handle_abort(self, signum: int, frame: Any) -> None:
        self.exit_hook = "worker_abort"
        sys.exit(1)

    def handle_usr1(self, signum: int, frame: Any) -> None:
        self.reopen_logs = True

    def run_pending(self) -> None:
        """Do what signal handlers only noted; called from the worker's loop."""
        if self.reopen_logs:
            self.reopen_logs = False
            logs.reopen_files()

    def release_listeners(self) -> list[tuple[socket.socket, Any]]:
        """Close this worker's copies of the listening sockets once it stops accepting; return
        the connections still queued on them, for the worker to answer.

        The master (or the new master after USR2) holds its own: while it runs, the port stays
        open for the other workers. After the master closed its copies (TERM), the port closes now,
        so new connections are refused (a balancer tries another instance at once) instead of
        queueing for nobody while this worker drains. Closing the last copy of a listener resets
        the connections the kernel had queued on it, on which a proxy may have sent a request
        already: so a stopping worker takes them first. (Retiring ones leave them to their
        siblings: the master keeps the port open.)
        """
        queued: list[tuple[socket.socket, Any]] = []
        for sock in self.listeners:
            if not self.retiring and sock.fileno() != -1:
                queued += accept_queued(sock)
            sock.close()
        return queued

    # --- while serving ------------------------------------------------------------------------

    def notify(self) -> None:
        self.beats.beat()

    def held_connections(self, count: int) -> None:
        self.beats.connections(count)

    def has_sibling(self) -> bool:
        """Whether another worker could take a connection now (alive and not stopping). Read from
        the status map, not from the settings: TTIN and TTOU change the count while we run."""
        return self.heartbeat.fewest_connections(self.slot, None) is not None

    def check_parent(self) -> None:
        if os.getppid() != self.ppid:
            log.warning("Master (pid %s) is gone; worker (pid %s) stops", self.ppid, self.pid)
            self.stop_serving(retire=False)

    def count_request(self) -> None:
        """After each served connection step: retire once max_requests is reached."""
        if self.ctx is not None and self.ctx.requests >= self.max_requests and self.alive:
            self.retire_at_max_requests()

    def retire_at_max_requests(self) -> None:
        log.info("Worker (pid %s) reached max_requests (%s); retiring", self.pid, self.max_requests)
        self.stop_serving(retire=True)   # marks the slot stopping: the master reads it at once
        if os.getppid() == self.ppid:   # never signal a stranger if the master is gone
            try:
                os.kill(self.ppid, signal.SIGCHLD)   # wakes the master, which reads the flag at once
            except OSError:
                pass

    def accept_failed(self, exc: OSError) -> bool:
        """Report a failed accept(); True when out of descriptors (the caller pauses accepting)."""
        if exc.errno not in STARVED_ERRNOS:
            log.error("accept() failed: %s", exc)
            return False
        self.starved_at = time.monotonic()
        if not self.starved:
            self.starved = True
            log.warning("Worker (pid %s) is out of file descriptors (%s): accepting pauses until "
                        "connections close (raise the open files limit, ulimit -n)", self.pid, exc.strerror)
        return True

    def accepted(self) -> None:
        """An accept() succeeded: the end of an out-of-descriptors episode once none failed for a
        while (while clients leave one by one, accepts succeed and fail in turn)."""
        if self.starved and time.monotonic() - self.starved_at > STARVED_QUIET:
            self.starved = False
            log.warning("Worker (pid %s) accepts connections again: file descriptors are available", self.pid)

    def new_connection(self, sock: socket.socket, peer: Any, local: Any = None) -> Connection:
        """``local``: the socket's own address if known (see `Connection`)."""
        sock.settimeout(self.ctx.io_timeout)
        return Connection(sock, peer, self.ctx, local)

    # --- hand-off of idle keep-alive connections between workers ----------------------------------

    def hand_off(self, conns: list[Connection]) -> list[Connection]:
        """Pass idle connections to whichever sibling reads the hand-off socket first.

        One descriptor per message, so a sibling takes only as many as it has room for. Returns
        the ones passed; the caller closes its own descriptors of them (never with a shutdown,
        which would end the connection for the sibling too). The rest stay ours: the queue was full.
        """
        if self.ssl is not None:
            return []   # a TLS session's state lives in this process: its descriptor alone is useless
        conns = [c for c in conns if c.idle]
        sent = []
        for conn in conns:
            try:
                socket.send_fds(self.handoff_send, [conn.handoff_note()], [conn.fileno()])
            except OSError:
                break
            sent.append(conn)
        return sent

    def take_handoff(self, limit: int) -> list[Connection]:
        """Up to ``limit`` connections siblings passed us (none when another worker was quicker).

        The kernel drops passed descriptors that the receiver has no room for (MSG_CTRUNC),
        closing their clients' connections: a spare descriptor is given up just for each receive,
        and taking stops while it cannot be reserved again (``spare_fd`` stays -1).
        """
        taken: list[Connection] = []
        while len(taken) < limit and self.reserve_spare():
            os.close(self.spare_fd)
            self.spare_fd = -1
            try:
                note, fds, flags, _ = socket.recv_fds(self.handoff_recv, HANDOFF_NOTE_MAX, 1)
            except (BlockingIOError, InterruptedError, TimeoutError):
                break
            finally:
                self.reserve_spare()
            if flags & socket.MSG_CTRUNC:
                log.error("Worker (pid %s) lost a handed-off connection: no descriptor room", self.pid)
            for fd in fds:
                sock = socket.socket(fileno=fd)
                try:
                    peer = sock.getpeername()
                except OSError:
                    sock.close()
                    continue
                conn = self.new_connection(sock, peer)
                conn.resume(note)
                taken.append(conn)
        return taken

    def reserve_spare(self) -> bool:
        """Hold one descriptor in reserve for receiving a hand-off; False when none is left."""
        if self.spare_fd < 0:
            try:
                self.spare_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True

    def drain_handoff(self) -> list[Connection]:
        """Stopping (not retiring): take what siblings passed and nobody took, rather than
        leaving the clients' descriptors queued in the master's socket pair until it exits."""
        return self.take_handoff(HANDOFF_DRAIN)


def accept_queued(listener: socket.socket) -> list[tuple[socket.socket, Any]]:
    """Every connection queued on ``listener`` now, never waiting (also under eventlet: plain
    sockets on a duplicate of the descriptor)."""
    plain = original("socket")
    raw = plain.socket(fileno=os.dup(listener.fileno()))
    raw.setblocking(False)
    taken = []
    try:
        while True:
            try:
                taken.append(raw.accept())
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as exc:   # out of descriptors: what is left is lost with the port
                log.error("Worker (pid %s) could not take a queued connection while stopping: %s",
                          os.getpid(), exc)
                break
    finally:
        raw.close()
    return taken


class RequestObserver:
    """Shows what a worker serves in its status slot (the oldest request, when several run at
    once under eventlet) and sends each request's metrics: one store when a request starts, one
    when it ends."""

    def __init__(self, heartbeat: Any, slot: int, client: metrics.Metrics | None) -> None:
        self.heartbeat = heartbeat
        self.slot = slot
        self.beats = heartbeat.writer(slot)
        self.metrics = client
        self.requests = 0
        self.shown: tuple[float, bytes] | None = None
        self.others: dict[int, tuple[float, bytes]] = {}   # running, not shown (eventlet)
        self.texts: dict[tuple[str, str], bytes] = {}   # what a request shows, by method and target

    def begin(self, req: Any, started: float) -> tuple[float, bytes]:
        key = (req.method, req.target)
        text = self.texts.get(key)
        if text is None:
            # The path only: a query string may carry secrets, and the status map is readable by operators.
            text = f"{req.method} {req.target.partition('?')[0]}".encode("utf-8", "replace")
            if len(self.texts) < 1024:   # the usual paths, not every distinct URL
                self.texts[key] = text
        entry = (started, text)
        if self.shown is None:
            self.shown = entry
            self.beats.show_request(started, text)
        else:
            self.others[id(entry)] = entry
        return entry

    def end(self, entry: tuple[float, bytes], status: str, seconds: float) -> None:
        self.requests += 1
        if entry is self.shown:
            # The next oldest takes its place.
            self.shown = min(self.others.values()) if self.others else None
            if self.shown is not None:
                del self.others[id(self.shown)]
        else:
            self.others.pop(id(entry), None)
        shown = self.shown
        if shown is None:
            self.beats.request_done(self.requests)
        else:
            self.beats.request_done(self.requests, *shown)
        if self.metrics is not None:
            dropped = self.metrics.dropped
            self.metrics.request(int(status[:3]), seconds)
            if self.metrics.dropped != dropped:
                self.heartbeat.set_dropped(self.slot, self.metrics.dropped)
