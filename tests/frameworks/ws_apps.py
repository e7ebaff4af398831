"""Apps that take their connection over, as users write them for eventlet.

``echo_app``: eventlet.websocket.WebSocketWSGI at /ws echoing every message (``/ws`` also
answers "pid" with the worker's pid); ``/closed-by-writer`` is python-engineio's shape of a
websocket whose writer green thread closes it; any other path is a plain WSGI response.
"""

from __future__ import annotations

import os

import eventlet
import eventlet.websocket


@eventlet.websocket.WebSocketWSGI
def _echo(ws) -> None:
    while True:
        message = ws.wait()
        if message is None:
            return
        if message in ("pid", b"pid"):
            message = str(os.getpid())
        ws.send(message)


@eventlet.websocket.WebSocketWSGI
def _closed_by_writer(ws) -> None:
    # As engineio's websocket does when its session ends: a writer green thread says its last
    # word and closes the websocket while this one waits for the client's next message.
    def writer() -> None:
        ws.send("bye")
        ws.close()

    eventlet.spawn(writer)
    try:
        while ws.wait() is not None:
            pass
    except Exception:   # engineio's reader too: an error once the socket is closed ends it
        pass


def echo_app(environ, start_response):
    if environ["PATH_INFO"] == "/ws":
        return _echo(environ, start_response)
    if environ["PATH_INFO"] == "/closed-by-writer":
        return _closed_by_writer(environ, start_response)
    body = f"plain {os.getpid()} multithread={environ['wsgi.multithread']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app_factory(global_conf, **local_conf):
    return echo_app
