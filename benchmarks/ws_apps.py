"""The websocket echo app of benchmarks/websocket.py: eventlet.websocket, as apps write it.

Its own module, so the HTTP benchmarks' servers never import eventlet.
"""

import eventlet.websocket

# hello, from a module that imported eventlet.wsgi as Socket.IO apps do: what their plain HTTP
# requests cost (benchmarks/cpu.py --app benchmarks.ws_apps:hello).
from benchmarks.apps import hello  # noqa: F401


@eventlet.websocket.WebSocketWSGI
def echo(ws) -> None:
    while True:
        message = ws.wait()
        if message is None:
            return
        ws.send(message)
