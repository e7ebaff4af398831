"""System calls per request of one worker while wrk drives it.

Counted with ``perf stat -e raw_syscalls:sys_enter -p WORKER`` where perf may count that event
here (it counts in the kernel, without stopping the worker), else with ``strace -c -f``, whose
stops at every call slow the traced process many times over and make its threads contend for
the GIL far more than they otherwise would: it overstates threaded servers. Only the count per
request means anything, never the rate. Every server runs one worker so that every request wrk
sends is counted.
"""

from __future__ import annotations

import functools
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import servers, wrk

EVENT = "raw_syscalls:sys_enter"
# strace -c's summary ends with "100.00    0.123456    1    123456    789 total" (errors optional).
_TOTAL = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$", re.M)


class CountError(Exception):
    """Neither perf nor strace may count here, or the counter printed no total."""


@functools.cache
def counter() -> str | None:
    """"perf" when it counts system calls here, else "strace" when installed, else None."""
    if shutil.which("perf") is not None:
        try:
            probe = subprocess.run(["perf", "stat", "-x,", "-e", EVENT, "--", "true"],
                                   capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            try:
                parse_perf(probe.stderr)
                return "perf"
            except CountError:
                pass
    return "strace" if shutil.which("strace") is not None else None


def available() -> str | None:
    """Why syscalls cannot be counted here, or None when they can."""
    if counter() is None:
        return f"neither perf (with the {EVENT} event) nor strace is available (scripts/system-deps installs strace)"
    return None


def parse_total(summary: str) -> int:
    """The total number of calls in strace -c's summary."""
    match = _TOTAL.search(summary)
    if match is None:
        raise CountError(f"no total in strace's summary: {summary[-300:]!r}")
    return int(match.group(1))


def parse_perf(output: str) -> int:
    """The count in perf stat -x, output (``123456,,raw_syscalls:sys_enter,...``)."""
    for line in output.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] == EVENT and fields[0].isdigit():
            return int(fields[0])
    raise CountError(f"no {EVENT} count in perf's output: {output[-300:]!r}")


def per_request(server: servers.Server, app: str, load: wrk.Load) -> float:
    """Syscalls per request of ``server``'s single worker under ``load`` (its url is ignored)."""
    with servers.running(server, app, workers=1) as live, \
            tempfile.TemporaryDirectory(prefix="pasteserve-syscalls-") as scratch:
        worker = _worker_pid(live.pid)
        out = Path(scratch) / "count.txt"
        if counter() == "perf":
            # -p counts every thread the worker has now: app threads start before it serves.
            argv = ["perf", "stat", "-x,", "-e", EVENT, "-o", str(out), "-p", str(worker)]
            parse = parse_perf
        else:
            argv = ["strace", "-c", "-f", "-o", str(out), "-p", str(worker)]
            parse = parse_total
        tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)   # attached to every thread before the load starts
        if tracer.poll() is not None:
            raise CountError(f"{argv[0]} could not attach: {tracer.stderr.read().decode().strip()}")
        result = wrk.run(replace(load, url=live.url))
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        if not result.requests:
            raise CountError(f"no request was answered under {argv[0]}")
        return parse(out.read_text()) / result.requests


def _worker_pid(master: int) -> int:
    """The only worker of a pre-fork server, or the server itself when it forks none.

    `servers.running` returns once a request was answered, so a worker exists by then.
    """
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return int(children[0]) if children else master
