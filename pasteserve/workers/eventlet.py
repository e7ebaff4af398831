"""The eventlet worker: one green thread per connection, thousands of connections per process.

Each green thread runs the same `Connection` as the sync worker: it waits for the socket to be
readable (cooperatively, until the connection's deadline), then lets the connection serve what
arrived. Accepting pauses while `worker_connections` connections are open.

This module is imported only when `worker_class = eventlet`: eventlet itself warns about its
future on import, and patching changes the whole process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import eventlet
from eventlet import greenio, hubs
from greenlet import GreenletExit
from eventlet.greenpool import GreenPool
from eventlet.semaphore import Semaphore

from .. import logs
from ..connection import Connection, ServerContext
from .base import Worker

log = logging.getLogger(logs.ERROR_LOGGER)


def patch() -> None:
    """Green the standard library; called before any app module is imported."""
    eventlet.monkey_patch()


class _Expired(Exception):
    """A connection's deadline passed while it waited for bytes."""


class _Overdue(GreenletExit):
    """graceful_timeout is over: stop serving the connection (a websocket, a long request)."""


def green_sendfile(sock: socket.socket, file: Any, offset: int, count: int) -> int:
    """os.sendfile(2) on the descriptor of a green socket, waiting in the hub while it is full."""
    out, src = sock.fileno(), file.fileno()
    timeout = sock.gettimeout()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out, src, offset + sent, count - sent)
        except BlockingIOError:
            hubs.trampoline(out, write=True, timeout=timeout,
                            timeout_exc=TimeoutError("timed out sending a file"))
            continue
        if not n:
            break   # the file is shorter than it was
        sent += n
    return sent


