"""Server hooks and a test app for the INI files of the integration tests.

Hooks append one line, ``"<hook> <pid> <detail>"``, to the file named by the environment variable
``PASTESERVE_TEST_HOOK_LOG``; the tests read that file to see what ran, in which process. The app
answers with the pid of the worker that served it, so tests can tell workers apart:

    /pid                  the worker's pid
    /sleep?seconds=N      records "sleep-start", sleeps N seconds (green under eventlet), then /pid
    /slow-body?seconds=N  sends the head and a first chunk, records "body-start", sleeps N seconds,
                          then sends the pid as the last chunk
    /spin                 records "spin-start", then loops on the CPU forever
    /thread?seconds=N     sleeps N seconds (default 0), then answers JSON: pid, the thread's name, the
                          id it keeps in a threading.local (set on its first request) before and
                          after the sleep, and wsgi.multithread
    anything else         tests.apps.router (/crash, /slow, /hello, ...)

INI use: ``[app:main] use = call:tests.integration.hookmod:app_factory`` and, in ``[server:main]``,
``post_fork = tests.integration.hookmod:post_fork``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

from tests.apps import router

HOOK_LOG_ENV = "PASTESERVE_TEST_HOOK_LOG"


def record(event: str, detail: object = "") -> None:
    """Append one line for `event` to the hook log; nothing when no test watches."""
    path = os.environ.get(HOOK_LOG_ENV)
    if not path:
        return
    line = f"{event} {os.getpid()} {detail}".rstrip() + "\n"
    # One small write to an O_APPEND descriptor: lines from several processes never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike) -> list[tuple[str, int, str]]:
    """The hook log as (event, pid, detail) tuples, oldest first; [] before the first line."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        event, pid, detail = (line.split(" ", 2) + [""])[:3]
        entries.append((event, int(pid), detail))
    return entries


# --- the app ------------------------------------------------------------------------------------

def _pid_response(start_response: Callable) -> list[bytes]:
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _slow_body(seconds: float, start_response: Callable) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first "
    record("body-start", seconds)
    time.sleep(seconds)
    yield str(os.getpid()).encode()


_local = threading.local()
_local_ids = itertools.count(1)


def _thread_response(seconds: float, environ: dict, start_response: Callable) -> list[bytes]:
    if not hasattr(_local, "id"):
        _local.id = next(_local_ids)
    before = _local.id
    time.sleep(seconds)
    body = json.dumps({"pid": os.getpid(), "thread": threading.current_thread().name, "local": [before, _local.id],
                       "multithread": environ["wsgi.multithread"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/pid":
        return _pid_response(start_response)
    if path == "/sleep":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["1"])[0])
        record("sleep-start", seconds)
        time.sleep(seconds)
        return _pid_response(start_response)
    if path == "/slow-body":
        return _slow_body(float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["1"])[0]),
                          start_response)
    if path == "/thread":
        return _thread_response(float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["0"])[0]),
                                environ, start_response)
    if path == "/spin":
        record("spin-start")
        while True:
            pass
    return router(environ, start_response)


def app_factory(global_conf: dict, **local_conf: str) -> Callable:
    """PasteDeploy ``paste.app_factory``."""
    return app


# --- hooks (Gunicorn's names and arguments) -------------------------------------------------------

def on_starting(server: Any) -> None:
    record("on_starting")


def when_ready(server: Any) -> None:
    record("when_ready")


def on_reload(server: Any) -> None:
    record("on_reload")


def pre_fork(server: Any, worker: Any) -> None:
    record("pre_fork")


def post_fork(server: Any, worker: Any) -> None:
    record("post_fork", worker.pid)


def post_worker_init(worker: Any) -> None:
    record("post_worker_init", worker.pid)


def pre_request(worker: Any, req: Any) -> None:
    record("pre_request")


def post_request(worker: Any, req: Any, environ: dict, resp: Any) -> None:
    record("post_request", environ.get("PATH_INFO"))


def pre_request_thread(worker: Any, req: Any) -> None:
    record("pre_request_thread", threading.current_thread().name)


def post_request_thread(worker: Any, req: Any, environ: dict, resp: Any) -> None:
    record("post_request_thread", threading.current_thread().name)


def worker_abort(worker: Any) -> None:
    record("worker_abort", worker.pid)


def worker_int(worker: Any) -> None:
    record("worker_int", worker.pid)


def in_signal_handler() -> bool:
    """True when called (at any depth) from a Python signal handler of the worker."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name.startswith("handle_") and "signum" in frame.f_code.co_varnames:
            return True
        frame = frame.f_back
    return False


def worker_int_where(worker: Any) -> None:
    record("worker_int", "in-signal-handler" if in_signal_handler() else "outside-handler")


def worker_abort_where(worker: Any) -> None:
    record("worker_abort", "in-signal-handler" if in_signal_handler() else "outside-handler")


def worker_exit(server: Any, worker: Any) -> None:
    record("worker_exit", worker.pid)


def child_exit(server: Any, worker: Any) -> None:
    record("child_exit", worker.pid)


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    record("nworkers_changed", f"{old_value}->{new_value}")


def nworkers_changed_slowly(server: Any, new_value: int, old_value: int | None) -> None:
    """Holds the master's loop a while: signals that arrive meanwhile wait in its queue."""
    record("nworkers_changed", f"{old_value}->{new_value}")
    time.sleep(0.5)


def on_exit(server: Any) -> None:
    record("on_exit")


def broken(*args: Any) -> None:
    """Fits every hook's arguments and always raises: the server must log it and carry on."""
    record("broken")
    raise RuntimeError("hook failed on purpose")
