"""Worker liveness and operator state through shared memory instead of Gunicorn's temp files.

The master maps one shared region before forking; every worker inherits it and stores
``time.monotonic()`` in its own slot. A beat is a memory write, not a syscall, so it cannot stall
on a slow disk. CLOCK_MONOTONIC is system-wide on Linux, so the master (and `pasteserve status`,
another process) compare a worker's beat with their own clock directly.

Besides the beat, a slot holds what an operator asks about: pid, birth, generation, requests
served, connections held and the request being served ("METHOD PATH", since when). A header
before the slots describes the master. With a ``path`` the region is a file in /dev/shm (tmpfs:
memory, no disk writeback) named after the master's pid (:func:`status_map_path`), so `pasteserve
status` reads it without asking any process anything: it answers while every worker is stuck.

Layout (little endian, offsets in bytes): a 256-byte header, then ``slots`` slots of 256 bytes.
A request's start and its end are one store each (one ``pack_into``); a reader reads a slot twice
and retries until both reads agree, so it never shows half a path.
"""

from __future__ import annotations

import heapq
import mmap
import os
import struct
import tempfile
import time
from typing import Any

MAGIC = b"pstatus1"
HEADER_SIZE = 256
SLOT_SIZE = 256

# Header: magic, master pid, started (wall), master beat (monotonic), generation, workers wanted,
# slot count, slot size, name, metrics dropped.
_HEADER = struct.Struct("<8sqddqqqq64sq")
_H_BEAT = 24
_H_GENERATION = 32
_H_WANTED = 40
_H_DROPPED = 128
# Slot fields. The request fields are adjacent so that a request's start (since, text) and end
# (requests, since = 0, or the next request shown) are each one store.
_BEAT, _PID, _BORN, _GENERATION, _CONNECTIONS, _STOPPING, _DROPPED, _REQUESTS, _SINCE, _TEXT = range(0, 80, 8)
_TEXT_LEN = SLOT_SIZE - _TEXT
_SLOT = struct.Struct(f"<dqdqqdqqd{_TEXT_LEN}s")
_D = struct.Struct("<d")
_Q = struct.Struct("<q")
_START = struct.Struct(f"<d{_TEXT_LEN}s")           # at _SINCE
_END = struct.Struct("<qd")                          # at _REQUESTS
_END_NEXT = struct.Struct(f"<qd{_TEXT_LEN}s")        # at _REQUESTS


