"""CPU time per request of one worker: what throughput hides on a machine others share.

    .venv/bin/python benchmarks/cpu.py                       # pasteserve-sync, hello, 6 s
    .venv/bin/python benchmarks/cpu.py --servers pasteserve-sync bare-loop --duration 10
    .venv/bin/python benchmarks/cpu.py --close                # a connection per request
    .venv/bin/python benchmarks/cpu.py --instructions --servers pasteserve-eventlet

Each server runs one worker; wrk drives it (after a warm-up) while the worker's user and system
CPU time is read from ``/proc/PID/stat`` before and after. Divided by the requests wrk counted,
that is the cost of a request to the worker, which other load on the machine changes far less
than it changes requests per second: a worker that waits for the CPU spends no CPU time waiting.

``--instructions`` counts instead the worker's user-space CPU instructions per keep-alive
request, which load does not change at all (runs differ by about 1 %): the server runs under
``valgrind --tool=callgrind``, a client of ours sends a fixed number of requests on
``--connections`` connections at once, and two runs (N and 3N requests) are subtracted, so
start-up and shutdown cancel out. System calls are not in it (``run.py --syscalls`` counts
them). About a minute per server; not for servers that close idle connections after a few
seconds (Gunicorn's ``keepalive``), which valgrind's slowness makes them do.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import servers, wrk  # noqa: E402
from benchmarks.syscalls import _worker_pid  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and ")"
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def per_request(server: servers.Server, app: str, load: wrk.Load, warmup: int) -> tuple[float, float, int]:
    """(user µs, system µs, requests) per request of ``server``'s single worker under ``load``."""
    with servers.running(server, app, workers=1) as live:
        worker = _worker_pid(live.pid)
        load = replace(load, url=live.url)
        if warmup:
            wrk.run(replace(load, duration=warmup))
        user0, sys0 = cpu_seconds(worker)
        result = wrk.run(load)
        user1, sys1 = cpu_seconds(worker)
    if not result.requests:
        raise wrk.WrkError("no request was answered")
    return (user1 - user0) / result.requests * 1e6, (sys1 - sys0) / result.requests * 1e6, result.requests


def drive(port: int, connections: int, requests: int) -> int:
    """Send ``requests`` GETs over ``connections`` keep-alive connections at once, each waiting
    for its answer (a Content-Length body) before the next; the number answered."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sel = selectors.DefaultSelector()
    share, extra = divmod(requests, connections)
    for i in range(connections):
        if share + (i < extra):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(head)
            sel.register(sock, selectors.EVENT_READ, [share + (i < extra), b""])
    answered = 0
    while sel.get_map():
        for key, _ in sel.select(30) or [(None, None)]:
            if key is None:
                raise TimeoutError(f"no answer in 30 s after {answered} requests")
            sock, state = key.fileobj, key.data
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"the server closed a connection after {answered} requests")
            state[1] += data
            while (end := state[1].find(b"\r\n\r\n")) >= 0:
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", state[1][:end])
                size = end + 4 + int(length.group(1))
                if len(state[1]) < size:
                    break
                state[1] = state[1][size:]
                state[0] -= 1
                answered += 1
                if state[0]:
                    sock.sendall(head)
            if not state[0]:
                sel.unregister(sock)
                sock.close()
    return answered


def instructions(server: servers.Server, app: str, connections: int, requests: int) -> float:
    """User-space instructions per request of ``server``'s single worker (see the module doc)."""
    counts = []
    for n in (requests, 3 * requests):
        with tempfile.TemporaryDirectory(prefix="pasteserve-callgrind-") as scratch:
            prefix = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/callgrind.%p")
            with servers.running(server, app, workers=1, prefix=prefix, startup_timeout=180) as live:
                worker = _worker_pid(live.pid)
                assert drive(live.port, connections, n) == n
                # Stop it here, waiting as long as the slowed-down worker needs to write its counts
                # (leaving the block would kill it after a few seconds).
                os.kill(live.pid, signal.SIGTERM)
                for _ in range(600):
                    if not Path(f"/proc/{worker}").exists():
                        break
                    time.sleep(0.1)
            summary = Path(scratch, f"callgrind.{worker}").read_text()
        counts.append(int(re.search(r"^(?:summary|totals): (\d+)", summary, re.M).group(1)))
    return (counts[1] - counts[0]) / (2 * requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", default=["pasteserve-sync"], choices=sorted(servers.SERVERS))
    parser.add_argument("--app", default="benchmarks.apps:hello")
    parser.add_argument("--duration", type=int, default=6, help="measured seconds (default 6)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before, 0 for none")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--close", action="store_true", help="wrk sends Connection: close (a connection per request)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the worker's CPU instructions per keep-alive request with valgrind instead")
    parser.add_argument("--requests", type=int, default=2000, help="with --instructions: N (default 2000)")
    args = parser.parse_args(argv)
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
        print("| server (1 worker) | instructions/request |")
        print("|---|--:|")
        for name in args.servers:
            try:
                count = instructions(servers.SERVERS[name], args.app, args.connections, args.requests)
            except OSError as exc:   # Gunicorn's keepalive (2 s) ends connections valgrind slowed down
                print(f"| {name} | not measured: {type(exc).__name__}: {exc} |")
            else:
                print(f"| {name} | {count:,.0f} |")
        return 0
    load = wrk.Load(url="", duration=args.duration, connections=args.connections, threads=1, timeout=2,
                    headers=("Connection: close",) if args.close else ())
    print("| server (1 worker) | requests | user µs/request | system µs/request |")
    print("|---|--:|--:|--:|")
    for name in args.servers:
        user, system, requests = per_request(servers.SERVERS[name], args.app, load, args.warmup)
        print(f"| {name} | {requests:,} | {user:.1f} | {system:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
