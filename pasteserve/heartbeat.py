"""Worker liveness through shared memory instead of Gunicorn's per-worker temp files.

The master maps one anonymous shared region before forking; every worker inherits it
and stores ``time.monotonic()`` in its own 8-byte slot. A beat is a memory write, not a
syscall, so it cannot stall on a slow disk. CLOCK_MONOTONIC is system-wide on Linux,
so the master compares a worker's beat with its own clock directly.
"""

from __future__ import annotations

import heapq
import mmap
import struct
import time

# A slot: the last beat, then when the worker began retiring on its own (0.0: it serves).
_STAMP = struct.Struct("d")
_SLOT_SIZE = 2 * _STAMP.size


class Heartbeat:
    """One timestamp slot per worker, shared by the master and its forked workers."""

    def __init__(self, slots: int = 1024) -> None:
        if slots < 1:
            raise ValueError(f"a heartbeat needs at least one slot, not {slots}")
        self.slots = slots
        # fileno -1: anonymous MAP_SHARED memory, so writes after fork stay visible.
        self._map = mmap.mmap(-1, slots * _SLOT_SIZE)

    def _offset(self, slot: int) -> int:
        # struct would take a negative offset from the end: refuse it explicitly.
        if not 0 <= slot < self.slots:
            raise IndexError(f"heartbeat slot {slot} out of range 0..{self.slots - 1}")
        return slot * _SLOT_SIZE

    def beat(self, slot: int) -> None:
        """Worker: record that it is alive now."""
        _STAMP.pack_into(self._map, self._offset(slot), time.monotonic())

    def last(self, slot: int) -> float:
        """Master: the ``time.monotonic()`` of the slot's last beat (0.0 if it never beat)."""
        return _STAMP.unpack_from(self._map, self._offset(slot))[0]

    def retire(self, slot: int) -> None:
        """Worker: it stopped accepting on its own (max_requests) but still finishes its
        connections, websockets perhaps for graceful_timeout: a replacement should start now."""
        _STAMP.pack_into(self._map, self._offset(slot) + _STAMP.size, time.monotonic())

    def retiring(self, slot: int) -> bool:
        """Master: did the worker in this slot say it retires?"""
        return _STAMP.unpack_from(self._map, self._offset(slot) + _STAMP.size)[0] > 0.0

    def reset(self, slot: int) -> None:
        """Master: give a slot a fresh beat (and no retirement) before forking a worker into it."""
        _STAMP.pack_into(self._map, self._offset(slot) + _STAMP.size, 0.0)
        self.beat(slot)

    def close(self) -> None:
        self._map.close()


class SlotAllocator:
    """Master-side bookkeeping of heartbeat slots: lowest free first, freed on reap."""

    def __init__(self, slots: int) -> None:
        self._free = list(range(slots))  # sorted, hence already a heap
        self._used: set[int] = set()

    def acquire(self) -> int:
        if not self._free:
            raise RuntimeError(f"all {len(self._used)} worker slots are in use")
        slot = heapq.heappop(self._free)
        self._used.add(slot)
        return slot

    def release(self, slot: int) -> None:
        if slot not in self._used:
            raise ValueError(f"worker slot {slot} is not in use")
        self._used.remove(slot)
        heapq.heappush(self._free, slot)
