"""Benchmark pasteserve side by side with Gunicorn and waitress, using wrk.

    .venv/bin/python benchmarks/run.py [--duration 8] [--rounds 3] [--connections 50]
                                       [--threads 2] [--scenarios hello post ...]
                                       [--servers waitress ...]

Prints a Markdown table and writes it to benchmarks/results/latest.md.
See benchmarks/README.md for what each scenario measures.
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    # Run as a script: make the `benchmarks` package importable.
    sys.path.insert(0, str(REPO))

from benchmarks import burst, report, servers, syscalls, wrk  # noqa: E402
from benchmarks.scenarios import KNOWN_SERVERS, SCENARIOS, Scenario  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "latest.md"
# Rough cost of one run beyond wrk's own time: start, readiness, stop.
OVERHEAD_SECONDS = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark pasteserve against Gunicorn and waitress with wrk."
    )
    parser.add_argument("--duration", type=_at_least(1), default=8,
                        help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=_at_least(0), default=1,
                        help="warm-up seconds before each measured run, 0 for none "
                             "(default: %(default)s)")
    parser.add_argument("--connections", type=_at_least(1), default=50,
                        help="wrk connections; the sleep scenario always uses 200 "
                             "(default: %(default)s)")
    parser.add_argument("--threads", type=_at_least(1), default=2,
                        help="wrk threads (default: %(default)s)")
    parser.add_argument("--workers", type=_at_least(1), default=2,
                        help="worker processes per server; waitress has none "
                             "(default: %(default)s)")
    parser.add_argument("--rounds", type=_at_least(1), default=3,
                        help="times each server runs each scenario, the servers taking turns; "
                             "every figure is the median of its rounds (default: %(default)s)")
    parser.add_argument("--timeout", type=_at_least(1), default=2,
                        help="wrk request timeout: slower responses count as timeout errors "
                             "and drop out of the latency figures (default: %(default)s)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS),
                        metavar="SCENARIO", help=f"any of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--servers", nargs="+", choices=KNOWN_SERVERS, default=list(KNOWN_SERVERS),
                        metavar="SERVER", help=f"any of: {', '.join(KNOWN_SERVERS)} (default: all)")
    parser.add_argument("--syscalls", action="store_true",
                        help="also count system calls per request of one worker with perf stat, "
                             "or strace where perf cannot (hello, keep-alive)")
    parser.add_argument("--pin", action="store_true",
                        help="run the servers on CPU 0 and wrk on CPU 1 (taskset)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write the Markdown results (default: %(default)s)")
    return parser.parse_args(argv)


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum`` (wrk takes whole seconds only)."""

    def convert(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}")
        return value

    return convert


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: run benchmarks/setup.sh", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    servers.compile_bytecode()
    server_prefix, wrk_prefix = _pinning(args.pin)

    skipped: dict[str, str] = {}
    for name in args.servers:
        try:
            servers.check_runnable(servers.SERVERS[name])
        except servers.NotRunnable as exc:
            _skip(skipped, name, str(exc))

    runs = args.rounds * sum(
        1 for s in scenarios for name in s.servers if name in args.servers and name not in skipped
    )
    estimate = runs * (args.duration + args.warmup + OVERHEAD_SECONDS)
    print(f"{runs} runs, about {estimate // 60} min {estimate % 60} s", flush=True)
    rows, bursts = _rounds(scenarios, skipped, args, server_prefix, wrk_prefix)
    counts = _syscalls(args, skipped) if args.syscalls else {}

    document = _document(rows, bursts, counts, scenarios, skipped, args)
    print()
    print(document)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(document)
    print(f"written to {args.output}")
    measured = any(row.result is not None for row in rows) or any(row.results for row in bursts)
    return 0 if measured else 1


def _rounds(
    scenarios: list[Scenario],
    skipped: dict[str, str],
    args: argparse.Namespace,
    server_prefix: tuple[str, ...],
    wrk_prefix: tuple[str, ...],
) -> tuple[list[report.Row], list[report.BurstRow]]:
    """Every scenario on every server, ``args.rounds`` times; each row the median of its rounds.

    The servers take turns within each round, so that a slow spell of the machine (other
    processes, frequency scaling) falls on all of them rather than on one server's runs.
    """
    found = _Rounds()
    with tempfile.TemporaryDirectory(prefix="pasteserve-bench-") as scratch:
        scripts = {s.name: _script_for(s, Path(scratch)) for s in scenarios}
        for turn in range(args.rounds):
            for scenario in scenarios:
                names = [n for n in scenario.servers if n in args.servers and n not in skipped]
                # A different order each round: no server always follows the same one.
                shift = turn % len(names) if names else 0
                for name in names[shift:] + names[:shift]:
                    if name in skipped:
                        continue
                    key = (scenario.name, name)
                    server = servers.SERVERS[name]
                    counter = f" (round {turn + 1}/{args.rounds})" if args.rounds > 1 else ""
                    print(f"{scenario.name} / {name}{counter} ...", end=" ", flush=True)
                    if scenario.kind == "burst":
                        try:
                            arrivals = _burst(scenario, server, args, server_prefix)
                        except (servers.NotRunnable, servers.ProbeFailed) as exc:
                            found.failed(key, exc)
                            continue
                        print(f"slowest first answer {report.format_ms(arrivals.slowest_ms)}")
                        found.bursts[name].append(arrivals)
                        continue
                    try:
                        result, rss = _measure(scenario, server, scripts[scenario.name], args,
                                               server_prefix, wrk_prefix)
                    except servers.NotRunnable as exc:
                        print("not runnable")
                        _skip(skipped, name, str(exc))
                        continue
                    except (servers.ProbeFailed, wrk.WrkError) as exc:
                        found.failed(key, exc)
                        continue
                    print(f"{result.requests_per_sec:,.0f} req/s")
                    found.measured[key].append(result)
                    if rss is not None:
                        found.memory[key].append(rss)
    return _rows(scenarios, skipped, args, found)


