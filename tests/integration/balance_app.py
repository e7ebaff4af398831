"""The app for test_accept_balance: answers with the pid of the worker that served it.

``/block?SECONDS`` first blocks the whole worker for SECONDS (the unpatched ``time.sleep``: an
eventlet worker's hub stops as it does under an app doing CPU work).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from pasteserve.green import original


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/block":
        original("time").sleep(float(environ["QUERY_STRING"]))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