def status_map_path(master_pid: int) -> str:
    """Where the master with this pid keeps its status map: /dev/shm, else the temp directory."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, f"pasteserve-{master_pid}.status")


class Heartbeat:
    """The master's header and one slot per worker, shared by the master and its forked workers."""

    def __init__(self, slots: int = 1024, path: str | None = None) -> None:
        if slots < 1:
            raise ValueError(f"a heartbeat needs at least one slot, not {slots}")
        self.slots = slots
        self.path = path
        self._owner = os.getpid()
        size = HEADER_SIZE + slots * SLOT_SIZE
        if path is None:
            # fileno -1: anonymous MAP_SHARED memory, so writes after fork stay visible.
            self._map = mmap.mmap(-1, size)
        else:
            self._map = _create_mapped_file(path, size)
        _HEADER.pack_into(self._map, 0, MAGIC, 0, 0.0, 0.0, 0, 0, slots, SLOT_SIZE, b"", 0)

    def _offset(self, slot: int) -> int:
        # struct would take a negative offset from the end: refuse it explicitly.
        if not 0 <= slot < self.slots:
            raise IndexError(f"heartbeat slot {slot} out of range 0..{self.slots - 1}")
        return HEADER_SIZE + slot * SLOT_SIZE

    # --- worker: liveness and what it does ----------------------------------------------------

    def writer(self, slot: int) -> SlotWriter:
        """Worker: its own slot's per-request stores, with the slot's offset worked out once."""
        return SlotWriter(self._map, self._offset(slot))

    def beat(self, slot: int, when: float | None = None) -> None:
        """Worker: record that it was last alive at `when` (a ``time.monotonic()``; default now)."""
        self.writer(slot).beat(when)

    def last(self, slot: int) -> float:
        """Master: the ``time.monotonic()`` of the slot's last beat (0.0 if it never beat)."""
        return _D.unpack_from(self._map, self._offset(slot) + _BEAT)[0]

    def set_dropped(self, slot: int, count: int) -> None:
        """Worker: metrics it could not send so far."""
        _Q.pack_into(self._map, self._offset(slot) + _DROPPED, count)

    def set_stopping(self, slot: int) -> None:
        """Worker: it stops (told to, or on its own); the first call's time is kept."""
        off = self._offset(slot) + _STOPPING
        if not _D.unpack_from(self._map, off)[0]:
            _D.pack_into(self._map, off, time.monotonic())

    # --- master ---------------------------------------------------------------------------------

    def retiring(self, slot: int) -> bool:
        """Master: has the worker in this slot begun to stop? Told to, or on its own (max_requests):
        then its replacement starts at once, while it finishes its connections (websockets perhaps
        for graceful_timeout)."""
        return _D.unpack_from(self._map, self._offset(slot) + _STOPPING)[0] > 0.0

    def reset(self, slot: int) -> None:
        """Master: clear a slot and give it a fresh beat before forking a worker into it."""
        base = self._offset(slot)
        self._map[base:base + SLOT_SIZE] = bytes(SLOT_SIZE)
        self.beat(slot)

    def assign(self, slot: int, pid: int, generation: int) -> None:
        """Master: the worker just forked into ``slot``."""
        base = self._offset(slot)
        _D.pack_into(self._map, base + _BORN, time.time())
        _Q.pack_into(self._map, base + _GENERATION, generation)
        _Q.pack_into(self._map, base + _PID, pid)   # last: a reader lists a slot once its pid is set

    def free(self, slot: int) -> None:
        """Master: the worker in ``slot`` is gone."""
        _Q.pack_into(self._map, self._offset(slot) + _PID, 0)

    def fewest_connections(self, skip: int, busy_before: float | None, silent_before: float = 0.0) -> int | None:
        """Worker: the fewest connections a sibling holds among those able to take more now (alive,
        not stopping, beaten since ``silent_before``, and, given ``busy_before``, not inside one
        request since before that monotonic time: a sync worker in a long request accepts
        nothing); None when no sibling is able. Only the slots a master with its wanted workers
        uses are read (lowest free first; twice as many while a reload replaces them)."""
        region = self._map
        wanted = _Q.unpack_from(region, _H_WANTED)[0]
        fewest = None
        for slot in range(min(self.slots, 2 * wanted + 2)):
            base = HEADER_SIZE + slot * SLOT_SIZE
            if slot == skip or not _Q.unpack_from(region, base + _PID)[0] or _D.unpack_from(region, base + _STOPPING)[0]:
                continue
            if _D.unpack_from(region, base + _BEAT)[0] < silent_before:
                continue
            if busy_before is not None:
                since = _D.unpack_from(region, base + _SINCE)[0]
                if since and since < busy_before:
                    continue
            held = _Q.unpack_from(region, base + _CONNECTIONS)[0]
            if fewest is None or held < fewest:
                fewest = held
        return fewest

    def describe_master(self, pid: int, name: str) -> None:
        _HEADER.pack_into(self._map, 0, MAGIC, pid, time.time(), time.monotonic(), 0, 0, self.slots,
                          SLOT_SIZE, name.encode("utf-8", "replace")[:64], 0)

    def master_beat(self, generation: int, wanted: int, dropped: int) -> None:
        """Master: once per loop turn; ``dropped``: metrics it could not send."""
        _D.pack_into(self._map, _H_BEAT, time.monotonic())
        _Q.pack_into(self._map, _H_GENERATION, generation)
        _Q.pack_into(self._map, _H_WANTED, wanted)
        _Q.pack_into(self._map, _H_DROPPED, dropped)

    def close(self) -> None:
        """Unmap; the process that created a file-backed map also removes its file."""
        if self.path is not None and os.getpid() == self._owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self._map.close()


