"""A bounded load generator: client threads doing GETs (or POSTs) on 127.0.0.1, keeping every failure.

Some threads keep one connection alive across requests, others open a new connection for each
request. Every thread stops by itself after `duration` seconds or once `max_requests` requests
were answered in all, whichever comes first; each socket operation has a timeout, so `stop()`
always returns.

A reused keep-alive connection that the server closed before sending a single byte of the
response is *stale*: HTTP clients retry such a request on a new connection (RFC 9112 section
9.3.1 allows it for idempotent requests), and so does this one. Stale connections are counted
apart from failures (with the pid that last answered on the connection), so a test can decide
whether they are acceptable.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from tests.server import Client, read_response

Mode = Literal["keepalive", "fresh"]


@dataclass(frozen=True)
class Failure:
    at: float       # seconds since the load started
    mode: Mode
    error: str      # the exception, or the unexpected status


class _Stale(Exception):
    """The server closed a reused connection before answering on it."""


class Load:
    def __init__(self, port: int, *, keepalive: int = 2, fresh: int = 2, path: str = "/pid",
                 duration: float = 30.0, max_requests: int | None = None, timeout: float = 10.0,
                 body: bytes | None = None) -> None:
        self.port = port
        self.path = path
        # With a body: POSTs, and the answer must echo it (path /echo of tests.apps).
        self.body = body
        self.duration = duration
        self.max_requests = max_requests
        self.timeout = timeout
        self.failures: list[Failure] = []
        self.stale: list[Failure] = []
        self.ok = 0
        # Bodies that are whole numbers: the worker pids of /pid and /sleep.
        self.pids: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = 0.0
        self._threads = [threading.Thread(target=self._run, args=(mode,), daemon=True, name=f"load-{mode}-{i}")
                         for mode, count in (("keepalive", keepalive), ("fresh", fresh)) for i in range(count)]

    def start(self) -> "Load":
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> "Load":
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_done(self, timeout: float = 60.0) -> None:
        """Wait until every thread stopped by itself (after `duration` or `max_requests`)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            raise AssertionError(f"the load still runs after {timeout}s: {self.report()}")

    def wait_requests(self, more: int, timeout: float = 20.0) -> None:
        """Wait until `more` further requests were answered (the server keeps serving)."""
        target = self.ok + more
        deadline = time.monotonic() + timeout
        while self.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.ok} of {target} requests answered after {timeout}s; "
                                     f"failures: {self.failures[:5]}")
            time.sleep(0.01)

    def report(self) -> str:
        return (f"{self.ok} answered, {len(self.failures)} failed, {len(self.stale)} stale keep-alive connections; "
                f"first failures: {self.failures[:10]}; first stale: {self.stale[:10]}")

    # --- one client thread ----------------------------------------------------------------------

    def _done(self) -> bool:
        return (self._stop.is_set() or time.monotonic() - self._started > self.duration
                or (self.max_requests is not None and self.ok >= self.max_requests))

    def _run(self, mode: Mode) -> None:
        client: Client | None = None
        used = 0
        last_pid = b""
        while not self._done():
            try:
                if client is None:
                    client, used = Client(self.port, self.timeout), 0
                status, headers, body = self._exchange(client, mode, reused=used > 0)
                used += 1
            except _Stale:
                self._record(self.stale, mode, f"closed after {used} requests, the last answered by pid {last_pid!r}")
                client = _close(client)
                continue
            except Exception as exc:
                self._record(self.failures, mode, repr(exc))
                client = _close(client)
                continue
            if status != 200 or (self.body is not None and body != self.body):
                self._record(self.failures, mode, f"status {status}: {body[:200]!r}")
            else:
                last_pid = body
                with self._lock:
                    self.ok += 1
                    if body.isdigit():
                        self.pids[int(body)] += 1
            if mode == "fresh" or headers.get("connection", "").lower() == "close":
                client = _close(client)
        _close(client)

    def _exchange(self, client: Client, mode: Mode, reused: bool) -> tuple[int, dict[str, str], bytes]:
        close = "Connection: close\r\n" if mode == "fresh" else ""
        if self.body is None:
            raw = f"GET {self.path} HTTP/1.1\r\nHost: localhost\r\n{close}\r\n".encode()
        else:
            raw = (f"POST {self.path} HTTP/1.1\r\nHost: localhost\r\n{close}"
                   f"Content-Length: {len(self.body)}\r\n\r\n").encode() + self.body
        try:
            client.send(raw)
            first = client.rfile.peek(1)
        except (BrokenPipeError, ConnectionResetError):
            first = b""
        if not first:
            if reused:
                raise _Stale()
            raise ConnectionError("connection closed before a response")
        return read_response(client.rfile)

    def _record(self, into: list[Failure], mode: Mode, error: str) -> None:
        with self._lock:
            into.append(Failure(round(time.monotonic() - self._started, 3), mode, error))


def _close(client: Client | None) -> None:
    if client is not None:
        try:
            client.close()
        except OSError:
            pass
    return None
