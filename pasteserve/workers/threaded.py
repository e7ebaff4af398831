"""The gthread worker: the sync worker with `threads` app threads per process.

The selector thread does what it does in the sync worker (accept, TLS handshakes, hand-offs, idle
keep-alive connections, deadlines) but never runs the app. A connection whose request arrives
leaves the selector and waits in one first-come-first-served queue for a free app thread; that
thread serves every request the connection has sent (keep-alive, pipelining) and passes it back,
and the selector watches it again.

While every thread is busy, the worker still accepts (up to `worker_connections`, counting queued
and running connections) but takes no hand-offs. A connection that waited `LEND_AFTER` in the
queue is passed to the hand-off socket, where a sibling with a free thread takes it: the
head-of-line guarantee of the sync worker's Lender, per process. (The sync worker needs a second
thread for that because the app holds its only one; here the selector thread is free and lends
itself, without a second thread racing over the connection set.) When no sibling takes them in
time, every one is as busy: the first to look takes them back and lending pauses for a while.

Liveness: the heartbeat carries the oldest progress of any busy thread (its request began, or
body bytes arrived), so a thread stuck in one request past `timeout` gets the worker aborted like
a stuck sync worker, while threads that finish their requests keep it alive.
"""

from __future__ import annotations

import fcntl
import logging
import os
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
from .sync import SWEEP_INTERVAL, WAKE, Lender, SyncWorker, _drain

log = logging.getLogger(logs.ERROR_LOGGER)

# How long a ready connection waits for a thread of ours before a sibling may have it (the Lender's delay).
LEND_AFTER = 0.05
# After reclaiming what no sibling took (all were busy), lend nothing for this long.
LEND_PAUSE = 1.0


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


