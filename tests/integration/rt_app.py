"""The app for the runtime-option tests (body limit, proxies, TLS, error pages).

``/read``     reads wsgi.input in 1000-byte pieces and answers how many bytes it got. Every
              request is appended to the file named by ``RT_APP_RECORD`` as one line,
              ``read N`` or ``error N ExceptionName``, so a test knows what the app saw even
              when the server answered for it; the error is re-raised.
``/environ``  the environ as JSON (plain values only).
``/crash``    raises.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable

RECORD_ENV = "RT_APP_RECORD"


def _record(line: str) -> None:
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _json(start_response: Callable, data: object) -> list[bytes]:
    body = json.dumps(data, sort_keys=True, default=repr).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/read":
        stream, total = environ["wsgi.input"], 0
        try:
            while piece := stream.read(1000):
                total += len(piece)
        except Exception as exc:
            _record(f"error {total} {type(exc).__name__}")
            raise
        _record(f"read {total}")
        return _json(start_response, {"read": total})
    if path == "/environ":
        plain = (str, int, float, bool, type(None), tuple, list, dict)
        return _json(start_response, {k: v for k, v in environ.items() if isinstance(v, plain)})
    if path == "/crash":
        raise RuntimeError("crash requested by the test")
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


def app_factory(global_conf: dict, **local_conf: str) -> Callable:
    """PasteDeploy ``paste.app_factory``: ``use = call:tests.integration.rt_app:app_factory``."""
    return app
