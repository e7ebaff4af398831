"""A WSGI app that answers with what the configuration changed around it, for the compat tests:
SCRIPT_NAME and PATH_INFO (root_path, url_prefix), the scheme, variables from `raw_env`, and the
name given by its INI section (which [app:NAME] was served)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterable


def make_app(name: str = "main") -> Callable:
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/print":
            # capture_output: what an app prints must reach the error log.
            print("compat_app printed this line")
            sys.stdout.flush()
        body = json.dumps({
            "name": name,
            "SCRIPT_NAME": environ.get("SCRIPT_NAME"),
            "PATH_INFO": environ.get("PATH_INFO"),
            "url_scheme": environ.get("wsgi.url_scheme"),
            "COMPAT_ENV": os.environ.get("COMPAT_ENV"),
            "pid": os.getpid(),
        }).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return app


app = make_app()


def factory(global_conf: dict, **local_conf: Any) -> Callable:
    return make_app(local_conf.get("name", "main"))
