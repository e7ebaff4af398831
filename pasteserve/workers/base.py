"""What every worker does, whatever its concurrency: boot, signals, liveness, retirement.

Signals a worker answers (the master sends the first two; see docs/signals.md):
  TERM        graceful stop: finish in-flight requests, close idle connections, exit
  HUP         retire (reload, fewer workers): like TERM, but idle keep-alive connections are
              handed to sibling workers instead of being closed, so their clients see nothing
  INT, QUIT   fast stop (worker_int hook)
  ABRT        the master found us silent past `timeout` (worker_abort hook), exit at once
  USR1        reopen log files
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import traceback
from typing import Any

from .. import logs
from ..connection import Connection, ServerContext
from ..http.parser import Limits
from ..loader import AppLoadError
from ..proctitle import set_title

log = logging.getLogger(logs.ERROR_LOGGER)

# Most descriptors passed in one hand-off message (the kernel allows 253).
HANDOFF_BATCH = 64


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
        self.hooks = hooks
        self.handoff_send, self.handoff_recv = handoff
        self.title = title
        self.ssl = ssl   # the master's TLS context, or None
        self.log = log
        self.alive = True
        self.retiring = False
        self.ctx: ServerContext | None = None
        jitter = random.randint(0, settings.max_requests_jitter) if settings.max_requests_jitter else 0
        self.max_requests = settings.max_requests + jitter if settings.max_requests else sys.maxsize

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} slot={self.slot}>"

    # --- boot ---------------------------------------------------------------------------------

    def init_process(self) -> None:
        set_title(f"worker [{self.title}]")
        self.switch_user()
        self.init_signals()
        if self.app is None:
            self.app = self.load_app()
        self.ctx = self.make_context()
        self.hooks.call("post_worker_init", self)
        self.notify()   # the first beat tells the master we booted
        self.run()

    def load_app(self) -> Any:
        try:
            return self.source.load_app()
        except AppLoadError:
            raise
        except Exception as exc:
            log.error("Cannot load the app:\n%s", traceback.format_exc())
            raise AppLoadError(f"{type(exc).__name__}: {exc}") from exc

    def switch_user(self) -> None:
        s = self.settings
        if s.group:
            import grp

            os.setgid(int(s.group) if s.group.isdigit() else grp.getgrnam(s.group).gr_gid)
        if s.user:
            import pwd

            entry = pwd.getpwuid(int(s.user)) if s.user.isdigit() else pwd.getpwnam(s.user)
            os.initgroups(entry.pw_name, os.getgid())
            os.setuid(entry.pw_uid)

    def make_context(self) -> ServerContext:
        s = self.settings
        ctx = ServerContext(
            app=self.app,
            limits=Limits(limit_request_line=s.limit_request_line, limit_request_fields=s.limit_request_fields,
                          limit_request_field_size=s.limit_request_field_size),
            keepalive=s.keepalive,
            header_timeout=s.header_timeout,
            io_timeout=s.timeout or 30.0,
            root_path=s.root_path or "",
            url_scheme="https" if self.ssl is not None else "http",
            forwarded_allow_ips=frozenset(s.forwarded_allow_ips),
            secure_scheme_headers=dict(s.secure_scheme_headers),
            access_log=logs.AccessLog(s.access_log_format) if _access_logging() else None,
            worker=self,
        )
        if self.hooks.has("pre_request"):
            ctx.pre_request = lambda req, environ: self.hooks.call("pre_request", self, req)
        if self.hooks.has("post_request"):
            ctx.post_request = lambda req, environ, resp: self.hooks.call("post_request", self, req, environ, resp)
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
        # The master blocked its signals across the fork (see Arbiter.spawn_worker); with our own
        # handlers in place, a worker starts with nothing blocked.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    def stop_serving(self, retire: bool) -> None:
        self.alive = False
        self.retiring = self.retiring or retire
        if self.ctx is not None:
            self.ctx.alive = False

    def handle_term(self, signum: int, frame: Any) -> None:
        self.stop_serving(retire=False)

    def handle_retire(self, signum: int, frame: Any) -> None:
        self.stop_serving(retire=True)

    def handle_quit(self, signum: int, frame: Any) -> None:
        self.hooks.call("worker_int", self)
        sys.exit(0)

    def handle_abort(self, signum: int, frame: Any) -> None:
        self.hooks.call("worker_abort", self)
        sys.exit(1)

    def handle_usr1(self, signum: int, frame: Any) -> None:
        logs.reopen_files()

    # --- while serving ------------------------------------------------------------------------

    def notify(self) -> None:
        self.heartbeat.beat(self.slot)

    def check_parent(self) -> None:
        if os.getppid() != self.ppid:
            log.warning("Master (pid %s) is gone; worker (pid %s) stops", self.ppid, self.pid)
            self.stop_serving(retire=False)

    def count_request(self) -> None:
        """After each served connection step: retire once max_requests is reached."""
        if self.ctx is not None and self.ctx.requests >= self.max_requests and self.alive:
            log.info("Worker (pid %s) reached max_requests (%s); retiring", self.pid, self.max_requests)
            self.stop_serving(retire=True)
            self.heartbeat.retire(self.slot)
            if os.getppid() == self.ppid:   # never signal a stranger if the master is gone
                try:
                    os.kill(self.ppid, signal.SIGCHLD)   # wakes the master, which reads the flag at once
                except OSError:
                    pass

    def new_connection(self, sock: socket.socket, peer: Any) -> Connection:
        sock.settimeout(self.ctx.io_timeout)
        return Connection(sock, peer, self.ctx)

    # --- hand-off of idle keep-alive connections between workers ----------------------------------

    def hand_off(self, conns: list[Connection]) -> list[Connection]:
        """Pass idle connections to whichever sibling reads the hand-off socket first.

        Returns the ones passed; the caller closes its own descriptors of them (never with a
        shutdown, which would end the connection for the sibling too). The rest stay ours: the
        queue was full.
        """
        if self.ssl is not None:
            return []   # a TLS session's state lives in this process: its descriptor alone is useless
        sent = []
        for start in range(0, len(conns), HANDOFF_BATCH):
            batch = conns[start:start + HANDOFF_BATCH]
            try:
                socket.send_fds(self.handoff_send, [b"c"], [c.fileno() for c in batch])
            except OSError:
                continue
            sent.extend(batch)
        return sent

    def take_handoff(self) -> list[Connection]:
        """Connections a sibling passed us (none when another worker was quicker)."""
        try:
            _, fds, _, _ = socket.recv_fds(self.handoff_recv, 16, HANDOFF_BATCH)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return []
        taken = []
        for fd in fds:
            sock = socket.socket(fileno=fd)
            try:
                peer = sock.getpeername()
            except OSError:
                sock.close()
                continue
            taken.append(self.new_connection(sock, peer))
        return taken

