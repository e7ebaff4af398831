"""The websocket echo app of benchmarks/websocket.py: eventlet.websocket, as apps write it.

Its own module, so the HTTP benchmarks' servers never import eventlet.
"""

import eventlet.websocket


@eventlet.websocket.WebSocketWSGI
def echo(ws) -> None:
    while True:
        message = ws.wait()
        if message is None:
            return
        ws.send(message)
