"""A small Pyramid app with a PasteDeploy factory, served by `pserve` in the framework tests.

Every view answers JSON that names the worker (`pid`), so a test can tell which process served it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request


def json_view(request: Request) -> dict[str, Any]:
    return {"pid": os.getpid(), "path": request.path, "query": dict(request.GET)}


def form_view(request: Request) -> dict[str, Any]:
    return {"pid": os.getpid(), "method": request.method, "form": dict(request.POST)}


def boom_view(request: Request) -> dict[str, Any]:
    # No exception view is registered: the error reaches the server, which must answer 500.
    raise RuntimeError("boom requested by the test")


def settings_view(request: Request) -> dict[str, Any]:
    settings = request.registry.settings
    return {"pid": os.getpid(), "greeting": settings.get("greeting"), "data_dir": settings.get("data_dir")}


def locals_view(request: Request) -> dict[str, Any]:
    """What kind of thread-local the app got: green after eventlet patched before `loadapp`."""
    import eventlet.patcher
    import pyramid.threadlocal

    manager_base = type(pyramid.threadlocal.manager).__mro__[1]
    return {
        "pid": os.getpid(),
        "threading_local": _qualname(type(threading.local())),
        "pyramid_local_base": _qualname(manager_base),
        "thread_patched": eventlet.patcher.is_monkey_patched("thread"),
        # Pyramid keeps the current request in that local: it must be this request.
        "current_request_is_this": pyramid.threadlocal.get_current_request() is request,
    }


def sleep_view(request: Request) -> dict[str, Any]:
    import pyramid.threadlocal

    started = time.monotonic()
    time.sleep(float(request.GET.get("seconds", "1")))
    # Requests that ran meanwhile, in other threads or green threads, left this one's current request alone.
    return {"pid": os.getpid(), "slept": time.monotonic() - started,
            "current_request_is_this": pyramid.threadlocal.get_current_request() is request}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def main(global_config: dict[str, str], **settings: str) -> Any:
    """PasteDeploy app factory: `use = call:tests.frameworks.pyramid_app:main`."""
    with Configurator(settings=settings) as config:
        for name, path, view, methods in [
            ("json", "/json", json_view, None),
            ("form", "/form", form_view, "POST"),
            ("boom", "/boom", boom_view, None),
            ("settings", "/settings", settings_view, None),
            ("locals", "/locals", locals_view, None),
            ("sleep", "/sleep", sleep_view, None),
        ]:
            config.add_route(name, path)
            config.add_view(view, route_name=name, renderer="json", request_method=methods)
        return config.make_wsgi_app()
