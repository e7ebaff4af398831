"""The eventlet worker's edges: total bounds on request bodies and TLS handshakes, sendfile on
green sockets, and blocking I/O in the app made green.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from tests.conftest import ini_text
from tests.proxies import certificate
from tests.server import Client, connect, traced

APP = "use = call:tests.integration.edges_app:app_factory"


def ini(options: str) -> str:
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = 1\n{options}", APP)


def test_trickling_body_gets_408_after_timeout_in_all(start_server):
    server = start_server("pasteserve_paster", ini=ini("timeout = 2"))
    server.wait_workers(1)
    with Client(server.port, timeout=15) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        status = None
        # One byte every 0.3 s: each read is quick, only the total is too slow.
        while time.monotonic() - started < 10:
            try:
                client.send(b"x")
            except OSError:
                break
            client.sock.settimeout(0.3)
            try:
                if client.sock.recv(1, socket.MSG_PEEK):
                    break
            except (TimeoutError, BlockingIOError):
                continue
        client.sock.settimeout(5)
        status, _, body = client.response()
        elapsed = time.monotonic() - started
    assert status == 408, body
    assert 1.5 < elapsed < 6, elapsed
    # The worker is fine and serves on.
    with Client(server.port) as client:
        assert client.get("/")[0] == 200


def client_hello() -> bytes:
    """The bytes a real TLS client opens with."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_trickling_tls_handshake_is_dropped_after_header_timeout_in_all(start_server, tmp_path):
    crt, key = certificate(tmp_path)
    server = start_server("pasteserve_paster", ini=ini(f"certfile = {crt}\nkeyfile = {key}\nheader_timeout = 1.5"))
    server.wait_workers(1)
    hello = client_hello()
    sock = connect(server.port)
    started = time.monotonic()
    closed = False
    try:
        # One byte every 0.2 s: the hello alone would take over a minute to arrive.
        for byte in hello:
            if time.monotonic() - started > 8:
                break
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    assert closed and elapsed < 4, elapsed


def test_file_wrapper_is_sent_with_sendfile_on_the_green_socket(start_server, tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    data = os.urandom(1 << 20) * 8   # 8 MiB: more than the socket buffers, so sendfile meets EAGAIN
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    server = start_server("pasteserve_paster", ini=ini(""))
    (worker,) = server.wait_workers(1)
    trace = tmp_path / "trace.txt"
    strace = subprocess.Popen(["strace", "-f", "-e", "trace=sendfile,epoll_wait,epoll_ctl", "-o", str(trace),
                               "-p", str(worker)], stderr=subprocess.PIPE)
    try:
        server.wait_for(lambda: traced(worker), 10, "strace to attach")
        with Client(server.port, timeout=10) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            client.send(f"GET /file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(0.3)   # a slow reader at first: the server's socket buffer fills
            status, headers, body = client.response()
    finally:
        strace.terminate()
        strace.wait(10)
    assert status == 200 and headers["content-length"] == str(len(data))
    assert body == data
    calls = trace.read_text()
    assert "sendfile(" in calls, calls[-2000:]
    assert "EAGAIN" in calls, "the test never filled the socket; cannot tell the waiting works"


def test_blocking_http_client_calls_in_the_app_are_green(start_server):
    backend = start_server("pasteserve_paster", ini=ini(""))
    server = start_server("pasteserve_paster", ini=ini("worker_connections = 1000"))
    backend.wait_workers(1)
    (worker,) = server.wait_workers(1)
    count, seconds = 200, 1.0
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        try:
            with Client(server.port, timeout=30) as client:
                barrier.wait(30)
                results[i] = client.get(f"/fetch?port={backend.port}&path=/sleep%3Fseconds%3D{seconds}")
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier_passed = time.monotonic()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - barrier_passed
    failures = [r for r in results if not (isinstance(r, tuple) and r[0] == 200 and r[2] == b"slept")]
    assert not failures, failures[:5]
    # One after another would be 200 s; concurrent green requests take about one sleep.
    print(f"200 requests, each fetching a {seconds:g} s response: {elapsed:.2f} s")
    assert elapsed < 5 * seconds, elapsed
    assert "Traceback" not in server.log() + backend.log()