def _create_mapped_file(path: str, size: int) -> mmap.mmap:
    # A previous master with our pid (a reboot, a kill -9) may have left its file: start afresh.
    # O_EXCL after the unlink: never write through a link someone put in the shared directory.
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def _text(data: bytes) -> str:
    # A cut may split a UTF-8 sequence: replace the broken tail rather than fail.
    return data.rstrip(b"\0").decode("utf-8", "replace")


def read_status(path: str, attempts: int = 20) -> dict[str, Any]:
    """A snapshot of a status map from outside: the master and every worker slot in use.

    Times are converted for the reader: ``*_age`` in seconds before now. ValueError if the file
    is not a status map.
    """
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        if len(data) < HEADER_SIZE or data[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not a pasteserve status map")
        _, pid, started, beat, generation, wanted, slots, size, name, dropped = _HEADER.unpack_from(data, 0)
        now, wall = time.monotonic(), time.time()
        master = {"pid": pid, "name": _text(name), "age": max(0.0, wall - started), "generation": generation,
                  "workers_wanted": wanted, "heartbeat_age": (now - beat) if beat else None,
                  "metrics_dropped": dropped}
        workers = []
        for slot in range(min(slots, (len(data) - HEADER_SIZE) // size)):
            row = _read_slot(data, HEADER_SIZE + slot * size, attempts)
            if row is None:
                continue
            beat, wpid, born, wgen, requests, connections, since, stopping, wdropped, method, wpath = row
            workers.append({
                "pid": wpid, "slot": slot, "age": max(0.0, wall - born), "generation": wgen,
                "requests": requests, "connections": connections,
                "stopping": max(0.0, now - stopping) if stopping else None,
                "heartbeat_age": max(0.0, now - beat), "metrics_dropped": wdropped,
                "request": {"method": method, "path": wpath, "seconds": max(0.0, now - since)} if since else None,
            })
        return {"master": master, "workers": workers}
    finally:
        data.close()


def _read_slot(data: mmap.mmap, offset: int, attempts: int) -> tuple | None:
    row = _SLOT.unpack_from(data, offset)
    for _ in range(attempts):
        again = _SLOT.unpack_from(data, offset)
        if again == row:
            break
        row = again   # a worker wrote meanwhile: read until it holds still
    beat, pid, born, gen, conns, stopping, dropped, requests, since, text = row
    if not pid:
        return None
    method, _, path = _text(text).partition(" ")
    return beat, pid, born, gen, requests, conns, since, stopping, dropped, method, path


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


class SlotWriter:
    """The stores a worker makes in its own slot at every request (see :meth:`Heartbeat.writer`)."""

    __slots__ = ("_map", "_beat", "_since", "_requests", "_connections")

    def __init__(self, region: mmap.mmap, base: int) -> None:
        self._map = region
        self._beat = base + _BEAT
        self._since = base + _SINCE
        self._requests = base + _REQUESTS
        self._connections = base + _CONNECTIONS

    def connections(self, count: int) -> None:
        """Holding ``count`` connections (stored as they open and close)."""
        _Q.pack_into(self._map, self._connections, count)

    def beat(self, when: float | None = None) -> None:
        """Alive at `when` (a ``time.monotonic()``; default now)."""
        _D.pack_into(self._map, self._beat, time.monotonic() if when is None else when)

    def show_request(self, since: float, text: bytes) -> None:
        """Serving the request ``text`` (``b"GET /path"``), started at monotonic ``since``."""
        _START.pack_into(self._map, self._since, since, text)

    def request_done(self, requests: int, since: float = 0.0, text: bytes = b"") -> None:
        """``requests`` served so far; then idle, or the request still running since ``since``."""
        if since:
            _END_NEXT.pack_into(self._map, self._requests, requests, since, text)
        else:
            _END.pack_into(self._map, self._requests, requests, 0.0)
