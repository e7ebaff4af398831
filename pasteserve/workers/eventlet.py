"""The eventlet worker: one green thread per connection, thousands of connections per process.

Each green thread runs the same `Connection` as the sync worker: it waits for the socket to be
readable (cooperatively, until the connection's deadline), then lets the connection serve what
arrived. Accepting pauses while `worker_connections` connections are open.

This module is imported only when `worker_class = eventlet`: eventlet itself warns about its
future on import, and patching changes the whole process.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
from functools import partial
from typing import Any

import eventlet
from eventlet import greenio, hubs
from greenlet import GreenletExit
from eventlet.greenpool import GreenPool
from eventlet.semaphore import Semaphore

from .. import logs, nonblocking
from ..connection import Connection, ServerContext
from ..nonblocking import poll_readable
from . import hub as kept_hub
from .balance import BALANCE_PAUSE, AcceptShare
from .base import ACCEPT_PAUSE, Worker
from .budget import HeadBudget

log = logging.getLogger(logs.ERROR_LOGGER)

# How often the deadlines of waiting connections are checked; a connection may outlive its
# deadline by this. One sweep instead of a hub timer per wait (made and cancelled per request).
SWEEP_INTERVAL = 0.1


def patch() -> None:
    """Green the standard library; called before any app module is imported."""
    eventlet.monkey_patch()


class _Expired(Exception):
    """A connection's deadline passed while it waited for bytes."""


class _Stopping(Exception):
    """Thrown into a green thread waiting on an idle connection: the worker stops, look again."""


class _Overdue(GreenletExit):
    """graceful_timeout is over: stop serving the connection (a websocket, a long request)."""


def green_wait_readable(sock: socket.socket, seconds: float) -> bool:
    """Wait in the hub, not the process, for ``sock`` to have bytes (or be closed)."""
    if poll_readable(sock.fileno(), 0):
        return True   # the usual case while a body streams in: no timer, no switch
    try:
        hubs.trampoline(sock.fileno(), read=True, timeout=seconds, timeout_exc=_Expired)
    except _Expired:
        return False
    return True


def green_wait_writable(fd: int, seconds: float | None) -> bool:
    """Wait in the hub, not the process, for room in ``fd``'s send buffer (for sendfile)."""
    try:
        hubs.trampoline(fd, write=True, timeout=seconds, timeout_exc=_Expired)
    except _Expired:
        return False
    return True


