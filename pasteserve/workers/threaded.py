"""The gthread worker: the sync worker with `threads` app threads per process.

The selector thread does what it does in the sync worker (accept, TLS handshakes, hand-offs, idle
keep-alive connections, deadlines) but never runs the app. A connection whose request arrives
waits in one first-come-first-served queue for a free app thread; that thread serves every request
the connection has sent (keep-alive, pipelining) and passes it back. Connections wait for bytes in
an epoll of their own (inside the selector's) with EPOLLONESHOT: reported once, silent while a
thread has it, re-armed by that thread before it passes it back. So a request costs the selector
thread no registration and no wake-up of its own: it takes back what the threads passed back
whenever it next comes round, and is woken for it only when it must know at once (`must_know`).

While every thread is busy, the worker still accepts (up to `worker_connections`, counting queued
and running connections) but takes no hand-offs (`may_take`). A connection that waited
`LEND_AFTER` in the queue is passed to the hand-off socket, where a sibling with a free thread takes it: the
head-of-line guarantee of the sync worker's Lender, per process. (The sync worker needs a second
thread for that because the app holds its only one; here the selector thread is free and lends
itself, without a second thread racing over the connection set.) When no sibling takes them in
time, every one is as busy: the lender takes them back (with whatever else waits there) and
lends nothing for a while. Only a worker that lent (or is about to) looks at the socket's queue.

Liveness: the heartbeat carries the oldest progress of any busy thread (its request began, or
body bytes arrived), so a thread stuck in one request past `timeout` gets the worker aborted like
a stuck sync worker, while threads that finish their requests keep it alive.

Stopping: the threads finish what they hold (what arrives meanwhile is served too, with
`Connection: close`), then the sync worker's finish runs (hand-off when retiring, drain), its
requests still going to the threads.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import queue
import select
import socket
import struct
import termios
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..connection import Connection
from .poller import READ, Poller
from .sync import SWEEP_INTERVAL, Lender, SyncWorker

log = logging.getLogger(logs.ERROR_LOGGER)

# How long a ready connection waits for a thread of ours before a sibling may have it (the Lender's delay).
LEND_AFTER = 0.05
# After reclaiming what no sibling took (all were busy), lend nothing for this long.
LEND_PAUSE = 1.0
# The selector's tag of the connections' own epoll.
CONNS = object()
# A connection reports its next bytes once, then stays registered but silent while a thread owns it,
# until that thread re-arms it: no unregister and register per request, and no wake-up of the
# selector thread to do them.
ARMED = select.EPOLLIN | select.EPOLLONESHOT


def handoffs_pending(sock: socket.socket) -> bool:
    """True while connections passed to the hand-off socket wait for a sibling to take them.

    The socket is shared by every worker; SIOCOUTQ counts the bytes of its datagrams that no
    one has received yet, whoever sent them.
    """
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0] > 0
    except OSError:
        return False


@dataclass(eq=False)
class AppThread:
    """What one app thread is doing: read by the selector thread for liveness and the abort log."""

    name: str
    conn: Connection | None = None
    since: float = 0.0   # last progress: the connection or a request began, or body bytes came
    environ: dict | None = None   # of the request it runs

    def describe(self) -> str:
        env = self.environ
        if env is None:
            return "a request"
        return f"{env['REQUEST_METHOD']} {env['RAW_URI']} from {env['REMOTE_ADDR']}"


class SerializedObserver:
    """The status slot's observer, called from one app thread at a time (it keeps which request
    is shown in plain attributes)."""

    def __init__(self, observer: Any) -> None:
        self.observer = observer
        self.lock = threading.Lock()

    def begin(self, req: Any, started: float) -> Any:
        with self.lock:
            return self.observer.begin(req, started)

    def end(self, token: Any, status: str, seconds: float) -> None:
        with self.lock:
            self.observer.end(token, status, seconds)


class ThreadedWorker(SyncWorker):
    """`worker_class = gthread`, or `sync` with `threads` > 1 (see the module docstring)."""

    # Its selector thread accepts (and queues) while every app thread is busy: a sibling's long
    # request says nothing about whether it takes connections.
    sibling_busy_for = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads = self.settings.threads
        self.local = threading.local()   # .me: the AppThread of the calling thread
        self.app_threads = [AppThread(f"pasteserve-app-{i + 1}") for i in range(self.threads)]
        self.pool: list[threading.Thread] = []
        # The queue of ready connections with when each was queued; the app threads take from it.
        # Every single step on it is atomic (no lock): the selector thread takes an entry back by
        # removing it, which fails once a thread took it. A thread waits for a token, one put
        # for each entry queued: never fewer tokens than entries, a few more after take-backs.
        self.ready: deque[tuple[Connection, float]] = deque()
        self.tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.closing = False
        # Served (the connection, whether it stays open, whether its thread re-armed it); appended
        # by app threads, taken by the selector thread whenever it comes round (collect).
        self.done: deque[tuple[Connection, bool, bool]] = deque()
        # The connections' own epoll (in the selector's, as CONNS; made in the worker process, as
        # the selector is: this object is made before the fork) and what its descriptors are.
        self.cpoll: select.epoll | None = None
        self.by_fd: dict[int, Connection] = {}
        self.fd_of: dict[Connection, int] = {}   # the same, the other way: a closed socket forgets its number
        self.early: set[Connection] = set()   # reported again before their thread's return was collected
        # The selector thread's own state:
        self.running = 0   # connections queued or being served
        self.from_siblings: set[Connection] = set()   # taken from the hand-off socket, not served yet
        self.pending_since: float | None = None       # since when hand-offs wait for a taker
        self.lent_out = False                         # we lent, and have not seen the socket empty since
        self.reclaiming = False                       # taking hand-offs though no thread is free
        self.lend_resume = 0.0                        # lend nothing before this
        self.begun = itertools.count(1)   # requests begun, for max_requests (next() is atomic)
        self.waiting = False   # the selector thread may be waiting: wake it for what is done
        self.aborted: list[tuple[float, str]] = []   # what ABRT found the threads running (logged later)

    def make_context(self) -> Any:
        ctx = super().make_context()
        ctx.multithread = self.threads > 1
        if ctx.on_progress is not None:
            ctx.on_progress = self.progress
        if ctx.observer is not None:
            ctx.observer = SerializedObserver(ctx.observer)
        user_hook = ctx.pre_request

        def pre_request(req: Any, environ: dict) -> None:
            me = getattr(self.local, "me", None)
            if me is not None:
                me.since = time.monotonic()
                me.environ = environ
            self.count_request()
            if user_hook is not None:
                user_hook(req, environ)

        ctx.pre_request = pre_request
        return ctx

    def count_request(self) -> None:
        """Retire once max_requests requests have begun (from the thread that begins one).

        Counted as they end, the selector thread could accept new connections while the
        response that reached the limit is on its way, and serve them too.
        """
        if next(self.begun) >= self.max_requests and self.alive:
            self.retire_at_max_requests()

    def run(self) -> None:
        self.pool = [threading.Thread(target=self.work, args=(me,), name=me.name, daemon=True)
                     for me in self.app_threads]
        for thread in self.pool:
            thread.start()
        try:
            super().run()
        finally:
            self.stop_pool(wait=False)   # after finish(), or on the way out of an abort
            self.log_aborted()

    def make_lender(self) -> Lender | None:
        return None   # the selector thread lends (before_wait)

    def make_selector(self) -> Poller:
        sel = super().make_selector()
        self.cpoll = select.epoll()
        sel.register(self.cpoll.fileno(), READ, CONNS)
        return sel

    def register(self, conn: Connection) -> None:
        fd = conn.fileno()
        if self.fd_of.get(conn) == fd:
            self.cpoll.modify(fd, ARMED)   # silent since it was last reported: arm it again
            return
        # The number may still be a closed connection's whose return is not collected yet: the
        # kernel dropped that one's registration when it closed, ours replaces it here.
        self.by_fd[fd] = conn
        self.fd_of[conn] = fd
        try:
            self.cpoll.register(fd, ARMED)
        except FileExistsError:
            self.cpoll.modify(fd, ARMED)

    def unregister(self, conn: Connection) -> None:
        self.early.discard(conn)
        fd = self.fd_of.pop(conn, -1)
        if self.by_fd.get(fd) is not conn:
            return   # never registered, or its number is another connection's now
        del self.by_fd[fd]
        if conn.fileno() == fd:
            # Still open (lent to a sibling, or taken over by the app): the socket outlives our
            # descriptor, and so would its registration.
            try:
                self.cpoll.unregister(fd)
            except OSError:
                pass

    def other_ready(self, tag: Any) -> None:
        if tag is not CONNS:
            return
        by_fd, conns = self.by_fd, self.conns
        for fd, _ in self.cpoll.poll(0):
            conn = by_fd.get(fd)
            if conn is None:
                continue
            if conn not in conns:
                self.collect()   # its thread re-armed it before passing it back: it may be back now
                if conn not in conns:
                    self.early.add(conn)   # served as soon as its return is collected
                    continue
            self.enqueue(conn)
        self.update_taking()

    # --- the selector thread ----------------------------------------------------------------------

    def notify(self) -> None:
        self.waiting = False   # the selector thread is at the top of its loop, awake
        busy = [t.since for t in self.app_threads if t.conn is not None]
        self.beats.beat(min(busy) if busy else time.monotonic())

    def progress(self) -> None:
        """An app thread received body bytes: it is not stuck."""
        me = getattr(self.local, "me", None)
        if me is not None:
            me.since = time.monotonic()

    def serve(self, conn: Connection) -> None:
        self.enqueue(conn)
        self.update_taking()

    def enqueue(self, conn: Connection) -> None:
        """Pass the connection to the app threads (the caller updates what it takes, once)."""
        # Not forgotten: it still counts towards worker_connections, its head towards the head
        # budget, and it stays registered (silent until its thread re-arms it).
        self.running += 1
        self.conns.discard(conn)
        if conn in self.from_siblings:
            # A connection a sibling passed on has waited its turn there already: it goes first.
            self.from_siblings.discard(conn)
            self.ready.appendleft((conn, time.monotonic()))
        else:
            self.ready.append((conn, time.monotonic()))
        self.tokens.put(None)

    def forget(self, conn: Connection) -> None:
        self.from_siblings.discard(conn)
        super().forget(conn)

    def take_handoff(self, limit: int) -> list[Connection]:
        taken = super().take_handoff(limit)
        self.from_siblings.update(taken)
        return taken

    def may_take(self) -> bool:
        """Take hand-offs while a thread is free, or to reclaim what no sibling took.

        New connections are accepted even while every thread is busy (up to worker_connections):
        they queue in arrival order with the others instead of waiting unseen in the listen
        queue, and a sibling with a free thread gets them once they waited LEND_AFTER.
        """
        return self.alive and (self.running < self.threads or self.reclaiming)

    def handoff_room(self) -> int:
        # One per free thread: a hand-off was lent to be served now, not to queue here.
        room = super().handoff_room()
        return room if self.reclaiming else min(room, self.threads - self.running)

    def before_wait(self, next_sweep: float) -> float:
        # Set before collecting: an app thread that finishes after this sees it and wakes us.
        self.waiting = True
        self.collect()
        wait = super().before_wait(next_sweep)
        again = self.balance()
        return wait if again is None else min(wait, again)

    def collect(self) -> None:
        """Take back the connections the app threads are done with."""
        if not self.done:
            return
        while self.done:
            conn, keep, armed = self.done.popleft()
            self.running -= 1
            if not keep:
                self.forget(conn)   # accepting resumes below worker_connections, as on any close
                continue
            if armed:
                self.conns.add(conn)   # held all along: the count is the same
            else:
                self.watch(conn)
            self.heads.update(conn)   # what the thread read of a head
            if conn in self.early:
                self.early.discard(conn)
                self.serve(conn)
        self.refuse_heads()
        self.update_taking()

    def refuse_heads(self) -> None:
        """Over the head budget: refuse the largest unfinished heads, as the sync worker does,
        whether the selector watches them or they wait for a thread."""
        for victim in self.heads.over():
            if victim not in self.conns:
                if not self.unqueue(victim):
                    continue   # a thread reads it now: weighed again when it comes back
                self.watch(victim)
            self.refuse_head(victim)

    def unqueue(self, conn: Connection) -> bool:
        """Take a connection back from the queue before a thread does; False if none has it."""
        for item in list(self.ready):   # a copy in one step: threads take from it meanwhile
            if item[0] is conn:
                try:
                    self.ready.remove(item)
                except ValueError:
                    return False   # a thread just took it
                self.running -= 1
                return True
        return False

    def held(self) -> int:
        return len(self.conns) + self.running   # the selector's, and the queued or served ones

    def balance(self) -> float | None:
        """Lend what waited LEND_AFTER for a thread to siblings; reclaim what none took in time.

        Returns how soon to look again (None: nothing to watch).
        """
        if not self.alive or self.ssl is not None or self.running < self.threads:
            # Stopping, a TLS session that cannot leave this process, or a free thread here: then
            # nothing waits and we take hand-offs anyway.
            self.pending_since, self.reclaiming = None, False
            return None
        now = time.monotonic()
        # The hand-off socket is looked at (an ioctl) only while what we lent may wait in it, and
        # before lending: not at every turn while every thread is busy. What a sibling lent, that
        # sibling watches.
        if self.lent_out and self.reclaim_due(now):
            return LEND_AFTER
        if self.reclaiming:
            self.reclaiming = False
            self.update_taking()
        if now < self.lend_resume:
            return self.lend_resume - now
        try:
            # The queue is in arrival order (but for a sibling's connection put first): while its
            # head is not due, nothing is, and the scan below is not worth its copy.
            head_due = self.ready[0][1] + LEND_AFTER
        except IndexError:
            return None
        if head_due > now:
            return head_due - now
        waiting = [item for item in list(self.ready) if item[0].idle]
        due = min((queued + LEND_AFTER for _, queued in waiting), default=None)
        if due is None or due > now:
            return None if due is None else due - now
        if not self.has_sibling():
            return LEND_AFTER   # none to lend to (yet: TTIN may add one)
        if handoffs_pending(self.handoff_send):
            # Others' hand-offs wait for a taker: every sibling is busy. Lend nothing on top.
            return LEND_AFTER
        # One connection per message, as many as an idle sibling has threads: a sibling takes
        # one message per free thread, never more than it can serve at once.
        lent = []
        for item in [item for item in waiting if item[1] + LEND_AFTER <= now][:self.threads]:
            try:
                self.ready.remove(item)   # ours before it is passed on, not a thread's as well
            except ValueError:
                continue   # a thread took it meanwhile
            if not self.hand_off([item[0]]):
                self.ready.appendleft(item)   # the socket is full; its token is still queued
                break
            lent.append(item[0])
        for conn in lent:
            self.running -= 1
            self.forget(conn)
            conn.sock.close()   # the sibling's descriptor stays open: no shutdown
        if lent:
            self.lent_out = True
            self.pending_since = now
            self.update_taking()
        return LEND_AFTER

    def reclaim_due(self, now: float) -> bool:
        """While what we lent waits in the hand-off socket: take it back (with whatever else
        waits there) once no sibling took it within LEND_AFTER. False once the socket is empty."""
        if not handoffs_pending(self.handoff_send):
            self.lent_out = False
            self.pending_since = None
            return False
        if self.pending_since is None:
            self.pending_since = now
        if not self.reclaiming and now - self.pending_since >= LEND_AFTER:
            # No sibling had a free thread: every one is as busy as we are. Take them back
            # (first in our queue: they waited longest), and lend nothing for a while.
            self.reclaiming = True
            self.lend_resume = now + LEND_PAUSE
            self.update_taking()
        return True

    # --- the app threads --------------------------------------------------------------------------

    def work(self, me: AppThread) -> None:
        self.local.me = me
        while True:
            self.tokens.get()
            try:
                conn, _ = self.ready.popleft()
            except IndexError:   # a token of an entry taken back, or of stop_pool
                if self.closing:
                    return
                continue
            me.since = time.monotonic()
            me.conn = conn
            keep = armed = False
            try:
                keep = conn.process()
            except BaseException:
                # A bug met by one connection must not end the others, nor this thread.
                log.exception("Error serving a connection in %s; closing it", me.name)
                conn.close()
            finally:
                me.conn = None
                me.environ = None
                if keep:
                    armed = self.rearm(conn)
                self.done.append((conn, keep, armed))
                if self.waiting and self.must_know(conn, keep):   # else collected when it next comes round
                    self.wake()

    def rearm(self, conn: Connection) -> bool:
        """Report the connection's next bytes again; done before passing it back, never after:
        once back, the selector thread may close it and its number be a new connection's."""
        try:
            self.cpoll.modify(conn.fileno(), ARMED)
        except OSError:
            return False   # the selector thread registers it again
        return True

    def must_know(self, conn: Connection, keep: bool) -> bool:
        """Whether the selector thread must learn at once that a thread passed a connection back.

        Not when the connection only goes back to waiting: re-armed, its next request wakes the
        selector thread, which collects what came back first. But when that request came before
        (early: the selector thread marks it so before it waits), when stopping, at
        worker_connections and one closed, or not taking hand-offs and a thread is free now.
        """
        return (conn in self.early or not self.alive or (not keep and not self.accepting)
                or (not self.taking and not self.ready))

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass   # the pipe is full: the selector thread wakes anyway

    # --- stopping ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """Let the threads finish what they hold, then finish as the sync worker (its drain still
        serves through the threads), then stop them."""
        self.stop_accepting()
        for sock, peer in self.release_listeners():   # queued on the listeners: answered too
            self.add(sock, peer)
        # Responses begun now close their connection, so each connection is served once more at
        # most and this ends; the master kills us after graceful_timeout if it does not. Waiting
        # first lets a retiring worker hand the connections its threads give back to a sibling.
        while self.running:
            self.notify()
            self.serve_ready(SWEEP_INTERVAL)
            self.sweep()
        super().finish()
        self.stop_pool(wait=True)

    def drain(self) -> None:
        super().drain()
        # What the threads still serve comes back (idle, or closed) before we close the rest.
        while self.running:
            self.notify()
            self.serve_ready(SWEEP_INTERVAL)
            super().drain()

    def serve_ready(self, timeout: float) -> None:
        self.waiting = True   # before collecting: a thread done after this wakes us
        self.collect()
        super().serve_ready(0.0 if self.done else timeout)
        self.waiting = False
        self.collect()

    def stop_pool(self, wait: bool) -> None:
        self.closing = True
        for _ in self.pool:
            self.tokens.put(None)
        if wait:   # every thread is idle by now: they end at once
            for thread in self.pool:
                thread.join(1.0)

    def handle_abort(self, signum: int, frame: Any) -> None:
        # Only note what each busy thread runs: the log is written once the selector thread has
        # unwound (log_aborted), never from inside the handler.
        now = time.monotonic()
        self.aborted = [(now - me.since, f"{me.name} ran {me.describe()}")
                        for me in sorted(self.app_threads, key=lambda t: t.since) if me.conn is not None]
        super().handle_abort(signum, frame)

    def log_aborted(self) -> None:
        timeout = self.settings.timeout
        for stuck, what in self.aborted:
            past = bool(timeout) and stuck >= timeout
            log.log(logging.CRITICAL if past else logging.WARNING, "Worker (pid %s) aborted while %s for %.1f s%s",
                    self.pid, what, stuck, " (stuck past timeout)" if past else "")
        self.aborted = []
