"""System calls per request: ``strace -c -f`` on one worker while wrk drives it.

strace slows the traced process many times over, so only the count per request means anything
here, never the rate. Every server runs one worker so that every request wrk sends is traced.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import servers, wrk

# strace -c's summary ends with "100.00    0.123456    1    123456    789 total" (errors optional).
_TOTAL = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$", re.M)


class StraceError(Exception):
    """strace is missing, may not attach here, or printed no summary."""


def available() -> str | None:
    """Why syscalls cannot be counted here, or None when they can."""
    if shutil.which("strace") is None:
        return "strace is not installed (scripts/system-deps installs it)"
    return None


def parse_total(summary: str) -> int:
    match = _TOTAL.search(summary)
    if match is None:
        raise StraceError(f"no total in strace's summary: {summary[-300:]!r}")
    return int(match.group(1))


def per_request(server: servers.Server, app: str, load: wrk.Load) -> float:
    """Syscalls per request of ``server``'s single worker under ``load`` (its url is ignored)."""
    with servers.running(server, app, workers=1) as live, \
            tempfile.TemporaryDirectory(prefix="pasteserve-strace-") as scratch:
        worker = _worker_pid(live.pid)
        out = Path(scratch) / "summary.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(worker)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)   # strace attaches to every thread before the load starts
        if tracer.poll() is not None:
            raise StraceError(f"strace could not attach: {tracer.stderr.read().decode().strip()}")
        result = wrk.run(replace(load, url=live.url))
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        if not result.requests:
            raise StraceError("no request was answered under strace")
        return parse_total(out.read_text()) / result.requests


def _worker_pid(master: int) -> int:
    """The only worker of a pre-fork server, or the server itself when it forks none.

    `servers.running` returns once a request was answered, so a worker exists by then.
    """
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children else master
