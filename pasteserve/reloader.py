"""`reload = true`: restart the whole server when its code or configuration changes (development).

hupper runs the command again in a child process it watches and restarts that child when a file
it imported changes. Workers are forked and not watched, so reload implies preload_app: the app's
modules are imported in the master, where hupper sees them.
"""

from __future__ import annotations

from typing import Iterable


def start(entry_point: str, graceful_timeout: float, files: Iterable[str | None] = ()) -> None:
    """In the monitor process this never returns; in the served child it registers `files`."""
    import hupper

    if not hupper.is_active():
        hupper.start_reloader(entry_point, shutdown_interval=graceful_timeout)
    hupper.get_reloader().watch_files([f for f in files if f])
