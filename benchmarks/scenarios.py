"""The benchmark scenarios: which app, which request, which servers."""

from dataclasses import dataclass

ALL_SERVERS = (
    "pasteserve-sync",
    "pasteserve-eventlet",
    "pasteserve-threads",
    "gunicorn-sync",
    "gunicorn-gthread",
    "waitress",
)
# Rows that only make sense for some scenarios: Gunicorn 23's eventlet worker beside ours, and
# the bare selector loop (no request bodies, no framing of its own) as the ceiling.
KEEPALIVE_SERVERS = (*ALL_SERVERS, "gunicorn23-eventlet", "bare-loop")
KNOWN_SERVERS = KEEPALIVE_SERVERS
POST_BODY_SIZE = 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str  # an attribute of benchmarks.apps
    measures: str
    servers: tuple[str, ...] = ALL_SERVERS
    # Ratios in the table are against this server's req/s in the same scenario.
    baseline: str = "gunicorn-sync"
    # "wrk": a rate under steady load; "burst": clients connecting at once (benchmarks/burst.py).
    kind: str = "wrk"
    headers: tuple[str, ...] = ()
    post_body_size: int | None = None
    # None: the --connections given on the command line.
    connections: int | None = None

    @property
    def app_spec(self) -> str:
        return f"benchmarks.apps:{self.app}"


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "hello", "hello", "per-request overhead, GET on keep-alive connections",
            servers=KEEPALIVE_SERVERS,
        ),
        Scenario(
            "hello-close", "hello", "per-connection overhead: accept and close on every request",
            servers=KEEPALIVE_SERVERS, headers=("Connection: close",),
        ),
        Scenario(
            "post", "echo", "reading a 1 KiB request body",
            post_body_size=POST_BODY_SIZE,
        ),
        Scenario("chunked", "chunked", "chunked framing of a 3-piece generator response"),
        Scenario("big", "big", "write throughput of a 1 MiB response"),
        # A sync worker holds one request per process: 2 workers at 50 ms cap
        # gunicorn-sync at 40 req/s, so the comparison is among concurrent servers.
        Scenario(
            "sleep", "sleep", "concurrency: 200 clients on a handler that waits 50 ms",
            servers=("pasteserve-eventlet", "pasteserve-threads", "gunicorn-gthread", "waitress"),
            baseline="gunicorn-gthread",
            connections=200,
        ),
        # Connections that arrive together must not wait in line behind each other.
        Scenario(
            "burst", "work2ms", "50 keep-alive clients connecting at once to a 2 ms app: "
            "slowest first answer", kind="burst", connections=50,
            servers=("pasteserve-sync", "pasteserve-eventlet", "gunicorn-sync", "waitress"),
        ),
    )
}
