"""`reload = true`: restart the whole server when its code or configuration changes (development).

hupper runs the command again in a child process it watches and restarts that child when a file
it imported changes. Workers are forked and not watched, so reload implies preload_app: the app's
modules are imported in the master, where hupper sees them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable


def start(entry_point: str, graceful_timeout: float, files: Iterable[str | None] = ()) -> None:
    """In the monitor process this never returns; in the served child it registers `files`."""
    import hupper

    if not hupper.is_active():
        hupper.start_reloader(entry_point, shutdown_interval=graceful_timeout)
    watch(files)


def watch(files: Iterable[str | None]) -> None:
    """Have the reloader watch `files` too, when one runs this process (ours, or `pserve --reload`'s)."""
    files = [f for f in files if f]
    if files and active():
        sys.modules["hupper"].get_reloader().watch_files(files)


def active() -> bool:
    """Does a development reloader (ours, or `pserve --reload`'s) run this process?"""
    # A process hupper runs has imported it already (its worker_main did); asking by importing it
    # would load hupper and subprocess into every production master and worker for nothing.
    hupper = sys.modules.get("hupper")
    return hupper is not None and hupper.is_active()


def leave_if_reloading(status: int) -> None:
    """Exit at once when hupper runs this process (`pserve --reload`, `reload = true`).

    Returning would pass through hupper's worker_main, which then joins its module-polling thread
    (asleep for up to a second) after scanning every imported module once more: with a Pyramid app
    that alone takes over the one second pserve waits before "Server did not exit, forcefully
    killing". The server has stopped and reaped its workers by now; the next run finds the modules
    to watch again.
    """
    if not active():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
