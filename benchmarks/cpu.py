"""CPU time per request of one worker: what throughput hides on a machine others share.

    .venv/bin/python benchmarks/cpu.py                       # pasteserve-sync, hello, 6 s
    .venv/bin/python benchmarks/cpu.py --servers pasteserve-sync bare-loop --duration 10
    .venv/bin/python benchmarks/cpu.py --close                # a connection per request

Each server runs one worker; wrk drives it (after a warm-up) while the worker's user and system
CPU time is read from ``/proc/PID/stat`` before and after. Divided by the requests wrk counted,
that is the cost of a request to the worker, which other load on the machine changes far less
than it changes requests per second: a worker that waits for the CPU spends no CPU time waiting.
"""

from __future__ import annotations

import argparse
import os
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", default=["pasteserve-sync"], choices=sorted(servers.SERVERS))
    parser.add_argument("--app", default="benchmarks.apps:hello")
    parser.add_argument("--duration", type=int, default=6, help="measured seconds (default 6)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before, 0 for none")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--close", action="store_true", help="wrk sends Connection: close (a connection per request)")
    args = parser.parse_args(argv)
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
