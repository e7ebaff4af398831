"""Telling systemd how the service is doing: the sd_notify protocol.

When systemd starts a ``Type=notify`` service it sets ``NOTIFY_SOCKET`` to a unix datagram
socket (a path, or ``@name`` in the abstract namespace) and waits for ``READY=1``. The master
sends ``READY=1`` with ``MAINPID=`` and ``STATUS=`` once its workers serve, ``RELOADING=1`` on
HUP (``READY=1`` again once the new workers serve) and ``STOPPING=1`` on TERM, INT and QUIT. A
new master started by USR2 keeps the variable and announces itself with ``MAINPID=`` and
``READY=1``; the unit needs ``NotifyAccess=all`` for systemd to accept that from it (see
docs/deploy.md). With ``WatchdogSec=`` the master also sends ``WATCHDOG=1`` from its loop, so a
wedged master gets restarted. Socket activation (``LISTEN_FDS``) is read in sockets.py with our
own fds.
"""

from __future__ import annotations

import logging
import os
import time

from .green import original
from .logs import ERROR_LOGGER

socket = original("socket")
log = logging.getLogger(ERROR_LOGGER)

NOTIFY_ENV = "NOTIFY_SOCKET"


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ...) to systemd; False when not under systemd or it failed."""
    address = os.environ.get(NOTIFY_ENV, "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("%s=%r: expected a socket path or @name; not notifying systemd", NOTIFY_ENV, address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # systemd reads at once; a short bound keeps a stuck receiver from holding the master.
            sock.settimeout(1.0)
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("Cannot notify systemd at %s: %s", os.environ.get(NOTIFY_ENV), exc)
        return False
    return True


def monotonic_usec() -> str:
    """The MONOTONIC_USEC= field systemd wants along with RELOADING=1."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


ACTIVATED_ENV = "PASTESERVE_SOCKET_ACTIVATED"


def socket_activated() -> bool:
    """Whether systemd handed over our listeners, to us or to the master we upgraded from (USR2).

    systemd keeps those sockets for the next start: their unix socket files must stay when we
    stop. Call before sockets.inherited_fds(), which removes LISTEN_PID.
    """
    if os.environ.get("LISTEN_PID", "").strip() == str(os.getpid()) and os.environ.get("LISTEN_FDS", "0") != "0":
        os.environ[ACTIVATED_ENV] = "1"   # a USR2 re-exec inherits the environment, and with it the fact
    return os.environ.get(ACTIVATED_ENV) == "1"


class Watchdog:
    """systemd's watchdog (``WatchdogSec=``): ``WATCHDOG=1`` at least every half interval.

    ``WATCHDOG_PID`` names the process systemd started; the new master of a USR2 upgrade, whose
    parent that is, takes over the pings (``upgraded_from``).
    """

    def __init__(self, upgraded_from: int = 0) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "").strip()
        pid = os.environ.get("WATCHDOG_PID", "").strip()
        mine = not pid or pid in (str(os.getpid()), str(upgraded_from))
        self.interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else 0.0
        self.next = 0.0

    def ping(self) -> None:
        """Called every master loop turn; sends only when due."""
        if self.interval and time.monotonic() >= self.next:
            self.next = time.monotonic() + self.interval
            notify("WATCHDOG=1")
