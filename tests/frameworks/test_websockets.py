"""Raw eventlet.websocket apps, served as users do, driven by a minimal RFC 6455 client.

Every entry point (pserve, pasteserve_paster, pasteserve -k eventlet), idle periods longer than
keepalive and timeout, the sync worker's refusal, and 1,000 websockets on one worker.
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import ssl
import time
from pathlib import Path

import pytest
from websocket import create_connection   # websocket-client, as users test with

from tests.conftest import ini_text
from tests.frameworks.wsclient import CLOSE, AsyncWebSocket, WebSocket
from tests.proxies import certificate
from tests.server import Client

APP = "use = call:tests.frameworks.ws_apps:app_factory"
MODULE_APP = "tests.frameworks.ws_apps:echo_app"
OPTIONS = "bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = 1\nkeepalive = 1\ntimeout = 2\naccesslog = -"


def assert_clean(log: str) -> None:
    assert "Traceback" not in log, log
    assert "[ERROR]" not in log, log


def start_echo(start_server, entry: str, options: str = OPTIONS):
    if entry == "pasteserve":
        args = ["-k", "eventlet", "-w", "1", "-b", "127.0.0.1:0", "--keep-alive", "1", "-t", "2",
                "--access-logfile", "-", MODULE_APP]
        return start_server("pasteserve", args=args)
    return start_server(entry, ini=ini_text(options, APP))


@pytest.mark.parametrize("entry", ["pserve", "pasteserve_paster", "pasteserve"])
def test_echo_survives_idle_longer_than_keepalive_and_timeout(start_server, entry):
    server = start_echo(start_server, entry)
    (worker,) = server.wait_workers(1)
    ws = WebSocket(server.port)
    ws.send("hello")
    assert ws.recv() == b"hello"
    time.sleep(3.0)   # keepalive = 1 and timeout = 2: neither applies to a websocket
    ws.send(b"\x00\xff" * 40000)
    assert ws.recv() == b"\x00\xff" * 40000
    ws.send("pid")
    assert int(ws.recv()) == worker
    assert ws.close()[:2] == b"\x03\xe8"   # the app's close frame: status 1000
    # The worker forgot the connection and serves the next one.
    with Client(server.port) as client:
        status, _, body = client.get("/plain")
    assert status == 200 and body.startswith(b"plain")
    server.wait_for(lambda: '"GET /ws HTTP/1.1" 101' in server.log(), 5, "the access log line")
    assert_clean(server.log())


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_websocket_closed_by_another_green_thread_ends_while_its_reader_waits(start_server, tmp_path, tls):
    """python-engineio's end of a session (Flask-SocketIO's disconnect): its writer green thread
    closes the websocket while the handler's green thread waits to read it. The waiting reader is
    woken, the handler returns: the access log line comes, and the worker stops without waiting
    for graceful_timeout. (eventlet notices a closed descriptor only when its number is reused,
    so the reader used to wait for the next connection, or for ever.)"""
    options = OPTIONS + "\ngraceful_timeout = 20"
    context = None
    if tls:
        crt, key = certificate(tmp_path)
        options += f"\ncertfile = {crt}\nkeyfile = {key}"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    server = start_echo(start_server, "pasteserve_paster", options)
    server.wait_workers(1)
    ws = WebSocket(server.port, "/closed-by-writer", tls=context)
    assert ws.recv() == b"bye"
    assert ws.recv_frame()[0] == CLOSE
    assert ws.sock.recv(1) == b""   # the server closed its end
    # No other connection before the line: its descriptor would reuse the number and wake the reader.
    server.wait_for(lambda: '"GET /closed-by-writer HTTP/1.1" 101' in server.log(), 5, "the access log line")
    ws.sock.close()
    server.signal(signal.SIGTERM)
    server.wait_exit(15)   # less than graceful_timeout
    log = server.log()
    assert "open connection(s)" not in log, log   # the worker had none left to wait for
    assert "Traceback" not in log and "did not stop" not in log, log
    # eventlet's websocket, woken by the close, shuts the closed socket down again: nothing to log
    # (as with engineio, see test_socketio).
    assert "[ERROR]" not in log, log


def test_eventlet_environ_is_multithread(start_server):
    server = start_echo(start_server, "pasteserve_paster")
    with Client(server.port) as client:
        assert client.get("/plain")[2].endswith(b"multithread=True")


def test_refused_handshake_is_the_apps_answer_with_its_connection_close(start_server):
    server = start_echo(start_server, "pasteserve_paster")
    with Client(server.port) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n")
        status, headers, _ = client.response()
        assert status == 426 and headers["sec-websocket-version"] == "8, 13"
        assert headers["connection"] == "close"
        assert client.closed_by_peer()
    assert_clean(server.log())


@pytest.mark.parametrize("entry", ["pasteserve_paster", "pasteserve"])
def test_sync_worker_refuses_websocket_upgrades_and_serves_on(start_server, entry):
    if entry == "pasteserve":
        server = start_server("pasteserve", args=["-w", "1", "-b", "127.0.0.1:0", MODULE_APP])
    else:
        server = start_server(entry, ini=ini_text("bind = 127.0.0.1:0\nworkers = 1", APP))
    server.wait_workers(1)
    with Client(server.port, timeout=5) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        status, _, body = client.response()
        assert status == 400
        assert b"worker_class = eventlet" in body
        started = time.monotonic()
        status, _, body = client.get("/plain")   # same connection, same worker, at once
        assert status == 200 and body.startswith(b"plain")
        assert time.monotonic() - started < 2.0
    log = server.log()
    assert len(re.findall(r"\[WARNING\] Refused a websocket upgrade .*worker_class = eventlet", log)) == 1, log
    assert "Traceback" not in log, log


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))


async def many_clients(port: int, count: int, rounds: int, on_idle) -> list:
    """`count` websockets, all open together, each echoing `rounds` messages; returns failures."""
    sockets = await asyncio.gather(*(AsyncWebSocket.connect(port) for _ in range(count)), return_exceptions=True)
    failures = [s for s in sockets if isinstance(s, BaseException)]
    opened = [s for s in sockets if not isinstance(s, BaseException)]
    on_idle()

    async def talk(i: int, ws: AsyncWebSocket) -> None:
        for r in range(rounds):
            message = f"{i}:{r}".encode()
            await ws.send(message)
            got = await ws.recv()
            if got != message:
                raise AssertionError(f"{got!r} != {message!r}")
        await ws.close()

    results = await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(opened)), return_exceptions=True)
    return failures + [r for r in results if isinstance(r, BaseException)]


def test_1000_websockets_on_one_worker(start_server):
    count = 1000
    raise_nofile(4 * count)
    server = start_echo(start_server, "pasteserve_paster",
                        OPTIONS.replace("accesslog = -", "") + "\nworker_connections = 1100")
    (worker,) = server.wait_workers(1)
    before = rss_kib(worker)
    measured = {}

    def on_idle() -> None:
        measured["rss"] = rss_kib(worker)

    started = time.monotonic()
    failures = asyncio.run(asyncio.wait_for(many_clients(server.port, count, 5, on_idle), 60))
    assert not failures, failures[:5]
    per_socket = (measured["rss"] - before) / count
    print(f"{count} websockets in {time.monotonic() - started:.1f}s; {per_socket:.1f} KiB per idle websocket")
    assert per_socket < 200   # a green thread and a connection, not a thread stack
    assert_clean(server.log())


def test_wss_through_the_servers_tls(start_server, tmp_path):
    """wss://: the app gets the TLS socket, and an idle websocket outlives keepalive and timeout."""
    crt, key = certificate(tmp_path)
    server = start_echo(start_server, "pasteserve_paster", f"{OPTIONS}\ncertfile = {crt}\nkeyfile = {key}")
    server.wait_workers(1)
    ws = create_connection(f"wss://127.0.0.1:{server.port}/ws", timeout=10, sslopt={"cert_reqs": ssl.CERT_NONE})
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
        time.sleep(2.5)
        ws.send("again")
        assert ws.recv() == "again"
    finally:
        ws.close()
    server.wait_for(lambda: '"GET /ws HTTP/1.1" 101' in server.log(), 5, "the access log line")
    assert_clean(server.log())
