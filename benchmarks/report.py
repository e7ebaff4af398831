"""The results as a Markdown table."""

from dataclasses import dataclass

from benchmarks.wrk import WrkResult


@dataclass(frozen=True)
class Row:
    scenario: str
    server: str
    shape: str  # how the server ran, e.g. "2 proc" or "1 proc × 4 thr"
    result: WrkResult | None  # None: the run failed, see ``failure``
    failure: str = ""


def table(rows: list[Row], baselines: dict[str, str]) -> str:
    """One line per run; ``baselines`` maps each scenario to its reference server."""
    reference = {
        (row.scenario, row.server): row.result.requests_per_sec
        for row in rows
        if row.result is not None
    }
    lines = [
        "| scenario | server | req/s | p50 | p99 | errors | ratio vs baseline |",
        "|---|---|--:|--:|--:|---|--:|",
    ]
    for row in rows:
        server = f"{row.server} ({row.shape})"
        if row.result is None:
            lines.append(f"| {row.scenario} | {server} | – | – | – | {row.failure} | – |")
            continue
        result = row.result
        baseline = baselines.get(row.scenario, "")
        ratio = format_ratio(
            result.requests_per_sec,
            reference.get((row.scenario, baseline)),
            is_baseline=row.server == baseline,
        )
        lines.append(
            f"| {row.scenario} | {server} | {result.requests_per_sec:,.0f} "
            f"| {format_ms(result.p50_ms)} | {format_ms(result.p99_ms)} "
            f"| {format_errors(result)} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


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
