"""The sync worker: one request at a time per process, keep-alive without being held by it.

A selector watches the listeners, the hand-off socket and every idle keep-alive connection; a
connection's bytes are read only once they are there, so idle and slow clients cost a file
descriptor, never the worker. While the app runs, a small `Lender` thread watches this worker's
other idle connections: one that receives a request during a long response is passed to a sibling
through the hand-off socket instead of waiting behind it (the head-of-line blocking that made
Gunicorn's sync worker give up keep-alive).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from .. import logs, nonblocking
from ..connection import Connection
from .balance import BALANCE_PAUSE, BUSY_FOR, AcceptShare
from .base import ACCEPT_PAUSE, Worker
from .budget import HeadBudget
from .poller import READ, WRITE, Poller

log = logging.getLogger(logs.ERROR_LOGGER)

HANDOFF, WAKE = object(), object()
# How often deadlines of idle connections are checked; a connection may outlive its deadline by this.
SWEEP_INTERVAL = 0.25


class Lender(threading.Thread):
    """Lends idle connections that receive a request while the worker is busy to idle siblings.

    The worker calls :meth:`busy` and :meth:`idle` around every request, so they take no lock
    (two lock round trips cost about 5 % of a small request). They rely on the GIL ordering
    attribute stores: the worker clears ``busy_with`` and then reads ``lending``; the lender sets
    ``lending`` and then reads ``busy_with``. So either the worker sees the lender at work and
    waits on the lock for its hand-off to finish, or the lender sees the worker idle and lends
    nothing: never both serving a connection.
    """

    def __init__(self, worker: "SyncWorker", delay: float = 0.05) -> None:
        super().__init__(name="pasteserve-lender", daemon=True)
        self.worker = worker
        self.delay = delay
        self.lock = threading.Lock()   # held by the lender while it lends
        self.lending = False
        self.busy_with: Connection | None = None
        self.busy_since = 0.0
        self.lent: list[Connection] = []
        self.stopped = threading.Event()

    def busy(self, conn: Connection) -> None:
        self.busy_since = time.monotonic()
        self.busy_with = conn   # after its time: the lender never pairs it with an older one

    def idle(self) -> list[Connection]:
        """The worker is free again: the connections lent meanwhile, for it to forget."""
        self.busy_with = None
        if not self.lending and not self.lent:
            return []
        with self.lock:   # a hand-off under way ends first
            lent, self.lent = self.lent, []
        return lent

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.wait(self.delay):
            with self.lock:
                self.lending = True
                try:
                    if (self.busy_with is None or not self.worker.alive
                            or time.monotonic() - self.busy_since < self.delay):
                        continue   # stopping: siblings stop too, nobody would take it
                    if not self.worker.has_sibling():
                        continue   # lending would only queue a connection for this same worker
                    waiting = self.waiting_connections()
                    if waiting:
                        self.lent.extend(self.worker.hand_off(waiting))
                finally:
                    self.lending = False

    def waiting_connections(self) -> list[Connection]:
        """Idle connections (no bytes of ours buffered) whose client has sent something."""
        lent = set(map(id, self.lent))
        candidates = {c.fileno(): c for c in self.worker.conns
                      if c is not self.busy_with and c.idle and id(c) not in lent}
        if not candidates:
            return []
        poller = select.poll()
        for fd in candidates:
            poller.register(fd, select.POLLIN)
        return [candidates[fd] for fd, _ in poller.poll(0)]


@dataclass(eq=False)
class Listening:
    """A listener, as the poller's tag for it: what accepting on it needs, worked out once."""

    sock: socket.socket
    # As plain ints: socket.accept() converts them to enums for every connection.
    family: int
    type: int
    proto: int
    local: Any   # see fixed_local_name

    @classmethod
    def of(cls, sock: socket.socket) -> "Listening":
        return cls(sock, int(sock.family), int(sock.type), sock.proto, fixed_local_name(sock))


@dataclass(eq=False)
class Handshake:
    """A TLS connection whose handshake is still under way."""

    sock: ssl.SSLSocket
    peer: Any
    deadline: float


