"""The master process: binds once, keeps its workers going and answers signals.

Signal handlers only queue the signal and wake the loop; `Arbiter.run` does the work in
`handle_<name>` methods, between which it reaps children, kills silent workers and keeps the
number of workers right. The workers themselves are `workforce.py`'s, the USR2 upgrade is
`upgrade.py`'s, and the process setup before the master starts is `serve.py`'s.
See docs/signals.md for what each signal does.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import traceback
from typing import Any

from . import __version__, logs, metrics, pidfile, sockets, systemd, upgrade, users, workers
from . import hooks as hooks_mod
from .green import original
from .heartbeat import Heartbeat, status_map_path
from .loader import AppLoadError
from .proctitle import set_title
from .settings import ConfigError, Settings
from .workforce import WORKER_BOOT_ERROR, HaltServer, WorkerInfo, Workforce

log = logging.getLogger(logs.ERROR_LOGGER)

HEARTBEAT_SLOTS = 4096
SIGNALS = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH", "CHLD")
_HANDLED = {getattr(signal, "SIG" + name) for name in SIGNALS}
# Signals that count: each one the master receives adds or removes a worker, as with Gunicorn,
# up to this many waiting of one kind.
_COUNTED = {signal.SIGTTIN, signal.SIGTTOU}
_COUNTED_MAX = 16


# eventlet's green os.read waits in the hub for more bytes, which never come in the master.
_read = original("os").read
select = original("select")
time = original("time")


class Arbiter:
    def __init__(self, source: Any, settings: Settings, logging_by_ini: bool = False) -> None:
        self.source = source
        self.settings = settings
        self.logging_by_ini = logging_by_ini
        self.pid = os.getpid()
        self.listeners: list[socket.socket] = []
        self.app: Any = None
        self.ssl: Any = None   # the TLS context shared with the workers, or None
        self.signals: list[int] = []
        self.upgrade = upgrade.Upgrade()
        self.heartbeat = self.make_heartbeat()
        self.metrics: metrics.Metrics | None = None
        self.reported_workers = -1
        self.ready_sent = False   # systemd's READY=1 for the current generation
        self.activated = False    # listeners from systemd's socket activation
        self.watchdog = systemd.Watchdog(upgraded_from=self.upgrade.old_master_pid)
        self.workforce = Workforce(self, self.heartbeat, HEARTBEAT_SLOTS, _HANDLED, settings.workers)
        self.hooks = hooks_mod.Hooks(settings.hooks(), log)
        self.pidfile: str | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Workers pass idle keep-alive connections to each other through this pair (SCM_RIGHTS).
        self.handoff = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in self.handoff:
            s.setblocking(False)

    # Names Gunicorn's hook examples use (server.log.info(...), server.cfg.workers, len(server.WORKERS)).
    log = log

    @property
    def cfg(self) -> Settings:
        return self.settings

    @property
    def WORKERS(self) -> dict[int, WorkerInfo]:
        return self.workers

    # The worker table and count live in the workforce; hooks read them here, as on Gunicorn's arbiter.
    @property
    def workers(self) -> dict[int, WorkerInfo]:
        return self.workforce.workers

    @property
    def num_workers(self) -> int:
        return self.workforce.num_workers

    @num_workers.setter
    def num_workers(self, count: int) -> None:
        self.workforce.num_workers = count

    # --- start and stop ---------------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.start()
            self.loop()
        except HaltServer as exc:
            log.error(exc.reason)
            self.stop(graceful=False)
            self.finish()
            return exc.exit_status
        except Exception:
            log.error("Unhandled exception in the master:\n%s", traceback.format_exc())
            self.stop(graceful=False)
            self.finish()
            return 1
        self.finish()
        return 0

    def start(self) -> None:
        self.hooks.call("on_starting", self)
        set_title(f"master [{self.title_name}]")
        log.info("Starting pasteserve %s (pid %s)", __version__, self.pid)
        self.log_sources(self.settings)
        for notice in self.settings.notices:   # once per start, not again on each reload
            log.info(notice)
        self.write_pidfile()
        self.heartbeat.describe_master(self.pid, self.title_name)
        self.install_signals()
        self.metrics = self.make_metrics(self.settings)
        metrics.install(self.metrics)
        self.ssl = self.make_ssl(self.settings)
        self.activated = systemd.socket_activated()
        self.listeners = self.bind(self.settings)
        self.log_listeners()
        name = workers.chosen(self.settings.worker_class, self.settings.threads)
        threads = self.settings.threads
        log.info("Using worker: %s", f"{name} ({threads} thread{'s' if threads > 1 else ''})" if name == "gthread" else name)
        if self.settings.preload_app or self.settings.reload:
            self.app = self.load_app_or_halt()
        self.workforce.manage_workers()
        self.hooks.call("when_ready", self)

    def log_sources(self, settings: Settings) -> None:
        # Values PasteDeploy moved out of the section are the surprising ones: say so at INFO.
        for name, source in sorted(settings.sources.items()):
            if source != "default":
                level = logging.INFO if "DEFAULT" in source or "command line" in source else logging.DEBUG
                log.log(level, "setting %s = %r (from %s)", name, getattr(settings, name), source)

    def log_listeners(self) -> None:
        for sock in self.listeners:
            log.info("Listening at: %s", sockets.describe(sock, tls=self.ssl is not None))

    def make_ssl(self, settings: Settings) -> Any:
        """The TLS context, built once here so a bad certificate stops the start (or the reload)."""
        if not settings.certfile:
            return None
        try:
            return sockets.ssl_context(settings.certfile, settings.keyfile, ca_certs=settings.ca_certs,
                                       ciphers=settings.ciphers, cert_reqs=settings.cert_reqs,
                                       min_version=settings.tls_min_version)
        except (ValueError, OSError) as exc:
            raise HaltServer(f"Cannot set up TLS: {exc}", 1) from None

    def make_heartbeat(self) -> Heartbeat:
        # File-backed (in /dev/shm) so `pasteserve status` can read it; anonymous if that fails.
        try:
            return Heartbeat(HEARTBEAT_SLOTS, path=status_map_path(self.pid))
        except OSError as exc:
            log.warning("No status map (pasteserve status will not work): %s", exc)
            return Heartbeat(HEARTBEAT_SLOTS)

    def make_metrics(self, settings: Settings) -> metrics.Metrics | None:
        try:
            return metrics.create(settings)
        except (ValueError, OSError) as exc:
            raise HaltServer(f"Cannot send metrics: {exc}", 1) from None

    @property
    def title_name(self) -> str:
        return self.settings.proc_name or self.source.name

    def bind(self, settings: Settings, existing: list[socket.socket] = ()) -> list[socket.socket]:
        """Listeners for settings.bind: reuse the ones we (or an upgraded parent) already hold."""
        # Without a bind setting, systemd's socket activation (or a USR2 parent) chose the sockets.
        inherited = sockets.inherited_specs() if settings.sources.get("bind") == "default" else []
        specs = inherited or [sockets.parse_bind(b) for b in settings.bind]
        try:
            listeners = sockets.create_listeners(specs, backlog=settings.backlog, reuse_port=settings.reuse_port,
                                                 umask=settings.umask, inherited=sockets.inherited_fds(),
                                                 existing=existing, unix_mode=settings.unix_socket_perms)
        except sockets.BindError as exc:
            raise HaltServer(f"Cannot listen: {exc}", 1) from None
        if existing or self.upgrade.old_master_pid:
            # Reused listeners (HUP) and inherited ones (USR2) were listening with the old backlog:
            # listen() again takes the new one, and queued connections stay queued.
            for sock in listeners:
                sock.listen(settings.backlog)
        self.chown_unix_sockets(listeners, settings)
        return listeners

    def chown_unix_sockets(self, listeners: list[socket.socket], settings: Settings) -> None:
        """Give unix socket files to `user`/`group`, so workers (and their peers) own what they serve."""
        if not (settings.user or settings.group):
            return
        uid, gid = users.ids(settings.user, settings.group)
        for sock in listeners:
            path = sock.getsockname() if sock.family == socket.AF_UNIX else None
            if isinstance(path, str) and path and not path.startswith("\0"):
                try:
                    os.chown(path, uid, gid)
                except OSError as exc:
                    raise HaltServer(f"Cannot give unix:{path} to user {settings.user!r} / group "
                                     f"{settings.group!r}: {exc.strerror}", 1) from None

    def load_app_or_halt(self) -> Any:
        try:
            return self.source.load_app()
        except AppLoadError as exc:
            raise HaltServer(str(exc), WORKER_BOOT_ERROR) from None
        except Exception:
            raise HaltServer("Cannot load the app:\n" + traceback.format_exc(), WORKER_BOOT_ERROR) from None

    def write_pidfile(self) -> None:
        if not self.settings.pidfile:
            return
        path = self.upgrade.pidfile_path(self.settings.pidfile)
        try:
            pidfile.write(path, self.pid)
        except OSError as exc:
            raise HaltServer(f"Cannot write the pidfile {path}: {exc.strerror}", 1) from None
        self.pidfile = path

    def remove_pidfile(self) -> None:
        if self.pidfile:
            pidfile.remove_if_ours(self.pidfile, self.pid)

    def stop(self, graceful: bool = True) -> None:
        """Stop every worker: TERM and wait graceful_timeout, or QUIT; then KILL what is left."""
        self.workforce.stopping = True
        new_master = self.upgrade.new_master_pid
        if not new_master:   # after USR2 the service goes on in the new master
            systemd.notify("STOPPING=1")
        # A new master from USR2 still uses the unix socket files, systemd keeps its own: leave them.
        sockets.close_listeners(self.listeners, unlink=not (new_master or self.activated))
        self.listeners = []
        self.workforce.kill_all(signal.SIGTERM if graceful else signal.SIGQUIT)
        limit = time.monotonic() + (self.settings.graceful_timeout if graceful else 2.0)
        while self.workers and time.monotonic() < limit:
            self.reap_workers()
            time.sleep(0.05)
        self.workforce.kill_all(signal.SIGKILL)
        while self.workers:
            self.reap_workers()
            time.sleep(0.01)

    def finish(self) -> None:
        self.hooks.call("on_exit", self)
        self.remove_pidfile()
        self.heartbeat.close()
        log.info("Shutting down: master (pid %s)", self.pid)

    # --- the loop ---------------------------------------------------------------------------------

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        # Other repeats of a kind already waiting merge into it (as the kernel merges pending
        # signals): the queue stays bounded and a burst of one kind never drops another kind.
        if signum in _COUNTED:
            if self.signals.count(signum) < _COUNTED_MAX:
                self.signals.append(signum)
        elif signum not in self.signals:
            self.signals.append(signum)

    def loop(self) -> None:
        while True:
            while self.signals:
                signum = self.signals.pop(0)
                name = signal.Signals(signum).name[3:].lower()
                if name != "chld":
                    log.info("Handling signal: %s", name)
                if getattr(self, "handle_" + name)() is StopLoop:
                    return
            self.reap_workers()
            self.workforce.murder_workers()
            self.workforce.manage_workers()
            self.report()
            self.watch_upgrade()
            self.sleep()

    def report(self) -> None:
        """Once per turn: systemd's watchdog and READY, the master's row of the status map, the workers gauge
        and the backlog histogram."""
        workforce = self.workforce
        self.watchdog.ping()
        self.heartbeat.master_beat(workforce.generation, self.num_workers, self.metrics.dropped if self.metrics else 0)
        if self.metrics is not None and len(self.workers) != self.reported_workers:
            self.metrics.gauge("workers", len(self.workers))
        self.reported_workers = len(self.workers)
        if self.metrics is not None and self.settings.enable_backlog_metric:
            queued = sockets.queued_connections(self.listeners)
            if queued is not None:
                self.metrics.histogram("backlog", queued)
        if not self.ready_sent and not workforce.stopping:
            current = workforce.current_workers()
            if current and not workforce.older_workers() and all(workforce.is_ready(w) for w in current):
                self.ready_sent = True
                systemd.notify("READY=1", f"MAINPID={self.pid}",
                               f"STATUS=Serving with {len(current)} workers, generation {workforce.generation}")

    def sleep(self) -> None:
        # Poll faster while new workers boot, so old ones retire as soon as the new ones serve.
        booting = any(not self.workforce.is_ready(w) for w in self.workers.values() if not w.retiring)
        try:
            ready, _, _ = select.select([self.wake_r], [], [], 0.05 if booting else 1.0)
            if ready:
                while _read(self.wake_r, 4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass

    # --- signals ----------------------------------------------------------------------------------

    def handle_chld(self) -> None:
        self.reap_workers()

    def reap_workers(self) -> None:
        """Collect every child that exited: the new master of an upgrade, or a worker."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if not self.upgrade.new_master_exited(pid, status):
                self.workforce.worker_exited(pid, status)

    def handle_hup(self) -> None:
        """Re-read the configuration, start new workers, retire the old ones once the new serve."""
        systemd.notify("RELOADING=1", systemd.monotonic_usec())
        self.ready_sent = False   # report() sends READY=1 once the (new or kept) workers serve
        try:
            new = self.source.settings()
            new_hooks = hooks_mod.Hooks(new.hooks(), log)
        except (ConfigError, hooks_mod.HookError) as exc:
            log.error("Reload cancelled, keeping the running configuration:\n%s", exc)
            return
        except Exception:
            log.error("Reload cancelled:\n%s", traceback.format_exc())
            return
        old = self.settings
        # Only eventlet needs the restart: it patched this process before the app was imported.
        # sync and gthread differ in threads only, as `threads` alone switches between them.
        if "eventlet" in (new.worker_class, old.worker_class) and new.worker_class != old.worker_class:
            log.error("Reload cancelled: worker_class changed from %s to %s, which needs a restart or USR2",
                      old.worker_class, new.worker_class)
            return
        rebind = new.bind != old.bind or new.backlog != old.backlog
        new_metrics = None
        app = self.app
        if (new.preload_app or new.reload) and app is None:
            # Turning preload_app (or reload) on loads the app here, before the point of no return:
            # an app that does not load cancels the reload instead of stopping the server.
            try:
                app = self.source.load_app()
            except Exception:
                log.error("Reload cancelled: the app cannot be loaded (preload_app):\n%s", traceback.format_exc())
                return
        try:
            new_ssl = self.make_ssl(new)
            new_metrics = self.make_metrics(new)
            if rebind:
                listeners = self.bind(new, existing=self.listeners)
                kept = {id(s) for s in listeners}
                sockets.close_listeners([s for s in self.listeners if id(s) not in kept], unlink=True)
                self.listeners = listeners
        except HaltServer as exc:
            log.error("Reload cancelled: %s", exc.reason)
            if new_metrics is not None:
                new_metrics.close()
            return
        # Nothing can cancel the reload from here on.
        if new.reuse_port != old.reuse_port:
            log.warning("reuse_port changed to %s: the listeners keep their setting until the server is "
                        "restarted (USR2 hands the same sockets over)", new.reuse_port)
        if not self.logging_by_ini:
            logs.setup_logging(new.errorlog, new.loglevel, new.accesslog, configured_by_ini=False)
        self.ssl = new_ssl
        old_metrics, self.metrics = self.metrics, new_metrics
        metrics.install(new_metrics)
        if old_metrics is not None:
            old_metrics.close()
        if rebind:
            self.log_listeners()
        self.settings = new
        self.log_sources(new)
        self.num_workers = new.workers
        self.hooks = new_hooks
        if not (new.preload_app or new.reload):
            self.source.forget_app()
            app = None
            if self.source.app_code_in_master:
                log.warning("Reload under pserve: new workers rebuild the app from the INI, but run the code pserve "
                            "imported at start; to load new code, upgrade with USR2 (or restart)")
        self.app = app
        self.hooks.call("on_reload", self)
        self.workforce.generation += 1
        set_title(f"master [{self.title_name}]")
        self.workforce.manage_workers()

    def handle_term(self) -> Any:
        self.stop(graceful=True)
        return StopLoop

    def handle_int(self) -> Any:
        self.stop(graceful=False)
        return StopLoop

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        self.set_num_workers(self.num_workers + 1)

    def handle_ttou(self) -> None:
        if self.num_workers > 1:
            self.set_num_workers(self.num_workers - 1)

    def set_num_workers(self, count: int) -> None:
        old, self.num_workers = self.num_workers, count
        self.hooks.call("nworkers_changed", self, count, old)
        self.workforce.manage_workers()

    def handle_usr1(self) -> None:
        logs.reopen_files()
        self.workforce.kill_all(signal.SIGUSR1)   # over a copy: a worker found gone is forgotten

    def handle_usr2(self) -> None:
        self.upgrade.reexec(self)

    def handle_winch(self) -> None:
        if self.settings.daemon:
            log.info("Stopping all workers (WINCH while daemonized)")
            self.set_num_workers(0)
        else:
            log.debug("SIGWINCH ignored: not daemonized")

    # --- what the workforce asks back ------------------------------------------------------------

    def build_worker(self, slot: int, generation: int) -> Any:
        """The worker a new child runs, with what it gets from the master (listeners, app, settings...)."""
        worker_cls = workers.load(workers.chosen(self.settings.worker_class, self.settings.threads))
        return worker_cls(age=generation, ppid=self.pid, listeners=self.listeners,
                          source=self.source, app=self.app, settings=self.settings,
                          heartbeat=self.heartbeat, slot=slot, hooks=self.hooks,
                          handoff=self.handoff, title=self.title_name, ssl=self.ssl)

    def reset_in_child(self) -> None:
        """In a new worker: the master's signal handlers and wake-up pipe are not its own."""
        signal.set_wakeup_fd(-1)
        for name in SIGNALS:
            signal.signal(getattr(signal, "SIG" + name), signal.SIG_DFL)
        os.close(self.wake_r)
        os.close(self.wake_w)
        random.seed()

    # --- upgrade (USR2) ---------------------------------------------------------------------------

    def watch_upgrade(self) -> None:
        # The new master of an upgrade takes the real pidfile once its parent, the old master, exits.
        if self.upgrade.old_master_gone(self.pid) and self.pidfile and self.settings.pidfile:
            os.replace(self.pidfile, self.settings.pidfile)
            self.pidfile = self.settings.pidfile


class StopLoop:
    """Returned by a handler to end the master loop."""
