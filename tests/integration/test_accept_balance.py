"""Connections that arrive together are shared between the workers, not taken by the first awake.

Every worker is woken by a new connection; the first to run used to take all that was queued, so
one worker could hold 45 of wrk's 50 connections (or 142 of 200 clients) and answer each of them
later than its idle sibling would have. A worker now leaves the backlog to its siblings while it
holds a few more connections than the one holding fewest (see pasteserve/workers/balance.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections import defaultdict

import pytest

from tests.server import BIN, Client

CLIENTS = 40


def worker_connections(pidfile) -> list[int]:
    done = subprocess.run([str(BIN / "pasteserve"), "status", str(pidfile), "--json"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return sorted(worker["connections"] for worker in json.loads(done.stdout)["workers"])


@pytest.mark.parametrize("kind", [["-k", "sync"], ["-k", "sync", "--threads", "4"], ["-k", "eventlet"]],
                         ids=["sync", "gthread", "eventlet"])
def test_connections_arriving_together_are_shared_between_workers(start_server, tmp_path, kind):
    pidfile = tmp_path / "app.pid"
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "2", *kind,
                                              "--pid", str(pidfile), "tests.apps:router"])
    server.wait_workers(2)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CLIENTS)]
    try:
        for sock in socks:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for sock in socks:   # every one answered: accepted by some worker, and kept open
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        def all_held():
            counts = worker_connections(pidfile)
            return counts if sum(counts) == CLIENTS else None

        counts = server.wait_for(all_held, 10, f"{CLIENTS} connections held")
        # Each holds at most ACCEPT_SLACK (4) more than the other, give or take one reading of
        # the other's count that was a few milliseconds old.
        assert counts[1] - counts[0] <= 8, counts
        with Client(server.port) as client:   # and both still take new connections
            assert client.get("/hello")[0] == 200
    finally:
        for sock in socks:
            sock.close()


def answering_pid(sock: socket.socket) -> int:
    sock.settimeout(10)
    head, _, body = sock.recv(4096).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return int(body)


def test_a_worker_whose_hub_is_blocked_is_not_left_the_backlog(start_server, tmp_path):
    """An eventlet worker whose app blocks its hub (CPU work, a call that is not green) accepts
    nothing: the connections its sibling left to it would wait until it is free again. A sibling
    that has not beaten for a while does not count (SILENT_FOR)."""
    pidfile = tmp_path / "app.pid"
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "2", "-k", "eventlet", "--keep-alive", "30",
                                              "--pid", str(pidfile), "tests.integration.balance_app:app"])
    server.wait_workers(2)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CLIENTS)]
    late = []
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        held = defaultdict(list)
        for sock in socks:
            held[answering_pid(sock)].append(sock)
        assert len(held) == 2, "the connections are shared (see the test above)"
        more, fewer = sorted(held.values(), key=len, reverse=True)
        # The worker holding more is past its share (ACCEPT_SLACK, 4, more than its sibling) ...
        for sock in fewer[len(more) - 6:]:
            sock.close()
        del fewer[len(more) - 6:]
        server.wait_for(lambda: worker_connections(pidfile) == sorted([len(fewer), len(more)]), 10,
                        "the connections closed let go")
        # ... and its sibling stops for longer than the new clients wait for their answer.
        fewer[0].sendall(b"GET /block?8 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        late = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        for sock in late:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for sock in late:
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks + late:
            sock.close()