class SyncWorker(Worker):
    # A sibling inside one request this long accepts nothing meanwhile (see AcceptShare).
    sibling_busy_for: float | None = BUSY_FOR

    def make_context(self) -> Any:
        ctx = super().make_context()
        # One request holds this process: bound how long a slow upload may hold it, and answer
        # 408 then, rather than being aborted as silent by the master.
        if self.settings.timeout:
            ctx.body_timeout = self.settings.timeout
            ctx.on_progress = self.notify
        # Its sockets never block: a file waits for room with poll, not inside sendfile.
        ctx.sendfile = partial(nonblocking.sendfile, timeout=ctx.io_timeout)
        return ctx

    def run(self) -> None:
        self.sel = self.make_selector()
        self.conns: set[Connection] = set()
        self.fds: dict[Connection, int] = {}   # the descriptor each was registered with
        self.handshakes: set[Handshake] = set()
        self.heads = HeadBudget(self.settings.limit_head_buffer)
        # A signal wakes the selector at once (PEP 475 would otherwise resume the wait); so can a
        # byte another thread writes to wake_w.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sel.register(self.wake_r, READ, WAKE)
        self.accepting = self.taking = False
        self.accept_resume = 0.0
        self.accept_share = AcceptShare(self.heartbeat, self.slot, self.sibling_busy_for)
        self.listening = [Listening.of(sock) for sock in self.listeners]
        self.start_accepting()
        self.lender = self.make_lender()
        if self.lender:
            self.lender.start()
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        try:
            while self.alive:
                self.notify()
                # Every turn, not only on a wakeup: a signal that came before the wakeup fd was
                # set (right after fork) still gets its work done within a turn.
                self.run_pending()
                for tag in self.sel.ready(self.before_wait(next_sweep)):
                    if tag in self.conns:   # not lent away or closed earlier in this batch
                        self.serve(tag)
                    elif type(tag) is Listening:
                        if self.alive:   # a stop signal may wake us in the same turn
                            self.accept(tag)
                    elif tag is HANDOFF:
                        self.take_lent()
                    elif tag is WAKE:
                        _drain(self.wake_r)
                    elif tag in self.handshakes:
                        self.handshake(tag)
                    else:
                        self.other_ready(tag)
                now = time.monotonic()
                if not self.accepting and now >= self.accept_resume:
                    self.resume_accepting()
                if now >= next_sweep:
                    self.sweep()
                    self.check_parent()
                    next_sweep = time.monotonic() + SWEEP_INTERVAL
            self.finish()
        finally:
            if self.lender:
                self.lender.stop()

    def make_selector(self) -> Poller:
        return Poller()

    def other_ready(self, tag: Any) -> None:
        """A source that a subclass registered (in make_selector) is ready; or a connection
        lent away or closed earlier in the same batch, to ignore."""

    def make_lender(self) -> Lender | None:
        """The thread that lends connections ready while the app runs (None: nothing to lend).

        Also with `workers = 1`: TTIN may add a sibling later (the lender looks before lending)."""
        lend = self.settings.keepalive > 0 and self.ssl is None
        return Lender(self) if lend else None

    def before_wait(self, next_sweep: float) -> float:
        """Work due before the selector waits; returns how long it may wait (until the next sweep,
        or until accepting resumes after a pause)."""
        until = next_sweep if self.accepting else min(next_sweep, self.accept_resume)
        return max(0.0, min(until - time.monotonic(), 1.0))

    # --- connections ----------------------------------------------------------------------------

    def start_accepting(self) -> None:
        """Watch the listeners and the hand-off socket: both bring new connections."""
        if not self.accepting:
            for listening in self.listening:
                self.sel.register(listening.sock, READ, listening)
            self.accepting = True
        self.update_taking()

    def stop_accepting(self) -> None:
        if self.accepting:
            for sock in self.listeners:
                self.sel.unregister(sock)
            self.accepting = False
        self.update_taking()

    def update_taking(self) -> None:
        """Watch the hand-off socket while accepting and `may_take()`."""
        take = self.accepting and self.may_take()
        if take and not self.taking:
            self.sel.register(self.handoff_recv, READ, HANDOFF)
        elif self.taking and not take:
            self.sel.unregister(self.handoff_recv)
        self.taking = take

    def may_take(self) -> bool:
        """Whether hand-offs are welcome while accepting (the gthread worker: with a free thread)."""
        return True

    def held(self) -> int:
        """Connections this worker holds, for the worker_connections limit."""
        return len(self.conns)

    def pause_accepting(self) -> None:
        """Out of descriptors: the listeners stay readable, so watching them would spin."""
        self.stop_accepting()
        self.accept_resume = time.monotonic() + ACCEPT_PAUSE

    def accept(self, listening: Listening) -> None:
        """Take what the backlog holds, not one per loop turn: up to worker_connections, and up to
        this worker's share while siblings can take the rest (workers/balance.py)."""
        share = self.accept_share(self.held(), self.settings.worker_connections)
        if share <= 0:
            # Siblings hold fewer and can take these: leave the backlog to them for a moment.
            self.stop_accepting()
            self.accept_resume = time.monotonic() + BALANCE_PAUSE
            return
        room = self.settings.worker_connections - self.held() - len(self.handshakes)
        listener, family, kind, proto = listening.sock, listening.family, listening.type, listening.proto
        for _ in range(max(min(room, share), 1)):
            try:
                fd, peer = listener._accept()   # what accept() does, minus its enum conversions
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return   # the backlog is empty, or a sibling took it
            except OSError as exc:
                if self.accept_failed(exc):
                    self.pause_accepting()
                return
            self.accepted()
            self.add(socket.socket(family, kind, proto, fd), peer, listening.local)
            if not self.accepting:
                return   # worker_connections reached

    def take_lent(self) -> None:
        """Connections siblings passed us, never more than worker_connections allows.

        They were lent because a request was waiting, and have waited already: each is served at
        once, before anything else this loop turn found. Only this loop takes them, between
        requests, so one that comes back to the worker that lent it (no sibling was free) is served
        by that worker idle, never queued behind its next request.
        """
        for conn in self.take_handoff(self.handoff_room()):
            self.watch(conn)
            if conn in self.conns and self.alive:
                self.serve(conn)
        if self.spare_fd < 0:
            self.accept_failed(OSError(errno.EMFILE, "no descriptor to receive a hand-off"))
            self.pause_accepting()

    def handoff_room(self) -> int:
        """How many hand-offs to take at once."""
        return self.settings.worker_connections - self.held()

    def resume_accepting(self) -> None:
        """After a pause (out of descriptors, or leaving the backlog to siblings), try again (a
        connection closing tries sooner)."""
        if (not self.accepting and self.alive and time.monotonic() >= self.accept_resume
                and self.held() < self.settings.worker_connections):
            self.start_accepting()

    def add(self, sock: socket.socket, peer: Any, local: Any = None) -> None:
        """A connection accepted; ``local``: its own address, when its listener's tells it."""
        if self.ssl is None:
            self.watch(self.new_connection(sock, peer, local))
            return
        # The TLS handshake runs from the selector too: a client that never sends its hello
        # costs a descriptor until header_timeout, never the worker.
        try:
            sock.setblocking(False)
            tls = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.debug("TLS setup for %s failed: %s", peer, exc)
            sock.close()
            return
        shake = Handshake(tls, peer, time.monotonic() + self.settings.header_timeout)
        self.handshakes.add(shake)
        self.sel.register(tls, READ, shake)

    def handshake(self, shake: "Handshake") -> None:
        try:
            shake.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(shake.sock, READ, shake)
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(shake.sock, WRITE, shake)
            return
        except OSError as exc:
            log.debug("TLS handshake with %s failed: %s", shake.peer, exc)
            self.drop_handshake(shake)
            return
        except Exception:
            log.exception("Error in the TLS handshake with %s; closing the connection", shake.peer)
            self.drop_handshake(shake)
            return
        self.handshakes.discard(shake)
        self.sel.unregister(shake.sock)
        conn = self.new_connection(shake.sock, shake.peer)
        self.watch(conn)
        if shake.sock.pending():   # the request came with the last handshake flight
            self.serve(conn)

    def drop_handshake(self, shake: "Handshake") -> None:
        self.handshakes.discard(shake)
        self.sel.unregister(shake.sock)
        shake.sock.close()

    def new_connection(self, sock: socket.socket, peer: Any, local: Any = None) -> Connection:
        # The selector waits, the socket never blocks: a client sending part of a TLS record
        # (or of anything) goes back to the selector instead of holding the worker.
        sock.settimeout(0.0)
        return Connection(sock, peer, self.ctx, local)

    def watch(self, conn: Connection) -> None:
        self.conns.add(conn)
        self.register(conn)
        held = self.held()
        self.held_connections(held)
        if held >= self.settings.worker_connections:
            self.stop_accepting()

    def forget(self, conn: Connection) -> None:
        self.conns.discard(conn)
        held = self.held()
        self.held_connections(held)
        self.heads.forget(conn)
        self.unregister(conn)
        if self.alive and held < self.settings.worker_connections:
            self.start_accepting()

    def register(self, conn: Connection) -> None:
        """Wait for the connection's bytes (the gthread worker: in its own epoll)."""
        fd = self.fds[conn] = conn.fileno()
        self.sel.register(fd, READ, conn)   # by number: no second fileno() call

    def unregister(self, conn: Connection) -> None:
        # By the descriptor it was registered with: a closed socket has none any more.
        fd = self.fds.pop(conn, None)
        if fd is None:
            return
        if conn.fileno() == fd:
            self.sel.unregister(fd)
        else:   # closed by the connection (the client left, or a `Connection: close`)
            self.sel.forget(fd)

    def serve(self, conn: Connection) -> None:
        if self.lender:
            self.lender.busy(conn)
        try:
            keep = conn.process()
        except Exception:
            # A bug met by one connection must not end the others this worker holds.
            log.exception("Error serving a connection; closing it")
            conn.close()
            keep = False
        finally:
            if self.lender:
                handed = self.lender.idle()
                if handed:
                    self.forget_handed(handed)
        if not keep:
            self.forget(conn)
        elif conn in self.conns:
            heads = self.heads
            if heads.sizes or conn.head_size:   # else no head is unfinished: nothing to count
                heads.update(conn)
                for victim in heads.over():
                    self.refuse_head(victim)
        # notify() and count_request() without their calls: this runs for every request.
        self.beats.beat()
        if self.ctx.requests >= self.max_requests and self.alive:
            self.retire_at_max_requests()

    def refuse_head(self, conn: Connection) -> None:
        """Over the worker's head budget: this unfinished head gets 431 and closes."""
        keep = conn.refuse_head()
        self.heads.update(conn)
        if not keep:
            self.forget(conn)

    def forget_handed(self, handed: list[Connection]) -> None:
        """Forget connections a sibling took over; close our descriptors without a shutdown."""
        for conn in handed:
            self.forget(conn)
            conn.sock.close()

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.conns if c.deadline <= now]:
            try:
                keep = conn.expire()
            except Exception:
                log.exception("Error expiring a connection; closing it")
                conn.close()
                keep = False
            self.heads.update(conn)
            if not keep:
                self.forget(conn)
        for shake in [h for h in self.handshakes if h.deadline <= now]:
            self.drop_handshake(shake)

    # --- stopping ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """Serve what has already arrived, hand idle connections to a sibling when retiring, and
        drain the rest (see `drain`)."""
        self.stop_accepting()
        for sock, peer in self.release_listeners():
            self.add(sock, peer)
        if self.lender and not self.retiring:
            # Every sibling stops too: nobody would take what the lender passes on.
            self.lender.stop()
            self.lender.join()
        if not self.retiring:
            for conn in self.drain_handoff():
                self.watch(conn)
        self.serve_ready(0)
        idle = [c for c in self.conns if c.idle]
        if self.retiring and idle:
            self.forget_handed(self.hand_off(idle))
        self.drain()
        for conn in list(self.conns):
            self.forget(conn)
            conn.close()
        for shake in list(self.handshakes):
            self.drop_handshake(shake)

    def drain(self) -> None:
        """Keep serving our connections until `drain_until`, each response with `Connection:
        close`; then close the idle ones (those with a request under way are finished first, each
        bounded by its own deadline)."""
        while self.conns or self.handshakes:
            self.notify()
            left = self.drain_until - time.monotonic()
            if left <= 0:
                self.serve_ready(0)   # a last look right before closing: serve what just came
                for conn in [c for c in self.conns if c.idle]:
                    self.forget(conn)
                    conn.close()
                if not self.conns and not self.handshakes:
                    return
            self.serve_ready(min(left, SWEEP_INTERVAL) if left > 0 else SWEEP_INTERVAL)
            self.sweep()

    def serve_ready(self, timeout: float) -> None:
        """While stopping: serve the connections that have bytes within `timeout` seconds."""
        for tag in self.sel.ready(timeout):
            if tag is WAKE:
                _drain(self.wake_r)
                self.run_pending()
            elif tag in self.conns:
                self.serve(tag)
            elif tag in self.handshakes:
                self.handshake(tag)
            else:
                self.other_ready(tag)


def fixed_local_name(listener: socket.socket) -> Any:
    """The address every connection accepted on ``listener`` has on our side (saving a
    getsockname per connection); None for a wildcard address, which each connection refines."""
    try:
        name = listener.getsockname()
    except OSError:
        return None
    if isinstance(name, tuple) and name[0] in ("0.0.0.0", "::"):
        return None
    return name


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass

