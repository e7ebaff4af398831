"""A worker's share of the connections queued on the listeners, so that siblings get theirs.

Every worker is woken by a new connection, and the first to run used to take all that was queued:
wrk's 50 connections split 45/5 or 50/0 as often as 25/25 between sync workers (and 50/0 or 13/37
between eventlet workers), and the worker holding more answered each of them later (200 clients on
thread pools: p99 1.9 s at 140/60, 1.4 s at 100/100). So a worker takes connections while it holds
fewer than ACCEPT_SLACK more than the sibling holding fewest, counting only siblings able to take
them (`Heartbeat.fewest_connections`); with none, as many as it may. Past its share it leaves the
backlog alone for BALANCE_PAUSE.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["ACCEPT_SLACK", "BALANCE_PAUSE", "BUSY_FOR", "SIBLINGS_READ_EVERY", "SILENT_FOR", "AcceptShare"]

# Siblings' counts are read from the status map at most every SIBLINGS_READ_EVERY; a sibling that
# has been inside one request for BUSY_FOR accepts nothing meanwhile (a sync worker), nor does one
# that has not beaten for SILENT_FOR (an eventlet worker whose app blocks its hub; idle workers
# beat every 0.25 s at most).
ACCEPT_SLACK = 4
SIBLINGS_READ_EVERY = 0.005
BALANCE_PAUSE = 0.005
BUSY_FOR = 0.02
SILENT_FOR = 0.5


class AcceptShare:
    """How many connections a worker takes before leaving the rest of the backlog to a sibling."""

    __slots__ = ("_heartbeat", "_slot", "_busy_for", "_read_at", "_fewest")

    def __init__(self, heartbeat: Any, slot: int, busy_for: float | None) -> None:
        """``busy_for``: a sibling inside one request this long counts as unable to take any
        (None: its requests do not stop it accepting, as with thread pools and green threads)."""
        self._heartbeat = heartbeat
        self._slot = slot
        self._busy_for = busy_for
        self._read_at = 0.0
        self._fewest: int | None = None

    def __call__(self, held: int, most: int) -> int:
        """This worker's share now, holding ``held`` and allowed ``most`` (worker_connections)."""
        now = time.monotonic()
        if now >= self._read_at + SIBLINGS_READ_EVERY:
            self._read_at = now
            busy = self._busy_for
            self._fewest = self._heartbeat.fewest_connections(
                self._slot, None if busy is None else now - busy, now - SILENT_FOR)
        if self._fewest is None:
            return most
        return self._fewest + ACCEPT_SLACK - held
