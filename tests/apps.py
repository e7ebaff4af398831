"""Small WSGI applications for the test suites.

Every app is a plain PEP 3333 callable. :func:`router` serves them all under one app,
dispatching on the first path segment (``/hello``, ``/echo``, ``/environ``, ``/slow?seconds=0.5``,
...), so a server under test can be started with ``tests.apps:router``. Parameters come
from the query string.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

App = Callable[[dict, Callable], Iterable[bytes]]


def _query(environ: dict[str, Any], name: str, default: str) -> str:
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def _text(start_response: Callable, body: bytes, status: str = "200 OK",
          content_type: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: dict, start_response: Callable) -> list[bytes]:
    """The benchmark app: a fixed body with a Content-Length."""
    return _text(start_response, b"Hello, World!")


def echo_body(environ: dict, start_response: Callable) -> list[bytes]:
    """Reads the whole request body with read() and returns it."""
    return _text(start_response, environ["wsgi.input"].read(), content_type="application/octet-stream")


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), tuple, list))


def echo_environ(environ: dict, start_response: Callable) -> list[bytes]:
    """The environ as JSON (values that are not plain data are left out)."""
    data = {key: value for key, value in environ.items() if _jsonable(value)}
    return _text(start_response, json.dumps(data, sort_keys=True).encode(), content_type="application/json")


def slow(environ: dict, start_response: Callable) -> list[bytes]:
    """Sleeps ``seconds`` (default 1) before answering."""
    seconds = float(_query(environ, "seconds", "1"))
    time.sleep(seconds)
    return _text(start_response, b"slept %g\n" % seconds)


def crash(environ: dict, start_response: Callable) -> list[bytes]:
    """Raises before start_response: the server must answer 500."""
    raise RuntimeError("crash requested by the test")


def crash_in_body(environ: dict, start_response: Callable) -> Iterator[bytes]:
    """Sends a first block, then raises: the server can only close the connection."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial "
    raise RuntimeError("crash in the body requested by the test")


def stream(environ: dict, start_response: Callable) -> Iterator[bytes]:
    """``chunks`` blocks (default 3) from a generator, no Content-Length."""
    count = int(_query(environ, "chunks", "3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(count):
        yield b"chunk %d\n" % i


def write_callable(environ: dict, start_response: Callable) -> list[bytes]:
    """Uses the legacy write() callable before returning the rest of the body."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"")
    return [b"returned"]


def file_wrapper(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Sends this very file through wsgi.file_wrapper (sendfile when possible)."""
    f = open(__file__, "rb")
    start_response("200 OK", [("Content-Type", "text/x-python")])
    return environ["wsgi.file_wrapper"](f, 4096)


def large(environ: dict, start_response: Callable) -> list[bytes]:
    """A body of ``size`` bytes (default 1 MiB) in one block with a Content-Length."""
    size = int(_query(environ, "size", str(1 << 20)))
    return _text(start_response, b"x" * size)


def partial_read(environ: dict, start_response: Callable) -> list[bytes]:
    """Reads only ``n`` bytes (default 1) of the body, then answers with them."""
    n = int(_query(environ, "n", "1"))
    return _text(start_response, environ["wsgi.input"].read(n))


def read_lines(environ: dict, start_response: Callable) -> list[bytes]:
    """The body as JSON: a list of readline(``size``) results (size -1 = whole lines)."""
    size = int(_query(environ, "size", "-1"))
    stream_ = environ["wsgi.input"]
    lines = []
    while True:
        line = stream_.readline(size)
        if not line:
            break
        lines.append(line.decode("latin-1"))
    return _text(start_response, json.dumps(lines).encode(), content_type="application/json")


def status(environ: dict, start_response: Callable) -> list[bytes]:
    """Answers ``code`` (default 204) with a body the server must drop when the code forbids one."""
    code = _query(environ, "code", "204")
    start_response(f"{code} Test", [])
    return [b"must not be sent for 1xx/204/304 or HEAD"]


def wrong_length(environ: dict, start_response: Callable) -> list[bytes]:
    """Declares Content-Length ``declared`` (default 5) and yields ``actual`` (default 10) bytes."""
    declared = int(_query(environ, "declared", "5"))
    actual = int(_query(environ, "actual", "10"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    return iter([b"y" * actual])


def hop_by_hop(environ: dict, start_response: Callable) -> list[bytes]:
    """Sets a hop-by-hop header, which PEP 3333 forbids: the server answers 500."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Keep-Alive", "timeout=5")])
    return [b"never sent"]


def connection_close(environ: dict, start_response: Callable) -> list[bytes]:
    """``Connection: close`` is the one hop-by-hop header an app may send (eventlet.websocket does)."""
    start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"refused\n"]


def not_found(environ: dict, start_response: Callable) -> list[bytes]:
    return _text(start_response, b"no such test app\n", status="404 Not Found")


def unique_header(environ: dict, start_response: Callable) -> list[bytes]:
    """A response header whose ``size``-character value (default 4000) differs on every call."""
    size = int(_query(environ, "size", "4000"))
    value = f"{time.monotonic_ns():x}".rjust(size, "v")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2"), ("X-Unique", value)])
    return [b"ok"]


def modules(environ: dict, start_response: Callable) -> list[bytes]:
    """The names of the modules loaded in the process that serves the request, as JSON."""
    body = json.dumps(sorted(sys.modules)).encode()
    return _text(start_response, body, content_type="application/json")


def pid(environ: dict, start_response: Callable) -> list[bytes]:
    """The id of the process that serves the request, with the environ's REMOTE_ADDR: ``PID ADDR``."""
    return _text(start_response, f"{os.getpid()} {environ.get('REMOTE_ADDR')}".encode())


APPS: dict[str, App] = {
    "hello": hello,
    "echo": echo_body,
    "environ": echo_environ,
    "slow": slow,
    "crash": crash,
    "crash-in-body": crash_in_body,
    "stream": stream,
    "write": write_callable,
    "file": file_wrapper,
    "large": large,
    "partial-read": partial_read,
    "readlines": read_lines,
    "status": status,
    "wrong-length": wrong_length,
    "hop-by-hop": hop_by_hop,
    "connection-close": connection_close,
    "modules": modules,
    "unique-header": unique_header,
    "pid": pid,
}


def router(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """All the apps above, by first path segment; ``/`` is :func:`hello`."""
    name = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0] or "hello"
    return APPS.get(name, not_found)(environ, start_response)


def app_factory(global_conf: dict, **local_conf: str) -> App:
    """PasteDeploy ``paste.app_factory``: ``use = call:tests.apps:app_factory``."""
    return router
