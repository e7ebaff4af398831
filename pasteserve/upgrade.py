"""The in-place upgrade (USR2), seen from both masters.

The old master forks and execs a new one that inherits the listeners by fd number (the
environment names them, and the old master's pid); the new one writes PIDFILE.2 and takes PIDFILE
once the old master, its parent, has gone. The operator stops the old master when the new serves.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Protocol

from . import logs, sockets
from .hooks import Hooks
from .workforce import describe_status

log = logging.getLogger(logs.ERROR_LOGGER)

MASTER_PID_ENV = "PASTESERVE_MASTER_PID"
# The directory the first master was started in, kept across upgrades (see Upgrade.reexec).
START_DIR_ENV = "PASTESERVE_START_DIR"


def started_by_upgrade() -> bool:
    """Whether this process is the new master of a USR2 upgrade (before `Upgrade` reads the environment)."""
    return MASTER_PID_ENV in os.environ


def remember_start_dir() -> None:
    """Keep where the server was started, before `chdir` moves away: an upgrade runs the command from there."""
    os.environ.setdefault(START_DIR_ENV, os.getcwd())


class Master(Protocol):
    """What the upgrade needs from the arbiter (which the pre_exec hook gets as ``server``)."""

    pid: int
    hooks: Hooks
    listeners: list[socket.socket]


class Upgrade:
    def __init__(self) -> None:
        # Set when we are the new master of a USR2 upgrade: our parent is the old master.
        self.old_master_pid = int(os.environ.pop(MASTER_PID_ENV, "0") or 0)
        self.start_dir = os.environ.pop(START_DIR_ENV, "") or os.getcwd()
        self.new_master_pid = 0   # the new master we started, while it runs

    def pidfile_path(self, path: str) -> str:
        # The new master of an upgrade writes PIDFILE.2 and takes PIDFILE once the old one is gone.
        return path + ".2" if self.old_master_pid else path

    def reexec(self, master: Master) -> None:
        """Start a new master from the same command line, handing it the listeners."""
        if self.new_master_pid:
            log.warning("USR2 ignored: an upgraded master (pid %s) is already running", self.new_master_pid)
            return
        if self.old_master_pid:
            log.warning("USR2 ignored: this master is itself an upgrade still waiting for the old one to stop")
            return
        env = dict(os.environ)
        env.update(sockets.fds_env(master.listeners))
        env[MASTER_PID_ENV] = str(master.pid)
        env[START_DIR_ENV] = self.start_dir
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
        argv[0] = sys.executable
        pid = os.fork()
        if pid:
            self.new_master_pid = pid
            log.info("Upgrading: started a new master (pid %s); stop this one (pid %s) when it serves",
                     pid, master.pid)
            return
        try:
            master.hooks.call("pre_exec", master)
            signal.set_wakeup_fd(-1)
            # The command line may name files relative to where the server was started (`chdir`
            # moved us away since): run it from there.
            try:
                os.chdir(self.start_dir)
            except OSError as exc:
                log.warning("Upgrade: cannot change back to %s (%s); starting from %s", self.start_dir,
                            exc.strerror, os.getcwd())
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(1)

    def new_master_exited(self, pid: int, status: int) -> bool:
        """Whether the reaped child `pid` was the new master we started (it died: say so, allow another USR2)."""
        if pid != self.new_master_pid:
            return False
        log.error("The new master (pid %s) from USR2 exited: %s", pid, describe_status(status))
        self.new_master_pid = 0
        return True

    def old_master_gone(self, pid: int) -> bool:
        """True once, when the old master (our parent) of the upgrade we are has exited."""
        if self.old_master_pid and os.getppid() != self.old_master_pid:
            log.info("The old master (pid %s) is gone; this master (pid %s) takes over", self.old_master_pid, pid)
            self.old_master_pid = 0
            return True
        return False
