"""The master's workers: how many there should be, forking them, retiring, killing and reaping them.

It keeps the worker table (pid -> `WorkerInfo`) and the generation a reload starts, kills workers
silent for longer than `timeout`, and backs off when new workers cannot load the app. The arbiter
owns the signals and the loop and calls in here; the workforce asks back only what a new worker
is built from (`Master`), and hands the arbiter to hooks as their ``server``.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from . import logs
from .green import original
from .heartbeat import Heartbeat, SlotAllocator
from .hooks import Hooks
from .loader import AppLoadError
from .settings import Settings

log = logging.getLogger(logs.ERROR_LOGGER)
time = original("time")

# A worker that cannot load the app exits with this, so the master stops instead of forking forever.
WORKER_BOOT_ERROR = 3
# Seconds before booting again after a worker failed to boot while others serve; doubles up to the max.
BOOT_BACKOFF_FIRST = 1.0
BOOT_BACKOFF_MAX = 60.0


@dataclass
class WorkerInfo:
    pid: int
    slot: int
    generation: int
    spawned: float              # heartbeat value written at fork; a later beat means "booted"
    retiring: float = 0.0       # when it was told to stop (0: not told)
    aborted: float = 0.0        # when it was sent SIGABRT for silence

    @property
    def age(self) -> int:
        """Gunicorn's name for the generation, for child_exit hooks written for it."""
        return self.generation


class HaltServer(Exception):
    """Stops the master (and its workers) with `exit_status`, logging `reason`."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status


class Master(Protocol):
    """What the workforce needs from the arbiter (which hooks get as ``server``)."""

    settings: Settings
    hooks: Hooks

    def build_worker(self, slot: int, generation: int) -> Any:
        """The worker object a new child runs, built before the fork."""

    def reset_in_child(self) -> None:
        """In a freshly forked worker: drop the master's signal handling."""


