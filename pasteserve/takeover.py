"""Apps that take the connection over (websockets): what they need from the server.

What the libraries read, from their source:

- ``eventlet.websocket.WebSocketWSGI`` (and python-engineio's eventlet driver, which subclasses
  it) finds the socket at ``environ["eventlet.input"].get_socket()`` (eventlet.wsgi's name for
  ``wsgi.input``), else at ``environ["gunicorn.socket"]``; engineio's driver insists on
  ``eventlet.input``, and engineio's middleware builds one from ``gunicorn.socket`` when that is
  there. simple-websocket (flask-sock) reads ``gunicorn.socket``.
- They write the ``101`` handshake and every frame themselves, and return only when the
  websocket is over. The server must then write nothing, log no error, and forget the
  connection. They say so in one of three ways: eventlet >= 0.30.3 sets
  ``eventlet.wsgi.WSGI_LOCAL.already_handled`` (a green-thread local); older eventlet returns
  ``eventlet.wsgi.ALREADY_HANDLED``; Gunicorn's convention (simple-websocket) raises
  ``StopIteration``.

Nothing here imports eventlet: the flag is read only if the app imported ``eventlet.wsgi``.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

__all__ = ["REFUSAL", "EventletInput", "handled_by_app", "is_websocket_upgrade", "offer", "prepare", "reset"]

# The answer of a worker whose apps cannot own a connection (the sync worker: one websocket
# would hold the whole process for as long as it lives).
REFUSAL = "websocket upgrades need the eventlet worker (worker_class = eventlet)"


class EventletInput:
    """``environ["eventlet.input"]``: ``wsgi.input`` that also hands out the socket."""

    __slots__ = ("_input", "_sock")

    def __init__(self, wsgi_input: Any, sock: socket.socket) -> None:
        self._input = wsgi_input
        self._sock = sock

    def get_socket(self) -> socket.socket:
        return self._sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._input, name)

    def __iter__(self) -> Any:
        return iter(self._input)


def is_websocket_upgrade(environ: dict[str, Any]) -> bool:
    return environ.get("HTTP_UPGRADE", "").lower() == "websocket"


def prepare(base: dict[str, Any], sock: socket.socket, no_body: Any) -> None:
    """Once per connection, in the base every environ of its requests is copied from: the socket
    where Gunicorn apps look for it, and the ``eventlet.input`` of requests without a body (whose
    ``wsgi.input`` is ``no_body``, shared by them all), the same for all of them. Per request,
    only :func:`offer` is left (hello's environ used to outgrow its table with these two keys,
    in every request)."""
    base["gunicorn.socket"] = sock
    base["eventlet.input"] = EventletInput(no_body, sock)


def offer(environ: dict[str, Any], sock: socket.socket) -> None:
    """Per request, after :func:`prepare`: ``eventlet.input`` for a request with a body."""
    wsgi_input = environ["wsgi.input"]
    if environ["eventlet.input"]._input is not wsgi_input:
        environ["eventlet.input"] = EventletInput(wsgi_input, sock)


# The name under which a green thread keeps its own eventlet.wsgi flags (see _flags).
_FLAGS = "pasteserve_wsgi_local"


def _flags(wsgi: Any) -> dict[str, Any] | None:
    """The calling green thread's attributes of ``eventlet.wsgi.WSGI_LOCAL``, None without it.

    Each read of that green-thread local costs eventlet a lookup in a weak dictionary (made of
    Python calls): over a quarter more CPU per request for every app that imported eventlet.wsgi.
    Its ``__dict__`` is the same dict for the green thread's life, so it is fetched once and kept
    on the green thread, and the flag read from it."""
    local = vars(wsgi).get("WSGI_LOCAL")
    if local is None:
        return None
    current = sys.modules["greenlet"].getcurrent()
    kept = getattr(current, _FLAGS, None)
    if kept is None or kept[0] is not local:
        kept = (local, local.__dict__)
        setattr(current, _FLAGS, kept)
    return kept[1]


def reset() -> None:
    """Before the app runs: the flag belongs to the green thread, which serves many requests."""
    wsgi = sys.modules.get("eventlet.wsgi")
    if wsgi is not None:
        flags = _flags(wsgi)
        if flags is not None and flags.get("already_handled"):
            flags["already_handled"] = False


def handled_by_app(result: Any) -> bool:
    """Did the app, returning ``result``, say that it answered on the socket itself?"""
    wsgi = sys.modules.get("eventlet.wsgi")
    if wsgi is None:
        return False
    flags = _flags(wsgi)
    if flags is not None and flags.get("already_handled"):
        return True
    # Not getattr with a default: a missing module attribute costs an exception and its message.
    marker = vars(wsgi).get("ALREADY_HANDLED")
    return marker is not None and result is marker
