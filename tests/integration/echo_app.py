"""A WSGI app that answers every request with what it saw, for the live HTTP tests.

The response is JSON: the request line as the app got it (``method``, ``RAW_URI``,
``PATH_INFO``, ``QUERY_STRING``, ``SERVER_PROTOCOL``), every ``HTTP_*`` variable plus
``CONTENT_TYPE``/``CONTENT_LENGTH`` under ``headers``, the whole body read from
``wsgi.input`` as ``body_b64``, and the worker's ``pid``. Tests compare that with what they
sent, so a server that mangles, merges or invents anything is caught at the app boundary.

When the environment variable ``ECHO_APP_RECORD`` names a file, each request the app sees
is appended to it as one line (``METHOD RAW_URI``): tests that must prove a request was
*never dispatched* read it. ``O_APPEND`` keeps lines whole across worker processes.

``linted`` is the same app behind ``wsgiref.validate`` and ``webtest.lint``, with their
warnings turned into errors, so any PEP 3333 slip of the server becomes a 500.
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from typing import Callable, Iterable
from wsgiref.validate import WSGIWarning, validator

from webtest.lint import middleware as webtest_lint

RECORD_ENV = "ECHO_APP_RECORD"
READ_SIZE = 65536

_SEEN_KEYS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def _record(environ: dict) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path:
        return
    line = f"{environ['REQUEST_METHOD']} {environ.get('RAW_URI', '')}\n".encode("latin-1", "replace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _read_body(stream) -> bytes:
    # read(size) in a loop, not read(): wsgiref's validator refuses read() without a size,
    # and wsgi.input_terminated lets us read a chunked body to its end this way.
    parts = []
    while True:
        data = stream.read(READ_SIZE)
        if not data:
            return b"".join(parts)
        parts.append(data)


def describe(environ: dict) -> dict:
    """What the app saw of one request, as plain JSON-able data (the body is read here)."""
    headers = {key: value for key, value in environ.items()
               if key.startswith("HTTP_") or key in _SEEN_KEYS}
    return {
        "method": environ["REQUEST_METHOD"],
        "RAW_URI": environ.get("RAW_URI"),
        "PATH_INFO": environ.get("PATH_INFO"),
        "QUERY_STRING": environ.get("QUERY_STRING"),
        "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL"),
        "headers": headers,
        "body_b64": base64.b64encode(_read_body(environ["wsgi.input"])).decode("ascii"),
        "pid": os.getpid(),
    }


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    _record(environ)
    body = json.dumps(describe(environ), sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _strict_validator(wrapped: Callable) -> Callable:
    # This module only ever runs in test server processes: making the validator's warnings
    # fatal there turns each into an exception, hence a 500 the test sees.
    warnings.simplefilter("error", WSGIWarning)
    return validator(wrapped)


linted = _strict_validator(webtest_lint(app))
