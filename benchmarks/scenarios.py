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
POST_BODY_SIZE = 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str  # an attribute of benchmarks.apps
    measures: str
    servers: tuple[str, ...] = ALL_SERVERS
    # Ratios in the table are against this server's req/s in the same scenario.
    baseline: str = "gunicorn-sync"
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
        Scenario("hello", "hello", "per-request overhead, GET on keep-alive connections"),
        Scenario(
            "hello-close", "hello", "per-connection overhead: accept and close on every request",
            headers=("Connection: close",),
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
    )
}
