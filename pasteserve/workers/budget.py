"""A worker-wide bound on bytes buffered for request heads still arriving.

Per-connection limits (line, field count, field size) allow a head of up to ~800 KB; a worker
holding hundreds of connections could buffer all of them at once. The budget is the sum over
its connections; over it, the largest unfinished heads are refused (431) until it fits again.
"""

from __future__ import annotations

from typing import Protocol


class _HeadHolder(Protocol):
    @property
    def head_size(self) -> int: ...


class HeadBudget:
    """Bytes of unfinished heads per connection, and their total; ``limit`` 0 is unlimited."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.sizes: dict[_HeadHolder, int] = {}

    def update(self, conn: _HeadHolder) -> None:
        """Record what ``conn`` buffers now (after it read)."""
        size = conn.head_size
        old = self.sizes.pop(conn, 0)
        if size:
            self.sizes[conn] = size
        self.total += size - old

    def forget(self, conn: _HeadHolder) -> None:
        self.total -= self.sizes.pop(conn, 0)

    def over(self) -> list[_HeadHolder]:
        """The connections to refuse, largest first, for the total to fit the limit again."""
        if not self.limit or self.total <= self.limit:
            return []
        excess = self.total - self.limit
        victims = []
        for conn in sorted(self.sizes, key=self.sizes.__getitem__, reverse=True):
            victims.append(conn)
            excess -= self.sizes[conn]
            if excess <= 0:
                break
        return victims
