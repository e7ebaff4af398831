"""WSGI apps the benchmark scenarios serve, one per scenario.

Every server under test imports these as ``benchmarks.apps:NAME``, so the
apps are identical across servers and the numbers compare the servers only.
"""

import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

HELLO = b"Hello, World!"
BIG = b"x" * (1024 * 1024)
CHUNKS = (b"first piece\n", b"second piece\n", b"third piece\n")
SLEEP_SECONDS = 0.05
WORK_SECONDS = 0.002


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A 13-byte body with Content-Length: the per-request overhead."""
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
    )
    return [HELLO]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body and answer its length."""
    body = _read_body(environ)
    answer = str(len(body)).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))]
    )
    return [answer]


def _read_body(environ: Environ) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length:
        return stream.read(int(length))
    # Without a length (a chunked request), PEP 3333 only allows reading to
    # EOF when the server promises the stream ends with the body.
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def chunked(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """Three pieces from a generator, no Content-Length: the server must frame them."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield from CHUNKS


def big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A 1 MiB body: write throughput rather than request overhead."""
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))],
    )
    return [BIG]


def sleep(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Wait 50 ms, as if on a database: how many such waits a server overlaps.

    ``time.sleep`` is looked up at call time on purpose, so an eventlet worker
    that monkey-patched ``time`` makes this a green sleep.
    """
    time.sleep(SLEEP_SECONDS)
    return hello(environ, start_response)


def work2ms(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Take 2 ms, as a small real view does: the burst scenario's app."""
    time.sleep(WORK_SECONDS)
    return hello(environ, start_response)
