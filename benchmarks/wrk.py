"""Drive the ``wrk`` load generator and read its report."""

import re
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# wrk prints durations with these suffixes (its format_time); values in ms.
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}

_TIME = r"([0-9.]+)(us|ms|s|m|h)"
_PERCENTILE = {
    50: re.compile(rf"^\s*50(?:\.0+)?%\s+{_TIME}\s*$", re.M),
    99: re.compile(rf"^\s*99(?:\.0+)?%\s+{_TIME}\s*$", re.M),
}
_REQUESTS_PER_SEC = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
# wrk counts every status >= 400 here, whatever the line says.
_BAD_STATUS = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(Exception):
    """wrk failed to run or printed a report this parser does not understand."""


@dataclass(frozen=True)
class Load:
    """What to ask of wrk: the same for every server in one scenario."""

    url: str
    duration: int
    connections: int
    threads: int
    timeout: int
    headers: tuple[str, ...] = ()
    script: Path | None = None


@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_sec: float
    p50_ms: float | None
    p99_ms: float | None
    bad_status: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def errors(self) -> dict[str, int]:
        """Only the nonzero error counts, by kind."""
        counts = {
            "status>=400": self.bad_status,
            "connect": self.connect_errors,
            "read": self.read_errors,
            "write": self.write_errors,
            "timeout": self.timeouts,
        }
        return {kind: n for kind, n in counts.items() if n}


def median(results: Sequence[WrkResult]) -> WrkResult:
    """Several rounds of one run as one result: the median rate, p50 and p99; every request and
    every error of every round counted."""
    if not results:
        raise ValueError("no results to take the median of")

    def middle(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    return WrkResult(
        requests=sum(r.requests for r in results),
        requests_per_sec=statistics.median(r.requests_per_sec for r in results),
        p50_ms=middle([r.p50_ms for r in results]),
        p99_ms=middle([r.p99_ms for r in results]),
        bad_status=sum(r.bad_status for r in results),
        connect_errors=sum(r.connect_errors for r in results),
        read_errors=sum(r.read_errors for r in results),
        write_errors=sum(r.write_errors for r in results),
        timeouts=sum(r.timeouts for r in results),
    )


def post_script(body_size: int) -> str:
    """A wrk Lua script that POSTs ``body_size`` bytes on every request."""
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def command(load: Load, prefix: tuple[str, ...] = ()) -> list[str]:
    """The wrk command line for ``load``; ``prefix`` wraps it (e.g. taskset)."""
    threads = min(load.threads, load.connections)  # wrk refuses threads > connections
    argv = [
        *prefix,
        "wrk",
        "--latency",
        "-t", str(threads),
        "-c", str(load.connections),
        "-d", _seconds(load.duration),
        "--timeout", _seconds(load.timeout),
    ]
    for header in load.headers:
        argv += ["-H", header]
    if load.script is not None:
        argv += ["-s", str(load.script)]
    argv.append(load.url)
    return argv


def _seconds(value: int) -> str:
    # wrk reads durations as whole numbers of s, m or h: nothing finer.
    if value < 1:
        raise ValueError(f"wrk durations are whole seconds >= 1, not {value!r}")
    return f"{value}s"


def run(load: Load, prefix: tuple[str, ...] = ()) -> WrkResult:
    """Run wrk to completion and parse its report."""
    argv = command(load, prefix)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=load.duration + load.timeout + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(argv)}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise WrkError(f"wrk exited with {done.returncode}: {detail[-1] if detail else ''}")
    return parse(done.stdout)


def parse(report: str) -> WrkResult:
    """Read a ``wrk --latency`` report. Error lines wrk omits count as zero."""
    rate = _REQUESTS_PER_SEC.search(report)
    total = _TOTAL.search(report)
    if rate is None or total is None:
        raise WrkError(f"unrecognised wrk output:\n{report}")
    sockets = _SOCKET_ERRORS.search(report)
    connect, read, write, timeout = (int(n) for n in sockets.groups()) if sockets else (0,) * 4
    bad_status = _BAD_STATUS.search(report)
    requests = int(total.group(1))
    # With no response at all wrk still prints a distribution, of zeros.
    answered = requests > 0
    return WrkResult(
        requests=requests,
        requests_per_sec=float(rate.group(1)),
        p50_ms=_percentile(report, 50) if answered else None,
        p99_ms=_percentile(report, 99) if answered else None,
        bad_status=int(bad_status.group(1)) if bad_status else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def _percentile(report: str, which: int) -> float | None:
    found = _PERCENTILE[which].search(report)
    if found is None:
        return None
    value, unit = found.groups()
    return float(value) * _TIME_UNITS_MS[unit]
