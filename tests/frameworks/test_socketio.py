"""Flask-SocketIO under the eventlet worker, driven by the python-socketio client.

The app is the one its docs deploy with `gunicorn -k eventlet -w 1 module:app`; here only the
server command (or the INI's server section) changes. Both transports: websocket from the start,
and long-polling that upgrades to websocket.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import socketio

from tests.conftest import ini_text

APP = "tests.frameworks.socketio_app:app"


def start(start_server, entry: str):
    if entry == "pasteserve":
        return start_server("pasteserve", args=["-k", "eventlet", "-w", "1", "-b", "127.0.0.1:0",
                                                "--keep-alive", "1", "--access-logfile", "-", APP])
    options = "bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = 1\nkeepalive = 1\naccesslog = -"
    return start_server(entry, ini=ini_text(options, "use = call:tests.frameworks.socketio_app:app_factory"))


@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]], ids=["websocket", "upgrade"])
@pytest.mark.parametrize("entry", ["pasteserve", "pasteserve_paster", "pserve"])
def test_socketio_echo(start_server, entry, transports):
    server = start(start_server, entry)
    (worker,) = server.wait_workers(1)
    events: list = []
    got = threading.Event()
    client = socketio.Client(reconnection=False)

    @client.on("echoed")
    def echoed(data):
        events.append(data)
        got.set()

    client.connect(server.url, transports=transports, wait_timeout=10)
    try:
        if len(transports) > 1:
            # The upgrade happens in the background once the polling session is up.
            deadline = time.monotonic() + 10
            while client.transport() != "websocket" and time.monotonic() < deadline:
                time.sleep(0.05)
        assert client.transport() == "websocket"
        for i in range(20):
            ack = client.call("echo", {"n": i}, timeout=10)
            assert ack == {"pid": worker, "data": {"n": i}}
        time.sleep(1.5)   # idle past keepalive: the websocket stays
        assert client.call("echo", "after idle", timeout=10)["data"] == "after idle"
        assert got.wait(10)
        assert events[0] == {"n": 0}
    finally:
        client.disconnect()
    # The websocket's access log line comes when it ends: 101, whatever engineio told start_response.
    server.wait_for(lambda: re.search(r'"GET /socket.io/\?transport=websocket\S* HTTP/1.1" 101 ', server.log()),
                    5, "the websocket's access log line")
    log = server.log()
    assert "Traceback" not in log, log
    # engineio closes the websocket twice: eventlet's second shutdown must not find a closed socket
    # and log "socket shutdown error: [Errno 9] Bad file descriptor" (Gunicorn 23's eventlet
    # worker does, on every disconnect). No error at all.
    assert "[ERROR]" not in log, log
