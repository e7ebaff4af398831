"""Serve until stopped: set up the master's process, then run the arbiter.

Before the arbiter exists: capture output, configure logging, detach (`daemon`), change to
`chdir`, and make the app's modules importable; what happens in here happens once per start,
never again on a reload.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from . import hooks as hooks_mod
from . import logs, upgrade
from .arbiter import Arbiter
from .loader import prepare_import
from .settings import Settings

log = logging.getLogger(logs.ERROR_LOGGER)


def daemonize() -> None:
    """Detach: fork twice, new session, stdio to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def run(source: Any, settings: Settings, logging_by_ini: bool = False) -> int:
    """Serve until stopped; the exit status for the command."""
    if settings.capture_output:
        # First, so every line (the app's prints, our log lines on stderr) lands in the file.
        logs.capture_output(settings.errorlog)
    try:
        logging_by_ini = logs.configure_from(settings.logconfig, settings.logconfig_dict) or logging_by_ini
    except (ValueError, TypeError, AttributeError, ImportError, KeyError, OSError) as exc:
        print(f"pasteserve: cannot configure logging from logconfig/logconfig_dict: {exc}", file=sys.stderr)
        return 2
    logs.setup_logging(settings.errorlog, settings.loglevel, settings.accesslog, configured_by_ini=logging_by_ini)
    # The new master of a USR2 upgrade is already detached (its parent, the old master, was):
    # forking away again would make the old master believe the upgrade died at once.
    if settings.daemon and not upgrade.started_by_upgrade():
        if settings.errorlog == "-" and not logging_by_ini:
            log.warning("daemon with errorlog = - sends the error log to /dev/null; set errorlog to a file")
        daemonize()
        if settings.capture_output:
            logs.capture_output(settings.errorlog)   # daemonize pointed stdio at /dev/null
    # `umask` applies only while unix sockets are bound (sockets.create_listeners), never to the
    # files the app creates: the process keeps the umask it was started with.
    if settings.chdir:
        # Before any app module is imported: `chdir` is where MODULE:CALLABLE is found.
        upgrade.remember_start_dir()
        os.chdir(settings.chdir)
    prepare_import(settings)
    try:
        arbiter = Arbiter(source, settings, logging_by_ini)
    except hooks_mod.HookError as exc:
        log.error("Cannot start: %s", exc)
        return 2
    return arbiter.run()

