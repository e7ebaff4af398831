"""Clients that connect at once: how long the last of them waits for its first answer.

wrk ramps its connections up and then measures a steady state, which hides a server that
accepts one connection per turn of its loop and serves every ready one before the next accept:
with 50 clients arriving together, the last waits for 49 others. Here every client connects at
the same instant (a barrier), sends one keep-alive GET and times its first complete answer.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass(frozen=True)
class BurstResult:
    clients: int
    first_answers_ms: tuple[float, ...]   # one per client that was answered
    errors: int

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.first_answers_ms) if self.first_answers_ms else None

    @property
    def slowest_ms(self) -> float | None:
        return max(self.first_answers_ms) if self.first_answers_ms else None


def measure(port: int, clients: int = 50, timeout: float = 10.0) -> BurstResult:
    """Connect ``clients`` sockets at once, one GET each; time each first answer."""
    barrier = threading.Barrier(clients)
    times: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                sock.sendall(REQUEST)
                _read_response(sock)
            with lock:
                times.append((time.perf_counter() - start) * 1000)
        except (OSError, ValueError) as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return BurstResult(clients, tuple(sorted(times)), clients - len(times))


def _read_response(sock: socket.socket) -> None:
    """Read one response with a Content-Length body (every benchmark app sends one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed before the end of the body")
        body += chunk