class EventletWorker(Worker):
    stopped_at = 0.0   # when the stop began (monotonic): graceful_timeout counts from then

    def init_process(self) -> None:
        # A forked child shares the master's hub state (its epoll descriptor included): start afresh.
        hubs.use_hub()
        super().init_process()

    def make_context(self) -> ServerContext:
        ctx = super().make_context()
        ctx.takeover = True   # websockets: apps may own their connection (pasteserve.takeover)
        # What eventlet.wsgi says: green threads of one process run the app concurrently and
        # share its globals, as threads would (thread-locals are green-locals once patched).
        ctx.multithread = True
        ctx.sendfile = green_sendfile
        # Like the sync worker: a trickling upload gets a 408 after `timeout` in all, so slow
        # clients cannot hold worker_connections slots for ever.
        if self.settings.timeout:
            ctx.body_timeout = self.settings.timeout
        return ctx

    def run(self) -> None:
        self.capacity = Semaphore(self.settings.worker_connections)
        self.pool = GreenPool(self.settings.worker_connections + 1)
        # Green threads waiting for the next request on an idle connection, woken at shutdown.
        self.waiting: dict[Connection, Any] = {}
        listeners = [self.greened(sock) for sock in self.listeners]
        # Everything that brings in new connections: stopped together the moment the worker stops.
        self.acceptors = [eventlet.spawn(self.accept_loop, sock) for sock in listeners]
        self.acceptors.append(eventlet.spawn(self.handoff_loop))
        helpers = self.acceptors + [eventlet.spawn(self.watch_signals)]
        # Beating is cheap (no syscall); a short interval also notices a stop signal promptly.
        interval = min(0.2, self.settings.timeout / 4) if self.settings.timeout else 0.2
        while self.alive:
            self.notify()
            self.check_parent()
            eventlet.sleep(interval)
        for helper in helpers:
            helper.kill()
        self.finish()

    def watch_signals(self) -> None:
        """Stop accepting the moment a stop signal arrives.

        A signal handler runs inside whatever green thread it interrupts and cannot switch
        safely; the wakeup fd lets this green thread act on the signal instead.
        """
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        while self.alive:
            hubs.trampoline(wake_r, read=True)
            os.read(wake_r, 4096)
        self.stop_accepting()

    def stop_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.kill()
        # Open websockets may keep us for graceful_timeout: drop our copies of the listening
        # sockets now, so that once the master and the other workers are done with them too (TERM),
        # new connections are refused at once instead of queueing for nobody.
        for sock in self.listeners:
            sock.close()

    def greened(self, sock: socket.socket) -> greenio.GreenSocket:
        green = sock if isinstance(sock, greenio.GreenSocket) else greenio.GreenSocket(sock)
        # Only the green emulation becomes blocking: the descriptor stays non-blocking underneath.
        green.settimeout(None)
        return green

    def accept_loop(self, listener: greenio.GreenSocket) -> None:
        while self.alive:
            self.capacity.acquire()
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                self.capacity.release()
                if not isinstance(exc, (BlockingIOError, InterruptedError, ConnectionAbortedError)):
                    log.error("accept() failed: %s", exc)
                    eventlet.sleep(0.1)
                continue
            self.pool.spawn_n(self.serve, sock, peer)

    def handoff_loop(self) -> None:
        while self.alive:
            hubs.trampoline(self.handoff_recv.fileno(), read=True)
            for conn in self.take_handoff():
                if self.capacity.acquire(blocking=False):
                    self.pool.spawn_n(self.keep_serving, conn)
                else:
                    conn.close()

    def serve(self, sock: socket.socket, peer: Any) -> None:
        try:
            if self.ssl is not None:
                sock.settimeout(self.settings.header_timeout)
                # In all, not per read: a client trickling its hello must not hold a slot.
                with eventlet.Timeout(self.settings.header_timeout,
                                      TimeoutError("the TLS handshake did not complete in time")):
                    sock = self.ssl.wrap_socket(sock, server_side=True)
            conn = self.new_connection(sock, peer)
        except OSError as exc:
            log.debug("connection from %s failed before its first request: %s", peer, exc)
            sock.close()
            self.capacity.release()
            return
        self.keep_serving(conn)

    def keep_serving(self, conn: Connection) -> None:
        """Serve one connection until it closes, expires, or the worker stops."""
        served = False
        try:
            while True:
                wait = conn.deadline - time.monotonic()
                if wait <= 0:
                    if conn.expire():
                        continue   # lingering after a 408: keep reading until the client is done
                    return
                # A connection accepted before the stop was noticed still gets its first request
                # answered (with Connection: close); an idle one between requests goes at once.
                if conn.idle and served:
                    if not self.alive:
                        self.let_go(conn)
                        return
                    self.waiting[conn] = eventlet.getcurrent()
                try:
                    hubs.trampoline(conn.fileno(), read=True, timeout=wait, timeout_exc=_Expired)
                except _Expired:
                    continue   # the deadline check above expires it
                finally:
                    self.waiting.pop(conn, None)
                keep = conn.process()
                self.count_request()   # also for a request whose connection then closed
                if not keep:
                    return
                served = True
        except _Overdue:
            conn.close()
        except GreenletExit:
            self.let_go(conn)
        except Exception:
            log.exception("Error serving a connection")
            conn.close()
        finally:
            self.capacity.release()

    def count_request(self) -> None:
        super().count_request()
        if not self.alive:
            self.stop_accepting()   # retiring after max_requests

    def let_go(self, conn: Connection) -> None:
        """An idle connection at shutdown: a sibling takes it when retiring, else it is closed."""
        if self.retiring and conn.idle and self.hand_off([conn]):
            conn.sock.close()
        else:
            conn.close()

    def stop_serving(self, retire: bool) -> None:
        if self.alive:
            self.stopped_at = time.monotonic()
        super().stop_serving(retire)

    def finish(self) -> None:
        """Let in-flight requests and open websockets finish (bounded by graceful_timeout); idle
        connections go at once. What is left at the end is stopped, its connection closed."""
        for greenlet in list(self.waiting.values()):
            eventlet.kill(greenlet)
        grace = self.settings.graceful_timeout
        # Counted from the signal, and ending a little early: we close what is left ourselves
        # before the master, counting from when it sent the signal, would have to kill us.
        left = (self.stopped_at or time.monotonic()) + grace - min(1.0, grace / 10) - time.monotonic()
        busy = self.pool.running()
        if busy:
            log.info("Worker (pid %s) stopped accepting; waiting up to %.1fs for %d open connection(s)",
                     self.pid, max(left, 0.0), busy)
        with eventlet.Timeout(max(left, 0.0), False):
            self.pool.waitall()
        for greenlet in list(self.pool.coroutines_running):
            eventlet.kill(greenlet, _Overdue)   # the app's cleanup runs, then keep_serving closes the socket

    # A signal handler runs inside whichever green thread was interrupted; leave at once.
    def handle_quit(self, signum: int, frame: Any) -> None:
        self.hooks.call("worker_int", self)
        _exit_now(0)

    def handle_abort(self, signum: int, frame: Any) -> None:
        self.hooks.call("worker_abort", self)
        _exit_now(1)


def _exit_now(status: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)