class Workforce:
    def __init__(self, master: Master, heartbeat: Heartbeat, slots: int, held_signals: Collection[int],
                 num_workers: int) -> None:
        self.master = master
        self.heartbeat = heartbeat
        self.slots = SlotAllocator(slots)
        # Signals the master handles: blocked across fork (see spawn_worker).
        self.held_signals = set(held_signals)
        self.workers: dict[int, WorkerInfo] = {}
        self.generation = 0
        self.num_workers = num_workers
        self.stopping = False
        # After a worker failed to boot while others still serve: one trial worker at a time
        # (`retry_pid`), none before `next_boot`; the pause doubles with each failure in a row.
        self.boot_failures = 0
        self.next_boot = 0.0
        self.retry_pid = 0

    def is_ready(self, info: WorkerInfo) -> bool:
        return self.heartbeat.last(info.slot) > info.spawned

    def current_workers(self) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if w.generation == self.generation and not w.retiring]

    def older_workers(self) -> list[WorkerInfo]:
        """Workers of a previous generation (before a reload) not yet told to stop."""
        return [w for w in self.workers.values() if w.generation < self.generation and not w.retiring]

    def manage_workers(self) -> None:
        if self.stopping:
            return
        current = self.current_workers()
        retry = self.workers.get(self.retry_pid)
        if retry is not None and self.is_ready(retry):
            log.info("Worker (pid %s) booted: the app loads again after %d failed boot(s)", retry.pid,
                     self.boot_failures)
            self.boot_failures, self.next_boot, self.retry_pid = 0, 0.0, 0
        missing = self.num_workers - len(current)
        if missing > 0 and not self.boot_failures:
            for _ in range(missing):
                self.spawn_worker()
        elif missing > 0 and retry is None and time.monotonic() >= self.next_boot:
            self.retry_pid = self.spawn_worker()
        if len(current) > self.num_workers:
            for info in sorted(current, key=lambda w: w.spawned)[: len(current) - self.num_workers]:
                self.retire_worker(info)
        older = self.older_workers()
        current = self.current_workers()
        # Old workers serve until every new one has booted: a reload never leaves nobody accepting.
        if older and all(self.is_ready(w) for w in current):
            for info in older:
                self.retire_worker(info)

    def spawn_worker(self) -> int:
        master = self.master
        slot = self.slots.acquire()
        self.heartbeat.reset(slot)
        info = WorkerInfo(0, slot, self.generation, self.heartbeat.last(slot))
        worker = master.build_worker(slot, self.generation)
        master.hooks.call("pre_fork", master, worker)
        # A signal meant for the worker that lands between fork and its own handlers would be
        # queued for a master loop the child never runs: hold signals until the worker is ready.
        signal.pthread_sigmask(signal.SIG_BLOCK, self.held_signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.held_signals)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.held_signals)
            info.pid = worker.pid = pid
            self.workers[pid] = info
            self.heartbeat.assign(slot, pid, self.generation)
            log.info("Booting worker with pid %s", pid)
            return pid
        # In the child: never return into the master's loop.
        status = 0
        try:
            master.reset_in_child()
            worker.pid = os.getpid()
            master.hooks.call("post_fork", master, worker)
            worker.init_process()
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except AppLoadError as exc:
            log.error("Worker failed to boot: %s", exc)
            status = WORKER_BOOT_ERROR
        except BaseException:
            log.error("Exception in worker process:\n%s", traceback.format_exc())
            status = 1
        finally:
            try:
                master.hooks.call("worker_exit", master, worker)
                logging.shutdown()
            finally:
                os._exit(status)

    def retire_worker(self, info: WorkerInfo) -> None:
        # HUP to a worker: finish in-flight requests, hand idle keep-alive connections to siblings, exit.
        info.retiring = time.monotonic()
        self.kill_worker(info.pid, signal.SIGHUP)

    def kill_worker(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self.forget_worker(pid)
        else:
            info = self.workers.get(pid)
            if info is not None and sig in (signal.SIGTERM, signal.SIGQUIT) and not info.retiring:
                info.retiring = time.monotonic()

    def kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            self.kill_worker(pid, sig)

    def forget_worker(self, pid: int) -> WorkerInfo | None:
        info = self.workers.pop(pid, None)
        if info is not None:
            self.heartbeat.free(info.slot)
            self.slots.release(info.slot)
        return info

    def worker_exited(self, pid: int, status: int) -> None:
        """A child the master reaped (waitpid's `status`); nothing if it was not one of ours."""
        info = self.forget_worker(pid)
        if info is None:
            return
        master = self.master
        master.hooks.call("child_exit", master, info)
        code = os.waitstatus_to_exitcode(status)
        if code == WORKER_BOOT_ERROR:
            self.boot_failed(info)
        elif info.retiring or self.stopping:
            log.info("Worker exited (pid %s): %s", pid, describe_status(status))
        elif code == 0:
            log.info("Worker (pid %s) exited on its own (max_requests, or a signal sent to it); replacing it",
                     pid)
        else:
            log.warning("Worker (pid %s) %s; replacing it", pid, describe_status(status))

    def boot_failed(self, info: WorkerInfo) -> None:
        if self.stopping:
            log.info("Worker (pid %s) failed to boot while the server stops", info.pid)
            return
        serving = [w for w in self.workers.values() if w.generation < info.generation and not w.retiring]
        if serving:
            # A reload whose app cannot load: keep the workers that still serve the old code.
            log.error("Reload failed: new workers cannot load the app; keeping the running workers")
            for w in list(self.workers.values()):
                if w.generation == info.generation:
                    self.kill_worker(w.pid, signal.SIGKILL)
            self.generation = max(w.generation for w in serving)
            return
        serving = [w for w in self.workers.values() if not w.retiring and self.is_ready(w)]
        if not serving:
            raise HaltServer(f"Worker (pid {info.pid}) failed to boot and no worker is left serving: the app "
                             "cannot be loaded (traceback above); stopping", WORKER_BOOT_ERROR)
        # A bad deploy met a worker that died or retired: the healthy workers keep serving.
        self.boot_failures += 1
        delay = min(BOOT_BACKOFF_MAX, BOOT_BACKOFF_FIRST * 2 ** (self.boot_failures - 1))
        self.next_boot = time.monotonic() + delay
        log.critical("WORKER BOOT FAILED (pid %s, %d in a row): the app cannot be loaded (traceback above); "
                     "%d worker(s) still serve; trying again in %.0f s", info.pid, self.boot_failures,
                     len(serving), delay)

    def murder_workers(self) -> None:
        """Abort workers silent for longer than `timeout`; kill those that overstay a retirement."""
        now = time.monotonic()
        settings = self.master.settings
        timeout = settings.timeout
        for info in list(self.workers.values()):
            if info.aborted:
                if now - info.aborted > 2.0:
                    self.kill_worker(info.pid, signal.SIGKILL)
                continue
            if not info.retiring and self.heartbeat.retiring(info.slot):
                # It reached max_requests: its replacement starts now, not once it has finished.
                log.info("Worker (pid %s) retires on its own; starting its replacement", info.pid)
                info.retiring = now
            if info.retiring and now - info.retiring > settings.graceful_timeout:
                log.warning("Worker (pid %s) did not stop within graceful_timeout; killing it", info.pid)
                info.aborted = now
                self.kill_worker(info.pid, signal.SIGKILL)
            elif timeout and now - self.heartbeat.last(info.slot) > timeout:
                log.critical("WORKER TIMEOUT (pid %s): silent for over %ss; aborting it", info.pid, timeout)
                info.aborted = now
                self.kill_worker(info.pid, signal.SIGABRT)


def describe_status(status: int) -> str:
    """A waitpid status in words, for the log."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"was killed by signal {sig} ({signal.Signals(sig).name})"
    return f"exited with code {os.WEXITSTATUS(status)}"
