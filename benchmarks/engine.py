"""The CPU cost of one request inside pasteserve's engine, in-process and without system calls.

    .venv/bin/python benchmarks/engine.py                  # microseconds per request, best of N
    .venv/bin/python benchmarks/engine.py --instructions   # CPU instructions per request (valgrind)

A :class:`pasteserve.connection.Connection` serves requests from an in-memory socket: each
``recv`` returns one request head, each ``send`` is kept for checking. That is everything a
worker does per request between its ``recv`` and its ``send`` (parser, environ,
``start_response``, header checks and rendering, framing, bookkeeping), with neither the kernel
nor the other processes on the machine in the number. ``wrk`` and ``browser`` are keep-alive
requests on one connection; ``close`` asks to close, so each gets a connection of its own and
the connection's setup and end count too. ``--instructions`` runs this file under
``valgrind --tool=callgrind`` twice with different request counts and prints the difference per
request, which does not move when the machine is busy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import timeit

if __package__ in (None, ""):  # run as a script: import the apps the server benchmarks use
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.apps import echo, hello  # noqa: E402
from pasteserve.connection import Connection, ServerContext  # noqa: E402
from pasteserve.http.parser import Limits  # noqa: E402

# What wrk sends, and what a browser sends for a page.
HEADS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    "browser": (
        b"GET /articles/2026/engine?page=2&sort=new HTTP/1.1\r\n"
        b"Host: www.example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        b"Accept-Language: en-US,en;q=0.5\r\n"
        b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
        b"Referer: https://www.example.com/articles/2026/\r\n"
        b"Connection: keep-alive\r\n"
        b"Cookie: session=3f2a9c1e7b; theme=dark; consent=1\r\n"
        b"Upgrade-Insecure-Requests: 1\r\n"
        b"Sec-Fetch-Dest: document\r\n"
        b"Sec-Fetch-Mode: navigate\r\n"
        b"Sec-Fetch-Site: same-origin\r\n"
        b"Priority: u=0, i\r\n"
        b"\r\n"
    ),
    "close": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n",
    # run.py's post scenario: 1 KiB read through wsgi.input by the echo app.
    "post": (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024
    ),
}
# The app each request goes to (hello unless named here) and the body it answers.
APPS = {"post": (echo, b"1024")}
# Requests that close their connection: each is served on a connection of its own.
CLOSE = frozenset(["close"])


class MemorySocket:
    """Just enough of a connected TCP socket for a Connection: one head per ``recv``."""

    family = socket.AF_INET

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.sent: list[bytes] = []
        self.timeout: float | None = 0.0   # the sync worker's sockets are non-blocking

    def recv(self, size: int) -> bytes:
        return self.head

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def setsockopt(self, *args: object) -> None:
        pass

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def gettimeout(self) -> float | None:
        return self.timeout

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 8000)

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


# One per worker and app, with the default settings.
CONTEXTS = {app: ServerContext(app=app, limits=Limits()) for app in (hello, echo)}


def connection(name: str) -> tuple[Connection, MemorySocket]:
    """A connection as the sync worker makes one, for the request ``name``."""
    sock = MemorySocket(HEADS[name])
    ctx = CONTEXTS[APPS.get(name, (hello,))[0]]
    return Connection(sock, ("127.0.0.1", 40000), ctx), sock  # type: ignore[arg-type]


def check(name: str) -> None:
    """Refuse to measure anything but a correct answer (keep-alive, except for ``close``)."""
    conn, sock = connection(name)
    assert conn.process() is (name not in CLOSE), "the connection state is wrong"
    (answer,) = sock.sent
    body = APPS.get(name, (hello, b"Hello, World!"))[1]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n" + body), answer
    assert (b"Connection: close\r\n" in answer) is (name in CLOSE), answer


def serve(name: str, requests: int) -> None:
    if name in CLOSE:  # a connection per request: its setup and its end are in the number
        for _ in range(requests):
            connection(name)[0].process()
        return
    conn, sock = connection(name)
    process = conn.process
    sent = sock.sent
    for _ in range(requests):
        process()
        sent.clear()


def microseconds(name: str, requests: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``requests`` requests: the least disturbed by other processes."""
    best = min(timeit.repeat(lambda: serve(name, requests), number=1, repeat=repeat))
    return best / requests * 1e6


def instructions(name: str, requests: int) -> float:
    """Instructions per request under callgrind: (count at 2n - count at n) / n."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (requests, 2 * requests):
            out = os.path.join(tmp, f"callgrind.{n}")
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, os.path.abspath(__file__), "--head", name, "--requests", str(n), "--once"],
                capture_output=True, text=True, check=False)
            match = re.search(r"Collected : (\d+)", proc.stderr)
            if proc.returncode or match is None:
                raise SystemExit(f"valgrind failed:\n{proc.stderr[-2000:]}")
            counts.append(int(match.group(1)))
    return (counts[1] - counts[0]) / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", choices=sorted(HEADS), action="append",
                        help="request head(s) to serve (default: all)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best counts (default 7)")
    parser.add_argument("--instructions", action="store_true",
                        help="count CPU instructions per request with valgrind instead of timing")
    parser.add_argument("--once", action=argparse.BooleanOptionalAction, default=False,
                        help=argparse.SUPPRESS)  # one untimed run: what --instructions counts
    args = parser.parse_args(argv)
    for name in args.head or sorted(HEADS):
        check(name)
        if args.once:
            serve(name, args.requests)
        elif args.instructions:
            per = instructions(name, min(args.requests, 1000))
            print(f"{name:8} {per:10,.0f} instructions per request")
        else:
            per = microseconds(name, args.requests, args.repeat)
            print(f"{name:8} {per:8.2f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
