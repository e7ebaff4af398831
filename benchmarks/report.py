"""The results as a Markdown table."""

import statistics
from dataclasses import dataclass

from benchmarks.burst import BurstResult
from benchmarks.wrk import WrkResult

CEILING = "bare-loop"


@dataclass(frozen=True)
class Row:
    scenario: str
    server: str
    shape: str  # how the server ran, e.g. "2 proc" or "1 proc × 4 thr"
    result: WrkResult | None  # the median of its rounds; None: every round failed
    failure: str = ""  # why a round failed, when one did
    rss_mib: float | None = None  # the largest worker's resident memory after a run
    rates: tuple[float, ...] = ()  # req/s of each round, when there were several


@dataclass(frozen=True)
class BurstRow:
    server: str
    shape: str
    results: tuple[BurstResult, ...]  # one per round that ran; none: every round failed
    failure: str = ""


def table(rows: list[Row], baselines: dict[str, str]) -> str:
    """One line per run; ``baselines`` maps each scenario to its reference server.

    "of ceiling" is the fraction of the bare selector loop's rate in the same scenario.
    """
    reference = {
        (row.scenario, row.server): row.result.requests_per_sec
        for row in rows
        if row.result is not None
    }
    lines = [
        "| scenario | server | req/s | rounds' range | p50 | p99 | errors | worker RSS "
        "| ratio vs baseline | of ceiling |",
        "|---|---|--:|--:|--:|--:|---|--:|--:|--:|",
    ]
    for row in rows:
        server = f"{row.server} ({row.shape})"
        if row.result is None:
            lines.append(f"| {row.scenario} | {server} | – | – | – | – | {row.failure} "
                         "| – | – | – |")
            continue
        result = row.result
        baseline = baselines.get(row.scenario, "")
        ratio = format_ratio(
            result.requests_per_sec,
            reference.get((row.scenario, baseline)),
            is_baseline=row.server == baseline,
        )
        ceiling = reference.get((row.scenario, CEILING))
        of_ceiling = (f"{result.requests_per_sec / ceiling:.2f}"
                      if ceiling and row.server != CEILING else "–")
        errors = format_errors(result)
        if row.failure:
            errors = f"{errors}; {row.failure}"
        lines.append(
            f"| {row.scenario} | {server} | {result.requests_per_sec:,.0f} "
            f"| {format_range(row.rates)} | {format_ms(result.p50_ms)} "
            f"| {format_ms(result.p99_ms)} | {errors} | {format_mib(row.rss_mib)} "
            f"| {ratio} | {of_ceiling} |"
        )
    return "\n".join(lines) + "\n"


def burst_table(rows: list[BurstRow]) -> str:
    """Each figure is the median of the rounds' figures; errors are counted over every round."""
    lines = ["| server | clients | median first answer | slowest first answer | errors |",
             "|---|--:|--:|--:|--:|"]
    for row in rows:
        server = f"{row.server} ({row.shape})"
        if not row.results:
            lines.append(f"| {server} | – | – | – | {row.failure} |")
            continue
        medians = [r.median_ms for r in row.results if r.median_ms is not None]
        slowest = [r.slowest_ms for r in row.results if r.slowest_ms is not None]
        errors = str(sum(r.errors for r in row.results))
        if row.failure:
            errors = f"{errors}; {row.failure}"
        lines.append(f"| {server} | {row.results[0].clients} "
                     f"| {format_ms(statistics.median(medians) if medians else None)} "
                     f"| {format_ms(statistics.median(slowest) if slowest else None)} "
                     f"| {errors} |")
    return "\n".join(lines) + "\n"


def syscalls_table(counts: dict[str, float | str]) -> str:
    lines = ["| server (1 worker, hello keep-alive) | syscalls per request |", "|---|--:|"]
    for server, count in counts.items():
        shown = f"{count:.2f}" if isinstance(count, float) else count
        lines.append(f"| {server} | {shown} |")
    return "\n".join(lines) + "\n"


def format_mib(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} MiB"


def format_range(rates: tuple[float, ...]) -> str:
    """The lowest and highest rate of the rounds; nothing to show for one round."""
    if len(rates) < 2:
        return "–"
    return f"{min(rates):,.0f}–{max(rates):,.0f}"


def format_ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} µs"
    if value < 100:
        return f"{value:.2f} ms"
    return f"{value:,.0f} ms"


def format_errors(result: WrkResult) -> str:
    errors = result.errors
    if not errors:
        return "0"
    return ", ".join(f"{kind} {count:,}" for kind, count in errors.items())


def format_ratio(rate: float, baseline_rate: float | None, is_baseline: bool) -> str:
    if is_baseline:
        return "1.00 (baseline)"
    if not baseline_rate:
        return "–"
    return f"{rate / baseline_rate:.2f}"