class ThreadedWorker(SyncWorker):
    """`worker_class = gthread`, or `sync` with `threads` > 1 (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads = self.settings.threads
        self.local = threading.local()   # .me: the AppThread of the calling thread
        self.app_threads = [AppThread(f"pasteserve-app-{i + 1}") for i in range(self.threads)]
        self.pool: list[threading.Thread] = []
        # The queue of ready connections with when each was queued; the app threads take from it.
        self.ready: deque[tuple[Connection, float]] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.done: deque[tuple[Connection, bool]] = deque()   # served; appended by app threads
        # The selector thread's own state:
        self.running = 0   # connections queued or being served
        self.from_siblings: set[Connection] = set()   # taken from the hand-off socket, not served yet
        self.pending_since: float | None = None       # since when hand-offs wait for a taker
        self.reclaiming = False                       # taking hand-offs though no thread is free
        self.lend_resume = 0.0                        # lend nothing before this
        self.begun = 0     # requests begun, for max_requests
        self.count_lock = threading.Lock()
        self.inline = False
        self.waiting = False   # the selector thread may be waiting: wake it for what is done

    def make_context(self) -> Any:
        ctx = super().make_context()
        ctx.multithread = self.threads > 1
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
        response that reached the limit is on its way, and serve them too. (While stopping, the
        sync worker's serve() calls this once more per connection; we retire already then.)
        """
        with self.count_lock:
            self.begun += 1
            reached = self.begun >= self.max_requests
        if reached and self.alive:
            log.info("Worker (pid %s) reached max_requests (%s); retiring", self.pid, self.max_requests)
            self.stop_serving(retire=True)

    def run(self) -> None:
        self.pool = [threading.Thread(target=self.work, args=(me,), name=me.name, daemon=True)
                     for me in self.app_threads]
        for thread in self.pool:
            thread.start()
        try:
            super().run()
        finally:
            self.stop_pool(wait=False)   # after finish(), or on the way out of an abort

    def make_lender(self) -> Lender | None:
        return None   # the selector thread lends (before_wait)

    # --- the selector thread ----------------------------------------------------------------------

    def notify(self) -> None:
        me = getattr(self.local, "me", None)
        now = time.monotonic()
        if me is not None:   # an app thread: body bytes arrived
            me.since = now
            return
        self.waiting = False   # the selector thread is at the top of its loop, awake
        busy = [t.since for t in self.app_threads if t.conn is not None]
        self.heartbeat.beat(self.slot, min(busy, default=now))

    def serve(self, conn: Connection) -> None:
        if self.inline:
            super().serve(conn)
            return
        # A connection a sibling passed on has waited its turn there already: it goes first.
        first = conn in self.from_siblings
        self.running += 1
        self.forget(conn)   # off the selector while a thread owns it
        with self.cond:
            if first:
                self.ready.appendleft((conn, time.monotonic()))
            else:
                self.ready.append((conn, time.monotonic()))
            self.cond.notify()
        self.update_intake()

    def forget(self, conn: Connection) -> None:
        self.from_siblings.discard(conn)
        super().forget(conn)

    def take_handoff(self) -> list[Connection]:
        taken = super().take_handoff()
        self.from_siblings.update(taken)
        return taken

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
            conn, keep = self.done.popleft()
            self.running -= 1
            if keep:
                self.watch(conn)
        self.update_intake()

    def update_intake(self) -> None:
        """Take hand-offs while a thread is free, or to reclaim what no sibling took.

        New connections are accepted even while every thread is busy (up to worker_connections):
        they queue in arrival order with the others instead of waiting unseen in the listen
        queue, and a sibling with a free thread gets them once they waited LEND_AFTER.
        """
        if self.alive and (self.running < self.threads or self.reclaiming):
            self.start_taking()
        else:
            self.stop_taking()
        if self.alive and self.held() < self.settings.worker_connections:
            self.start_accepting()

    def held(self) -> int:
        return len(self.conns) + self.running   # the selector's, and the queued or served ones

    def balance(self) -> float | None:
        """Lend what waited LEND_AFTER for a thread to siblings; reclaim what none took in time.

        Returns how soon to look again (None: nothing to watch).
        """
        if not self.alive or self.settings.workers < 2 or self.ssl is not None or self.running < self.threads:
            # Stopping, nobody to lend to, a TLS session that cannot leave this process, or a
            # free thread here: then nothing waits and we take hand-offs anyway.
            self.pending_since, self.reclaiming = None, False
            return None
        now = time.monotonic()
        if handoffs_pending(self.handoff_send):
            if self.pending_since is None:
                self.pending_since = now
            if not self.reclaiming and now - self.pending_since >= LEND_AFTER:
                # No sibling had a free thread: every one is as busy as we are. Take them back
                # (first in our queue: they waited longest), and lend nothing for a while.
                self.reclaiming = True
                self.lend_resume = now + LEND_PAUSE
                self.update_intake()
            return LEND_AFTER
        self.pending_since = None
        if self.reclaiming:
            self.reclaiming = False
            self.update_intake()
        if now < self.lend_resume:
            return self.lend_resume - now
        try:
            # The queue is in arrival order (but for a sibling's connection put first): while its
            # head is not due, nothing is, and the scan below is not worth its lock.
            head_due = self.ready[0][1] + LEND_AFTER
        except IndexError:
            return None
        if head_due > now:
            return head_due - now
        with self.cond:
            due = min((queued + LEND_AFTER for conn, queued in self.ready if conn.idle), default=None)
            if due is None or due > now:
                return None if due is None else due - now
            overdue = [conn for conn, queued in self.ready if queued + LEND_AFTER <= now and conn.idle]
            # One connection per message, as many as an idle sibling has threads: a sibling takes
            # one message per free thread, never more than it can serve at once.
            lent = [conn for conn in overdue[:self.threads] if self.hand_off([conn])]
            if lent:
                gone = set(map(id, lent))
                self.ready = deque(item for item in self.ready if id(item[0]) not in gone)
        for conn in lent:
            self.running -= 1
            conn.sock.close()   # the sibling's descriptor stays open: no shutdown
        if lent:
            self.update_intake()
        return LEND_AFTER

    # --- the app threads --------------------------------------------------------------------------

    def work(self, me: AppThread) -> None:
        self.local.me = me
        while True:
            with self.cond:
                while not self.ready:
                    if self.closing:
                        return
                    self.cond.wait()
                conn, _ = self.ready.popleft()
            me.since = time.monotonic()
            me.conn = conn
            keep = False
            try:
                keep = conn.process()
            except BaseException:
                # Connection answers app errors itself: this is a bug of ours. Keep the thread.
                log.exception("Error serving a connection in %s", me.name)
                conn.close()
            finally:
                me.conn = None
                me.environ = None
                self.done.append((conn, keep))
                if self.waiting:   # else the selector thread collects it before it waits
                    self.wake()

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass   # the pipe is full: the selector thread wakes anyway

    # --- stopping ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """Let the threads finish what they hold, then stop them and finish as the sync worker."""
        self.stop_accepting()
        self.stop_taking()
        while self.running:
            self.notify()
            # Responses begun now close their connection, so each connection is served once more
            # at most and this ends; the master kills us after graceful_timeout if it does not.
            for key, _ in self.sel.select(self.before_wait(time.monotonic() + SWEEP_INTERVAL)):
                tag = key.data
                if tag is WAKE:
                    _drain(self.wake_r)
                elif tag in self.conns:
                    self.serve(tag)
                elif tag in self.handshakes:
                    self.handshake(tag)
        self.stop_pool(wait=True)
        # What arrives from here on, the selector thread serves itself.
        self.inline = True
        super().finish()

    def stop_pool(self, wait: bool) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if wait:   # every thread is idle by now: they end at once
            for thread in self.pool:
                thread.join(1.0)

    def handle_abort(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        timeout = self.settings.timeout
        for me in sorted(self.app_threads, key=lambda t: t.since):
            if me.conn is None:
                continue
            stuck = now - me.since
            level = logging.CRITICAL if timeout and stuck >= timeout else logging.WARNING
            log.log(level, "Worker (pid %s) aborted while %s ran %s for %.1f s%s", self.pid, me.name,
                    me.describe(), stuck, " (stuck past timeout)" if level == logging.CRITICAL else "")
        super().handle_abort(signum, frame)
