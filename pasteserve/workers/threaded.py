"""The gthread worker: the sync worker with `threads` app threads per process.

The selector thread does what it does in the sync worker (accept, TLS handshakes, hand-offs, idle
keep-alive connections, deadlines) but never runs the app. A connection whose request arrives
leaves the selector and waits in one first-come-first-served queue for a free app thread; that
thread serves every request the connection has sent (keep-alive, pipelining) and passes it back,
and the selector watches it again.

While every thread is busy, the worker neither accepts nor takes hand-offs, so new connections go
to a sibling with a free thread. A connection that waited `LEND_AFTER` in the queue is passed to
the hand-off socket, where the first sibling with a free thread takes it: the head-of-line
guarantee of the sync worker's Lender, per process. (The sync worker needs a second thread for
that because the app holds its only one; here the selector thread is free and lends itself,
without a second thread racing over the connection set.)

Liveness: the heartbeat carries the oldest progress of any busy thread (its request began, or
body bytes arrived), so a thread stuck in one request past `timeout` gets the worker aborted like
a stuck sync worker, while threads that finish their requests keep it alive.
"""

from __future__ import annotations

import logging
import os
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


@dataclass(eq=False)
class AppThread:
    """What one app thread is doing: read by the selector thread for liveness and the abort log."""

    name: str
    conn: Connection | None = None
    since: float = 0.0   # last progress: the connection or a request began, or body bytes came
    request: str = ""    # "GET /path from ADDR" while a request runs


class ThreadedWorker(SyncWorker):
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
        self.running = 0   # connections queued or being served (selector thread only)
        self.begun = 0     # requests begun, for max_requests
        self.count_lock = threading.Lock()
        self.inline = False

    def make_context(self) -> Any:
        ctx = super().make_context()
        ctx.multithread = self.threads > 1
        user_hook = ctx.pre_request

        def pre_request(req: Any, environ: dict) -> None:
            me = getattr(self.local, "me", None)
            if me is not None:
                me.since = time.monotonic()
                me.request = f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} from {environ['REMOTE_ADDR']}"
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
        busy = [t.since for t in self.app_threads if t.conn is not None]
        self.heartbeat.beat(self.slot, min(busy, default=now))

    def serve(self, conn: Connection) -> None:
        if self.inline:
            super().serve(conn)
            return
        self.running += 1
        self.forget(conn)   # off the selector while a thread owns it
        with self.cond:
            self.ready.append((conn, time.monotonic()))
            self.cond.notify()
        self.update_intake()

    def before_wait(self, next_sweep: float) -> float:
        self.collect()
        wait = super().before_wait(next_sweep)
        lend_in = self.lend_overdue()
        return wait if lend_in is None else min(wait, lend_in)

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
        """Accept and take hand-offs only while a thread is free and we are not stopping."""
        if self.alive and self.running < self.threads:
            if len(self.conns) < self.settings.worker_connections:
                self.start_accepting()
            self.start_taking()
        else:
            self.stop_accepting()
            self.stop_taking()

    def start_accepting(self) -> None:
        if self.running < self.threads:
            super().start_accepting()

    def lend_overdue(self) -> float | None:
        """Pass connections queued for LEND_AFTER to siblings; returns when to look again."""
        if not self.alive or self.settings.workers < 2 or self.ssl is not None:
            # Stopping siblings take nothing; with no sibling, nobody would; a TLS session
            # cannot leave this process.
            return None
        now = time.monotonic()
        with self.cond:
            if not self.ready:
                return None
            overdue = [conn for conn, queued in self.ready if now - queued >= LEND_AFTER and conn.idle]
            lent = self.hand_off(overdue) if overdue else []
            if lent:
                gone = set(map(id, lent))
                self.ready = deque(item for item in self.ready if id(item[0]) not in gone)
            waiting = [queued for conn, queued in self.ready if conn.idle]
        for conn in lent:
            self.running -= 1
            conn.sock.close()   # the sibling's descriptor stays open: no shutdown
        if lent:
            self.update_intake()
        if not waiting:
            return None
        if len(lent) < len(overdue):
            return LEND_AFTER   # the hand-off queue is full: try again later, don't spin
        return max(0.0, waiting[0] + LEND_AFTER - now)

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
                me.request = ""
                self.done.append((conn, keep))
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
                    me.request or "a request", stuck, " (stuck past timeout)" if level == logging.CRITICAL else "")
        super().handle_abort(signum, frame)
