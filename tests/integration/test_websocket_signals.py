"""Open websockets while workers retire (HUP, TTOU, max_requests) or the server stops (TERM).

The retiring worker stops accepting at once (new connections reach the other workers), keeps its
websockets working until graceful_timeout, then closes them itself, before the master would
have to kill it.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import ini_text
from tests.frameworks.wsclient import WebSocket
from tests.server import connect, get

APP = "use = call:tests.frameworks.ws_apps:app_factory"
GRACE = 6.0


def pid_of(ws: WebSocket) -> int:
    ws.send("pid")
    return int(ws.recv())


def echoes(ws: WebSocket, message: str = "still here") -> bool:
    ws.send(message)
    return ws.recv() == message.encode()


def closed_within(ws: WebSocket, seconds: float) -> float:
    """Seconds until the server ends the websocket (close frame or EOF); fails after `seconds`."""
    started = time.monotonic()
    ws.sock.settimeout(seconds)
    try:
        ws.recv()
    except (ConnectionError, OSError):
        return time.monotonic() - started
    raise AssertionError("the websocket got a message instead of being closed")


@pytest.mark.parametrize("how", ["HUP", "TTOU", "max_requests"])
def test_retiring_worker_keeps_websockets_until_graceful_timeout(start_server, how):
    workers = 2 if how == "TTOU" else 1
    extra = "\nmax_requests = 3" if how == "max_requests" else ""
    server = start_server("pasteserve_paster", ini=ini_text(
        f"bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = {workers}\ngraceful_timeout = {GRACE:g}{extra}", APP))
    pids = server.wait_workers(workers)
    ws = WebSocket(server.port)
    old = pid_of(ws)
    if how == "TTOU":
        # The oldest worker retires: make sure our websocket is on it.
        oldest = min(pids, key=lambda p: int(open(f"/proc/{p}/stat").read().rpartition(")")[2].split()[19]))
        while old != oldest:
            ws.close()
            ws = WebSocket(server.port)
            old = pid_of(ws)
    started = time.monotonic()
    if how == "max_requests":
        for _ in range(3):
            assert get(server.port, "/plain")[0] == 200
    else:
        server.signal(getattr(signal, f"SIG{how}"))
    server.wait_for(lambda: f"Worker (pid {old}) stopped accepting" in server.log(), 10, "the worker to retire")
    # The retiring worker accepts nothing more: new websockets and requests go elsewhere.
    for _ in range(5):
        other = WebSocket(server.port)
        assert pid_of(other) != old
        other.close()
    # ... at once: not queued until the retiring worker is gone.
    assert time.monotonic() - started < GRACE / 2, "new connections waited for the retiring worker"
    assert echoes(ws)
    assert pid_of(ws) == old
    waited = closed_within(ws, GRACE + 5)
    assert started + GRACE - 1.0 < time.monotonic() < started + GRACE + 2.0, waited
    server.wait_for(lambda: old not in server.children(), 10, "the old worker to exit")
    log = server.log()
    assert "did not stop within graceful_timeout" not in log, log
    assert "Traceback" not in log, log


def test_term_keeps_websockets_until_graceful_timeout(start_server):
    server = start_server("pasteserve_paster", ini=ini_text(
        f"bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = 1\ngraceful_timeout = {GRACE:g}", APP))
    server.wait_workers(1)
    ws = WebSocket(server.port)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert echoes(ws)
    # Nobody accepts any more, and nobody holds the port: a new client is refused, not queued.
    with pytest.raises(ConnectionRefusedError):
        connect(server.port, timeout=2).close()
    closed_within(ws, GRACE + 5)
    assert started + GRACE - 1.0 < time.monotonic() < started + GRACE + 2.0
    assert server.wait_exit(10) == 0
    log = server.log()
    assert "Traceback" not in log, log