@dataclass
class _Rounds:
    """What every round found, by (scenario, server); bursts by server."""

    measured: defaultdict[tuple[str, str], list[wrk.WrkResult]] = field(
        default_factory=lambda: defaultdict(list))
    memory: defaultdict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list))
    bursts: defaultdict[str, list[burst.BurstResult]] = field(
        default_factory=lambda: defaultdict(list))
    failures: defaultdict[tuple[str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list))

    def failed(self, key: tuple[str, str], exc: Exception) -> None:
        """A run of ``key`` that failed: say so, and keep the reason for its row."""
        print(f"failed: {exc}")
        self.failures[key].append(_one_line(str(exc)))


def _rows(scenarios: list[Scenario], skipped: dict[str, str], args: argparse.Namespace,
          found: _Rounds) -> tuple[list[report.Row], list[report.BurstRow]]:
    """The table's rows, in the scenarios' order of servers, each the median of its rounds."""
    rows: list[report.Row] = []
    bursts: list[report.BurstRow] = []
    for scenario in scenarios:
        for name in scenario.servers:
            key = (scenario.name, name)
            if name not in args.servers or (name in skipped and key not in found.measured):
                continue
            shape = servers.SERVERS[name].shape(args.workers)
            failure = _failure(found.failures[key], args.rounds)
            if scenario.kind == "burst":
                bursts.append(report.BurstRow(name, shape, tuple(found.bursts[name]), failure))
                continue
            results = found.measured[key]
            rows.append(report.Row(
                scenario.name, name, shape, wrk.median(results) if results else None, failure,
                rss_mib=max(found.memory[key], default=None),
                rates=tuple(r.requests_per_sec for r in results) if args.rounds > 1 else (),
            ))
    return rows, bursts


def _failure(reasons: list[str], rounds: int) -> str:
    """How many rounds failed and the first reason; empty when none did."""
    if not reasons:
        return ""
    if rounds == 1:
        return f"failed: {reasons[0]}"
    return f"failed in {len(reasons)} of {rounds} rounds: {reasons[0]}"


def _burst(scenario: Scenario, server: servers.Server, args: argparse.Namespace,
           server_prefix: tuple[str, ...]) -> burst.BurstResult:
    with servers.running(server, scenario.app_spec, args.workers, server_prefix) as live:
        return burst.measure(live.port, scenario.connections or args.connections)


def _syscalls(args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, float | str]:
    """Syscalls per keep-alive hello request, one worker per server (perf stat, else strace)."""
    why_not = syscalls.available()
    if why_not:
        print(f"syscalls: {why_not}", file=sys.stderr)
        return {}
    counts: dict[str, float | str] = {}
    load = wrk.Load(url="", duration=args.duration, connections=args.connections,
                    threads=args.threads, timeout=args.timeout)
    for name in SCENARIOS["hello"].servers:
        if name not in args.servers or name in skipped:
            continue
        print(f"syscalls / {name} ...", end=" ", flush=True)
        try:
            counts[name] = syscalls.per_request(servers.SERVERS[name], "benchmarks.apps:hello", load)
            print(f"{counts[name]:.2f} per request")
        except (servers.NotRunnable, servers.ProbeFailed, wrk.WrkError, syscalls.CountError) as exc:
            counts[name] = f"failed: {_one_line(str(exc))}"
            print(counts[name])
    return counts


