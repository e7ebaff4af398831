"""Websocket echo round trips per second, and memory per idle websocket, on one eventlet worker:
pasteserve beside Gunicorn 23.0.0 (the last Gunicorn with an eventlet worker).

    sh benchmarks/setup.sh      # once: .venv-gunicorn23 with gunicorn==23.0.0 and eventlet
    .venv/bin/python benchmarks/websocket.py [--duration 8] [--clients 100 1000] [--rounds 3]

Every client keeps one websocket open and sends a 32-byte message, waits for its echo, and
sends the next, for --duration seconds. The client is one asyncio process on the same machine:
it shares the CPUs with the server. Memory: the worker's resident set size (VmRSS) before and
after --idle websockets are opened, divided by their number. The servers take turns for --rounds
rounds (a fresh server each time) and each figure is the median of its rounds, so that load from
elsewhere on the machine does not land on one server only. Prints a Markdown table and writes it
to benchmarks/results/websocket.md.
"""

import argparse
import asyncio
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from tests.frameworks.wsclient import AsyncWebSocket  # noqa: E402

APP = "benchmarks.ws_apps:echo"
MESSAGE = b"m" * 32
SERVERS = {
    "pasteserve eventlet": lambda port: [str(REPO / ".venv/bin/pasteserve"), "-k", "eventlet", "-w", "1",
                                         "--worker-connections", "2000", "-b", f"127.0.0.1:{port}", APP],
    "gunicorn 23.0.0 eventlet": lambda port: [str(REPO / ".venv-gunicorn23/bin/gunicorn"), "-k", "eventlet",
                                              "-w", "1", "--worker-connections", "2000",
                                              "-b", f"127.0.0.1:{port}", APP],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_of(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("no worker started")


def rss_kib(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1))


async def ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = await AsyncWebSocket.connect(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        await ws.send(b"ready")
        await ws.recv()
        await ws.close()
        return


async def echo_load(port: int, clients: int, duration: float) -> tuple[int, int]:
    """Round trips done and failures, with `clients` websockets for `duration` seconds."""
    sockets = await asyncio.gather(*(AsyncWebSocket.connect(port) for _ in range(clients)))
    stop = time.monotonic() + duration
    done = failed = 0

    async def client(ws: AsyncWebSocket) -> None:
        nonlocal done, failed
        try:
            while time.monotonic() < stop:
                await ws.send(MESSAGE)
                if await ws.recv() != MESSAGE:
                    failed += 1
                done += 1
        except (OSError, asyncio.IncompleteReadError):
            failed += 1
        await ws.close()

    await asyncio.gather(*(client(ws) for ws in sockets))
    return done, failed


async def idle_memory(port: int, worker: int, count: int) -> float:
    before = rss_kib(worker)
    sockets = await asyncio.gather(*(AsyncWebSocket.connect(port) for _ in range(count)))
    for ws in sockets:   # one message each, so every connection has done a round trip
        await ws.send(MESSAGE)
    for ws in sockets:
        await ws.recv()
    await asyncio.sleep(0.5)
    after = rss_kib(worker)
    await asyncio.gather(*(ws.close() for ws in sockets))
    return (after - before) / count


def run(name: str, clients: list[int], duration: float, idle: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(SERVERS[name](port), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        worker = worker_of(proc.pid)
        asyncio.run(ready(port))
        result = {"memory": asyncio.run(idle_memory(port, worker, idle))}
        for n in clients:
            asyncio.run(echo_load(port, n, 1.0))   # warm-up
            done, failed = asyncio.run(echo_load(port, n, duration))
            result[n] = (done / duration, failed)
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--idle", type=int, default=1000, help="websockets opened to measure memory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/websocket.md")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(args.clients + [args.idle]))), hard))
    rows = ["| server | " + " | ".join(f"{n} clients: round trips/s" for n in args.clients)
            + " | failed | memory per idle websocket |",
            "|---|" + "--:|" * len(args.clients) + "--:|--:|"]
    results: dict[str, list[dict]] = {name: [] for name in SERVERS}
    for i in range(args.rounds):
        for name in SERVERS:
            print(f"round {i + 1}/{args.rounds}: {name} ...", file=sys.stderr)
            results[name].append(run(name, args.clients, args.duration, args.idle))
    for name, rounds in results.items():
        failed = sum(r[n][1] for r in rounds for n in args.clients)
        rows.append(f"| {name} | " + " | ".join(f"{statistics.median(r[n][0] for r in rounds):,.0f}"
                                                for n in args.clients)
                    + f" | {failed} | {statistics.median(r['memory'] for r in rounds):.1f} KiB |")
    table = "\n".join(rows)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
