"""WSGI apps for test_hardening_workers: apps that misbehave the way real ones do."""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable
from urllib.parse import parse_qs


def _query(environ: dict, name: str, default: str) -> str:
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def swallow(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Sends its head, then reads the body and swallows whatever error that raises."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"head sent\n")
    try:
        environ["wsgi.input"].read()
        outcome = b"body read\n"
    except Exception as exc:   # what careless apps do
        outcome = f"swallowed {type(exc).__name__}\n".encode()
    return [outcome]


def slow_echo(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Reads the body, then answers with ``size`` bytes (a response the client may read slowly)."""
    body = environ["wsgi.input"].read()
    size = int(_query(environ, "size", str(8 << 20)))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size)),
                              ("X-Body-Length", str(len(body)))])
    return [b"r" * size]


def pid(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """The worker's pid, after sleeping ``sleep`` seconds (default 0)."""
    time.sleep(float(_query(environ, "sleep", "0")))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


APPS = {"swallow": swallow, "slow-echo": slow_echo, "pid": pid}


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    name = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
    return APPS.get(name, pid)(environ, start_response)
