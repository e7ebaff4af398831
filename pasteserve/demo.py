"""A small WSGI app that shows the request it received; the app of the bundled configs/."""

from __future__ import annotations

import html
import os
from typing import Any, Callable, Iterable

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
<p>Served by pasteserve worker pid {pid}.</p>
<table>{rows}</table>
</body></html>
"""


def make_app(title: str = "pasteserve demo") -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body_in = environ["wsgi.input"].read()
        rows = [(k, environ[k]) for k in sorted(environ) if k.isupper()]
        rows.append(("request body bytes", len(body_in)))
        table = "".join(f"<tr><th align=left>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in rows)
        body = PAGE.format(title=html.escape(title), pid=os.getpid(), rows=table).encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def app_factory(global_conf: dict[str, Any], title: str = "pasteserve demo", **local_conf: Any) -> Callable:
    """`use = egg:pasteserve#demo` in an `[app:...]` section."""
    return make_app(title)


application = make_app()