class EventletWorker(Worker):
    stopped_at = 0.0   # when the stop began (monotonic): graceful_timeout counts from then

    def init_process(self) -> None:
        # A forked child shares the master's hub state (its epoll descriptor included): start afresh,
        # with our epoll hub (hub.py) unless EVENTLET_HUB names another.
        hubs.use_hub(os.environ.get("EVENTLET_HUB") or
                     (kept_hub if kept_hub.is_available() else None))
        super().init_process()

    def make_context(self) -> ServerContext:
        ctx = super().make_context()
        ctx.takeover = True   # websockets: apps may own their connection (pasteserve.takeover)
        # What eventlet.wsgi says: green threads of one process run the app concurrently and
        # share its globals, as threads would (thread-locals are green-locals once patched).
        ctx.multithread = True
        ctx.sendfile = partial(nonblocking.sendfile, timeout=ctx.io_timeout, wait_writable=green_wait_writable)
        # Like the sync worker: a trickling upload gets a 408 after `timeout` in all, so slow
        # clients cannot hold worker_connections slots for ever.
        if self.settings.timeout:
            ctx.body_timeout = self.settings.timeout
            ctx.wait_readable = green_wait_readable
        return ctx

    def run(self) -> None:
        self.capacity = Semaphore(self.settings.worker_connections)
        self.held = 0   # connections held from when they are accepted or taken (see spawn)
        self.heads = HeadBudget(self.settings.limit_head_buffer)
        self.pool = GreenPool(self.settings.worker_connections + 1)
        # A sibling accepts in a green thread of its own, whatever its requests do.
        self.accept_share = AcceptShare(self.heartbeat, self.slot, None)
        self.resume = Semaphore(0)   # released for an accept loop pausing when a connection ends
        # Each connection served: its green thread, and until when it waits for bytes (0.0 while it
        # does not): woken by the sweep (expire_loop) when that passes, and at shutdown. The time is
        # stored in a list of its own, once per wait, not the entry made and removed per wait.
        self.waiting: dict[Connection, tuple[Any, list[float]]] = {}
        listeners = [self.greened(sock) for sock in self.listeners]
        # Everything that brings in new connections: stopped together the moment the worker stops.
        self.acceptors = [eventlet.spawn(self.accept_loop, sock) for sock in listeners]
        self.acceptors.append(eventlet.spawn(self.handoff_loop))
        watcher = eventlet.spawn(self.watch_signals)
        sweeper = eventlet.spawn(self.expire_loop)
        # Beating is cheap (no syscall); a short interval also notices a stop signal promptly.
        interval = min(0.2, self.settings.timeout / 4) if self.settings.timeout else 0.2
        while self.alive:
            self.notify()
            self.check_parent()
            eventlet.sleep(interval)
        self.stop_accepting()
        self.finish()
        watcher.kill()
        sweeper.kill()

    def watch_signals(self) -> None:
        """Act on signals: stop accepting the moment a stop signal arrives, reopen logs on USR1.

        A signal handler runs inside whatever green thread it interrupts and cannot switch
        safely; the wakeup fd lets this green thread act on the signal instead. It keeps
        watching while the worker finishes, so USR1 is still honoured then.
        """
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        while True:
            # First before any wait: a signal may have come before the wakeup fd was set.
            self.run_pending()
            if not self.alive:
                self.stop_accepting()
            hubs.trampoline(wake_r, read=True)
            os.read(wake_r, 4096)

    def expire_loop(self) -> None:
        """Wake the green threads whose connection's deadline passed while they waited."""
        waiting = self.waiting
        while True:
            eventlet.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for conn in [c for c, (_, until) in waiting.items() if 0.0 < until[0] <= now]:
                # Each wake runs other green threads: this one may have woken and waits anew.
                entry = waiting.get(conn)
                if entry is not None and 0.0 < entry[1][0] <= now:
                    eventlet.kill(entry[0], _Expired)

    def stop_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.kill()
        # Open websockets may keep us for graceful_timeout: drop our copies of the listening
        # sockets now (see Worker.release_listeners), answering what was queued on them.
        for sock, peer in self.release_listeners():
            self.spawn(self.serve, self.greened(sock), peer, False)

    def greened(self, sock: socket.socket) -> greenio.GreenSocket:
        # A listener's DirectSocket accepts DirectSockets (the plain socket underneath is shared).
        green = kept_hub.DirectSocket(sock.fd if isinstance(sock, greenio.GreenSocket) else sock)
        # Only the green emulation becomes blocking: the descriptor stays non-blocking underneath.
        green.settimeout(None)
        return green

    def accept_loop(self, listener: kept_hub.DirectSocket) -> None:
        capacity = self.capacity
        while self.alive:
            capacity.acquire()   # held while waiting: room for the connection to come
            try:
                taken = self.accept_next(listener)
            except OSError as exc:
                capacity.release()
                if not isinstance(exc, (InterruptedError, ConnectionAbortedError)):
                    # Out of descriptors, the listener stays readable: retrying at once would spin.
                    eventlet.sleep(ACCEPT_PAUSE if self.accept_failed(exc) else 0.1)
                continue
            self.accepted()
            self.spawn(self.serve, *taken)

    def accept_next(self, listener: kept_hub.DirectSocket) -> tuple[kept_hub.DirectSocket, Any]:
        """The next connection queued that is this worker's to take: its share (workers/balance.py)
        is looked at again for each."""
        most = self.settings.worker_connections
        while True:
            if self.accept_share(self.held, most) > 0:
                taken = listener.accept_ready()
                if taken is not None:
                    return taken
            else:
                # Siblings hold fewer and can take these: leave the backlog to them for a moment
                # (less if a connection of ours ends meanwhile, as the sync worker does).
                self.resume.acquire(timeout=BALANCE_PAUSE)
            hubs.trampoline(listener.fileno(), read=True)   # until a connection is queued

    def spawn(self, serve: Any, *args: Any) -> None:
        """Serve a connection in a green thread of its own. It counts as held from now, in the
        status map too: this worker's accept loop takes a whole backlog before any of their green
        threads runs, and siblings balance their accepts against that count."""
        self.held += 1
        self.held_connections(self.held)
        self.pool.spawn_n(self._serving, serve, args)

    def _serving(self, serve: Any, args: tuple) -> None:
        try:
            serve(*args)
        finally:
            self.held -= 1
            self.held_connections(self.held)
            if self.resume.balance < 0:   # an accept loop pauses
                self.resume.release()

    def handoff_loop(self) -> None:
        while self.alive:
            hubs.trampoline(self.handoff_recv.fileno(), read=True)
            # Room before taking: a connection taken is served, never closed for lack of room (its
            # client may have sent a request already); while we are full, a sibling may take it.
            self.capacity.acquire()
            try:
                taken = self.take_handoff(1)
            except BaseException:
                self.capacity.release()
                raise
            if taken:
                self.spawn(self.keep_serving, taken[0])
            else:
                self.capacity.release()
                if self.spare_fd < 0:   # out of descriptors: wait for some to be freed
                    self.accept_failed(OSError(errno.EMFILE, "no descriptor to receive a hand-off"))
                    eventlet.sleep(ACCEPT_PAUSE)

    def serve(self, sock: socket.socket, peer: Any, counted: bool = True) -> None:
        """Serve a new connection; ``counted``: it holds a unit of capacity (see keep_serving)."""
        try:
            if self.ssl is not None:
                sock = self.tls_handshake(sock)
            conn = self.new_connection(sock, peer)
        except (OSError, _Expired) as exc:
            log.debug("connection from %s failed before its first request: %s", peer, exc)
        except Exception:
            log.exception("Error setting up a connection from %s; closing it", peer)
        else:
            self.keep_serving(conn, counted)
            return
        sock.close()
        if counted:
            self.capacity.release()

    def tls_handshake(self, sock: socket.socket) -> socket.socket:
        """The handshake, bounded by header_timeout in all (a per-read timeout alone lets a
        client trickling its hello in hold the connection for ever)."""
        timeout = self.settings.header_timeout
        sock.settimeout(timeout)
        with eventlet.Timeout(timeout, _Expired("the TLS handshake did not finish in time")):
            return self.ssl.wrap_socket(sock, server_side=True)

    def new_connection(self, sock: socket.socket, peer: Any) -> Connection:
        if type(sock) is greenio.GreenSocket:
            # A sibling's hand-off (socket.socket is eventlet's here): the fast path accepted ones have.
            sock = kept_hub.DirectSocket(sock.family, sock.type, sock.proto, sock.detach())
        conn = super().new_connection(sock, peer)
        hub = hubs.get_hub()
        if kept_hub.keep(hub, sock) is None:   # kept: its green thread waits on it with no epoll_ctl
            kept_hub.wake_on_close(hub, sock)   # TLS: closing it still wakes who waits on it
        return conn

    def keep_serving(self, conn: Connection, counted: bool = True) -> None:
        """Serve one connection until it closes, expires, or the worker stops; ``counted``: it
        holds a unit of capacity, released at its end."""
        served = False
        waits = [0.0]   # until when it waits (see self.waiting)
        self.waiting[conn] = (eventlet.getcurrent(), waits)
        heads, ctx = self.heads, self.ctx
        wait_readable = kept_hub.reader(hubs.get_hub(), conn.sock)
        try:
            while True:
                until = conn.deadline
                now = time.monotonic()
                if until <= now:
                    lingering = conn.expire()
                    heads.update(conn)
                    if lingering:
                        continue   # lingering after a 408: keep reading until the client is done
                    return
                # A connection accepted before the stop was noticed still gets its first request
                # answered (with Connection: close); an idle one between requests is handed to a
                # sibling, or drained: watched until drain_until (DRAIN_WINDOW), then closed.
                if not self.alive and served and conn.idle:
                    if self.let_go(conn):
                        return
                    until = min(until, self.drain_until)
                    if until <= now:
                        conn.close()
                        return
                waits[0] = until
                try:
                    wait_readable()   # no timer: expire_loop wakes us
                except (_Expired, _Stopping):
                    continue   # the checks above expire, drain or close it
                except hubs.IOClosed:
                    pass   # refused by another green thread (head budget): process() sees it closed
                finally:
                    waits[0] = 0.0
                keep = conn.process()
                if heads.sizes or conn.head_size:   # else nothing changed: no head was, nor is, buffered
                    heads.update(conn)
                    for victim in heads.over():
                        victim.refuse_head()   # its own green thread wakes to linger or to find it closed
                        heads.update(victim)
                if not self.alive or ctx.requests >= self.max_requests:
                    self.count_request()   # also for a request whose connection then closed
                if not keep:
                    return
                served = True
        except _Overdue:
            conn.close()
        except GreenletExit:
            if not self.let_go(conn):
                conn.close()
        except Exception:
            log.exception("Error serving a connection")
            conn.close()
        finally:
            del self.waiting[conn]
            self.heads.forget(conn)
            if counted:
                self.capacity.release()

    def count_request(self) -> None:
        super().count_request()
        if not self.alive:
            self.stop_accepting()   # retiring after max_requests

    def let_go(self, conn: Connection) -> bool:
        """An idle connection at shutdown: True if a sibling took it (only when retiring)."""
        if self.retiring and conn.idle and self.hand_off([conn]):
            conn.sock.close()
            return True
        return False

    def stop_serving(self, retire: bool) -> None:
        if self.alive:
            self.stopped_at = time.monotonic()
        super().stop_serving(retire)

    def finish(self) -> None:
        """Let in-flight requests and open websockets finish (bounded by graceful_timeout); idle
        connections go to a sibling or are drained (see `keep_serving`). What is left at the end
        is stopped, its connection closed."""
        for conn, (greenlet, waits) in list(self.waiting.items()):
            # Each kill runs other green threads: this one may have stopped waiting, or ended.
            if waits[0] and conn.idle and conn in self.waiting:
                eventlet.kill(greenlet, _Stopping)
        if not self.retiring:
            for conn in self.drain_handoff():
                if poll_readable(conn.fileno(), 0):
                    # Its client sent a request already: answer it (capacity no longer matters).
                    self.spawn(self.keep_serving, conn, False)
                else:
                    conn.close()   # idle: nothing is lost
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