def _skip(skipped: dict[str, str], name: str, reason: str) -> None:
    skipped[name] = _one_line(reason)
    print(f"{name}: not runnable ({skipped[name]})", flush=True)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def _pinning(pin: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Command prefixes for the server and for wrk: one CPU each when pinning."""
    if not pin:
        return (), ()
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        print("--pin needs taskset and 2 CPUs: running unpinned", file=sys.stderr)
        return (), ()
    return ("taskset", "-c", "0"), ("taskset", "-c", "1")


def _script_for(scenario: Scenario, scratch: Path) -> Path | None:
    if scenario.post_body_size is None:
        return None
    path = scratch / f"{scenario.name}.lua"
    path.write_text(wrk.post_script(scenario.post_body_size))
    return path


def _measure(
    scenario: Scenario,
    server: servers.Server,
    script: Path | None,
    args: argparse.Namespace,
    server_prefix: tuple[str, ...],
    wrk_prefix: tuple[str, ...],
) -> tuple[wrk.WrkResult, float | None]:
    """wrk's result and the largest worker's RSS (MiB) right after it."""
    with servers.running(server, scenario.app_spec, args.workers, server_prefix) as live:
        load = wrk.Load(
            url=live.url,
            duration=args.duration,
            connections=scenario.connections or args.connections,
            threads=args.threads,
            timeout=args.timeout,
            headers=scenario.headers,
            script=script,
        )
        if args.warmup:
            wrk.run(replace(load, duration=args.warmup), wrk_prefix)
            servers.settle(live)
        result = wrk.run(load, wrk_prefix)
        return result, servers.worker_rss_mib(live.pid)


def _document(
    rows: list[report.Row],
    bursts: list[report.BurstRow],
    counts: dict[str, float | str],
    scenarios: list[Scenario],
    skipped: dict[str, str],
    args: argparse.Namespace,
) -> str:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    connections = f"{args.connections} connections"
    if any(s.connections for s in scenarios):
        connections += " (sleep: 200)"
    baselines = {s.name: s.baseline for s in scenarios}
    measured = {row.server for row in rows}
    notes = [
        "Baseline for the ratio: gunicorn-sync; for `sleep`, gunicorn-gthread "
        "(a sync worker serves one 50 ms request at a time).",
    ]
    if "gunicorn-sync" in measured:
        notes.append(
            "gunicorn-sync closes the connection after every response, so wrk reconnects: "
            "that is the sync-worker baseline pasteserve is compared with."
        )
    if "waitress" in measured:
        notes.append(
            "waitress is a single process with 4 threads (and serves at most 100 connections "
            f"at once); every other server runs {args.workers} worker processes."
        )
    notes += [
        "errors: `status>=400` counts responses wrk reports as \"Non-2xx or 3xx\"; "
        "connect/read/write are wrk's socket errors; `timeout` counts responses slower than "
        f"{args.timeout} s, which p50/p99 leave out.",
        f"wrk and the servers share {os.cpu_count()} CPUs"
        + (" (servers pinned to CPU 0, wrk to CPU 1)" if args.pin else "")
        + ": compare within a run, not across machines.",
    ]
    if "bare-loop" in measured:
        notes.append(
            "bare-loop is benchmarks/bare.py, a selector loop with no checks at all (the ceiling "
            "for a pure-Python server); \"of ceiling\" is each server's fraction of its rate."
        )
    if args.rounds > 1:
        notes.append("rounds' range: the lowest and the highest req/s of the rounds.")
    notes.append("worker RSS: the largest worker's resident memory right after a run, the "
                 "largest of the rounds (waitress: its only process).")
    notes += [f"{name}: not runnable ({reason})" for name, reason in skipped.items()]
    extra = []
    if bursts:
        extra += ["", "## Burst: clients connecting at once", "",
                  f"{SCENARIOS['burst'].measures}; each client's time from connect to its whole "
                  "first response.", "", report.burst_table(bursts)]
    if counts:
        extra += ["", "## System calls per request", "",
                  f"`{syscalls.counter()}` on the only worker while wrk runs the hello scenario "
                  "(keep-alive): its system calls over the requests wrk counted.", "",
                  report.syscalls_table(counts)]
    return "\n".join([
        "# Benchmark results",
        "",
        f"{when}; {_environment()}.",
        f"wrk `-t {args.threads}`, {args.duration} s measured after a {args.warmup} s warm-up, "
        f"{connections}, `--timeout {args.timeout}s`; {args.workers} workers per server; "
        + _rounds_phrase(args.rounds) + ".",
        "",
        report.table(rows, baselines),
        *(f"- {note}" for note in notes),
        *extra,
        "",
    ])


def _rounds_phrase(rounds: int) -> str:
    if rounds == 1:
        return "1 round"
    return (f"{rounds} rounds, the servers taking turns: every figure is the median of its "
            "rounds, errors are counted over all of them, ratios are ratios of medians")


def _environment() -> str:
    parts = [f"{os.cpu_count()} CPUs", f"Python {platform.python_version()}", _wrk_version()]
    for package in ("gunicorn", "waitress", "eventlet"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    parts.append(f"pasteserve {_git_revision()}")
    return ", ".join(parts)


def _wrk_version() -> str:
    # `wrk -v` prints "wrk <version> [<engine>] Copyright ..." (and exits 1).
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    words = (done.stdout or done.stderr).split()
    return f"wrk {words[1]}" if len(words) > 1 else "wrk"


def _git_revision() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO
    )
    return done.stdout.strip() or "(unknown revision)"


if __name__ == "__main__":
    raise SystemExit(main())
