"""Keep-alive connections against real workers: reuse, `keepalive = 0`, head-of-line blocking, slow clients.

The time bounds below are correctness bounds (a request waits for another one, or it does not),
set far above what a working server needs.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import Client, connect, get, read_response

APP = "use = call:tests.integration.hookmod:app_factory"


def ini(options: str, worker_class: str = "sync") -> str:
    # "gthread" runs the sync worker with four app threads.
    threads = "threads = 4\n" if worker_class == "gthread" else ""
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\n{threads}{options}", APP)


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_connection_is_reused(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class))
    with Client(server.port) as client:
        answers = [client.get("/pid") for _ in range(3)]
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert all(headers.get("connection") != "close" for _, headers, _ in answers)


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_keepalive_zero_closes_after_every_response(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nkeepalive = 0", worker_class))
    with Client(server.port) as client:
        status, headers, _ = client.get("/pid")
        assert status == 200
        assert headers["connection"] == "close"
        assert client.closed_by_peer()


def spread_connections(port: int, per_worker: int, timeout: float = 15.0) -> dict[int, list[Client]]:
    """Keep-alive connections, each used once, until `per_worker` of them sit on each of two workers.

    Which worker accepts a connection is up to the kernel, and a worker that just booted may not
    accept yet: keep connecting (bounded) until both hold their share.
    """
    by_pid: dict[int, list[Client]] = {}
    deadline = time.monotonic() + timeout
    while not (len(by_pid) == 2 and all(len(held) >= per_worker for held in by_pid.values())):
        if time.monotonic() > deadline:
            break
        client = Client(port)
        held = by_pid.setdefault(int(client.get("/pid")[2]), [])
        if len(held) < per_worker:
            held.append(client)
        else:
            client.close()
    return by_pid


def two_workers(start_server, options: str, grown: bool, hook_log) -> object:
    """A server with two workers: configured so, or started with one and given another by TTIN."""
    server = start_server("pasteserve_paster", ini=ini(f"workers = {1 if grown else 2}\n{options}"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    if grown:
        server.wait_workers(1)
        server.signal(signal.SIGTTIN)
    server.wait_workers(2)
    return server


@pytest.mark.parametrize("grown", [False, True], ids=["workers-2", "ttin-to-2"])
def test_sync_request_on_a_busy_workers_connection_is_served_by_an_idle_sibling(start_server, tmp_path, grown):
    hook_log = tmp_path / "hooks.log"
    server = two_workers(start_server, "keepalive = 30", grown, hook_log)
    by_pid = spread_connections(server.port, 5)
    clients = [c for held in by_pid.values() for c in held]
    try:
        assert sorted(len(held) for held in by_pid.values()) == [5, 5], "connections not spread over both workers"
        (busy, busy_conns), (idle, _) = by_pid.items()
        slow, others = busy_conns[0], [c for c in clients if c is not busy_conns[0]]
        slow.send(b"GET /sleep?seconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.wait_for(lambda: any(e[0] == "sleep-start" for e in read_log(hook_log)), 10, "the slow request")
        sent = time.monotonic()
        for client in others:
            client.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
        waits = []
        for client in others:
            status, _, body = client.response()
            waits.append((round(time.monotonic() - sent, 3), status, int(body)))
        # Four of the nine wait behind the slow request unless they move to the idle worker.
        assert all(wait < 1.0 and status == 200 and pid == idle for wait, status, pid in waits), waits
        status, _, body = slow.response()
        assert (status, int(body)) == (200, busy)
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_clients_trickling_headers_do_not_delay_others(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class))
    request = b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"   # 31 bytes, one every 100 ms: over 3 s
    tricklers = [connect(server.port) for _ in range(50)]
    errors: list[Exception] = []

    def trickle():
        try:
            for i in range(len(request)):
                for sock in tricklers:
                    sock.sendall(request[i:i + 1])
                time.sleep(0.1)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        waits = []
        while thread.is_alive() and len(waits) < 10:
            started = time.monotonic()
            status, _, _ = get(server.port, "/pid")
            waits.append((round(time.monotonic() - started, 3), status))
            time.sleep(0.2)
        thread.join(10)
        assert not errors, errors
        assert len(waits) >= 5, waits
        assert all(wait < 1.0 and status == 200 for wait, status in waits), waits
        # The trickled requests were served too, once complete.
        for sock in tricklers:
            with sock.makefile("rb") as f:
                assert read_response(f)[0] == 200
    finally:
        for sock in tricklers:
            sock.close()
