"""`pasteserve status PIDFILE`: the master and its workers, read from the shared status map.

The master keeps its heartbeat map in a file named after its pid (see heartbeat.status_map_path);
this command reads it without sending anything to any process, so it answers while every worker
is busy or stuck.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .heartbeat import read_status, status_map_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasteserve status",
        description="Show the master and workers of a running server: pid, age, generation, requests, "
                    "connections, what each does now, last heartbeat.")
    parser.add_argument("pidfile", metavar="PIDFILE", help="the server's pidfile (the `pidfile` setting)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with open(args.pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as exc:
        print(f"pasteserve status: cannot read a pid from {args.pidfile}: {exc}", file=sys.stderr)
        return 1
    path = status_map_path(pid)
    try:
        status = read_status(path)
    except FileNotFoundError:
        print(f"pasteserve status: no status map at {path}: is pid {pid} a running pasteserve master?",
              file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"pasteserve status: {exc}", file=sys.stderr)
        return 1
    if status["master"]["pid"] != pid or not _running(pid):
        print(f"pasteserve status: the master (pid {pid}) is not running; {path} is left over",
              file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass   # it runs, as another user
    return True


def render(status: dict[str, Any]) -> str:
    """The table: one line for the master, one per worker, oldest worker first."""
    master = status["master"]
    rows = [("PID", "ROLE", "AGE", "GEN", "REQUESTS", "CONNS", "HEARTBEAT", "NOW")]
    summary = f"{master['name']}: {len(status['workers'])} workers ({master['workers_wanted']} wanted)"
    dropped = master["metrics_dropped"] + sum(w["metrics_dropped"] for w in status["workers"])
    if dropped:
        summary += f", {dropped} metrics not sent"
    rows.append((str(master["pid"]), "master", _duration(master["age"]), str(master["generation"]), "-", "-",
                 _ago(master["heartbeat_age"]), summary))
    for w in sorted(status["workers"], key=lambda w: -w["age"]):
        rows.append((str(w["pid"]), "worker", _duration(w["age"]), str(w["generation"]), str(w["requests"]),
                     str(w["connections"]), _ago(w["heartbeat_age"]), _doing(w)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]
                     for row in rows)


def _doing(worker: dict[str, Any]) -> str:
    request = worker["request"]
    now = "idle" if request is None else \
        f"serving {request['method']} {request['path']} for {request['seconds']:.1f} s"
    stopping = worker["stopping"]
    return now if stopping is None else f"{now} (stopping for {stopping:.1f} s)"


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
