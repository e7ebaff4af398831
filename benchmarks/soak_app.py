"""The app the chaos soak (benchmarks/soak.py) serves; every answer names the worker in X-Pid.

    /hello            13 bytes
    /upload           reads the whole body (Content-Length or chunked), answers "LENGTH SHA256-PREFIX"
    /stream?n=N       N pieces of 16 KiB from a generator (chunked to HTTP/1.1)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import Any, Callable

PIECE = b"s" * 16384


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    pid = ("X-Pid", str(os.getpid()))
    if path == "/upload":
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        body = stream.read(int(length)) if length else stream.read()
        answer = f"{len(body)} {hashlib.sha256(body).hexdigest()[:16]}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer))), pid])
        return [answer]
    if path == "/stream":
        pieces = int((environ.get("QUERY_STRING") or "n=1").partition("=")[2] or 1)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), pid])
        return _pieces(pieces)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13"), pid])
    return [b"Hello, World!"]


def _pieces(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield PIECE


def app_factory(global_conf: dict[str, Any], **local_conf: str) -> Callable[..., Any]:
    """PasteDeploy ``paste.app_factory``."""
    return app
