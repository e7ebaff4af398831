"""The sync and gthread workers keep client sockets non-blocking for good.

A keep-alive request costs its recv and its send and nothing more (no switching the socket into
timeout mode and back, no poll before every call); a write that meets a full socket buffer, a body
that arrives in pieces, and a file sent with sendfile wait for the client instead of failing.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.proxies import certificate
from tests.server import Client, traced

APP = "use = call:tests.integration.edges_app:app_factory"
BIG = 8 << 20   # more than the kernel's socket buffers on both sides: sends meet EAGAIN
WORKERS = {"sync": "workers = 1", "gthread": "workers = 1\nworker_class = gthread\nthreads = 2"}


def ini(worker: str, options: str = "") -> str:
    return ini_text(f"bind = 127.0.0.1:0\n{WORKERS[worker]}\n{options}", APP)


class Trace:
    """strace on one worker (all its threads) for the calls named, while the block runs."""

    def __init__(self, server, worker: int, path: Path, calls: str) -> None:
        if shutil.which("strace") is None:
            pytest.skip("strace is not installed")
        self.server, self.worker, self.path, self.calls = server, worker, path, calls

    def __enter__(self) -> "Trace":
        self.proc = subprocess.Popen(["strace", "-f", "-qq", "-e", f"trace={self.calls}", "-o", str(self.path),
                                      "-p", str(self.worker)], stderr=subprocess.PIPE)
        self.server.wait_for(lambda: traced(self.worker), 10, "strace to attach")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def count(self, name: str) -> int:
        return sum(1 for line in self.path.read_text().splitlines() if f" {name}(" in line or line.startswith(f"{name}("))

    def text(self) -> str:
        return self.path.read_text()


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_keep_alive_request_costs_no_mode_switch_or_poll(start_server, tmp_path, worker):
    server = start_server("pasteserve_paster", ini=ini(worker))
    (pid,) = server.wait_workers(1)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()   # the connection exists before the trace starts
        with Trace(server, pid, tmp_path / "trace.txt", "ioctl,poll,recvfrom,sendto") as trace:
            for _ in range(100):
                conn.request("GET", "/")
                response = conn.getresponse()
                assert response.status == 200 and response.read() == b"edges"
    finally:
        conn.close()
    assert trace.count("sendto") >= 100, trace.text()[-2000:]
    # Before: two ioctls (timeout mode on and off) and a poll before the send, per request.
    assert trace.count("ioctl") + trace.count("poll") < 10, trace.text()[-2000:]


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_large_answer_to_a_slow_reader_arrives_whole(start_server, tmp_path, worker):
    server = start_server("pasteserve_paster", ini=ini(worker))
    (pid,) = server.wait_workers(1)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        with Trace(server, pid, tmp_path / "trace.txt", "sendto,poll") as trace:
            conn.request("GET", f"/bytes?size={BIG}")
            time.sleep(0.5)   # not reading yet: the server's send buffer fills
            response = conn.getresponse()
            body = response.read()
            # The connection is still good for the next request.
            conn.request("GET", "/")
            after = conn.getresponse()
            assert after.status == 200 and after.read() == b"edges"
    finally:
        conn.close()
    assert response.status == 200 and body == b"x" * BIG
    assert "POLLOUT" in trace.text(), "the worker never waited for the client: the test proves nothing"


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_large_answer_over_tls_to_a_slow_reader_arrives_whole(start_server, tmp_path, worker):
    cert, key = certificate(tmp_path)
    server = start_server("pasteserve_paster", ini=ini(worker, f"certfile = {cert}\nkeyfile = {key}"))
    server.wait_workers(1)
    context = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context)
    try:
        for _ in range(2):   # the second on the same connection: nothing was left half-written
            conn.request("GET", f"/bytes?size={BIG}")
            time.sleep(0.5)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and body == b"x" * BIG
    finally:
        conn.close()


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_file_wrapper_is_sent_with_sendfile_waiting_for_a_slow_reader(start_server, tmp_path, worker):
    data = os.urandom(1 << 20) * 8
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    server = start_server("pasteserve_paster", ini=ini(worker))
    (pid,) = server.wait_workers(1)
    with Trace(server, pid, tmp_path / "trace.txt", "sendfile,poll") as trace:
        with Client(server.port, timeout=10) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            client.send(f"GET /file?path={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            time.sleep(0.3)
            status, headers, body = client.response()
    assert status == 200 and headers["content-length"] == str(len(data))
    assert body == data
    # Not copied through the socket in blocks; and the file did not fit at once.
    assert trace.count("sendfile") > 1, trace.text()[-2000:]
    assert "POLLOUT" in trace.text(), "the worker never waited for the client: the test proves nothing"


@pytest.mark.parametrize("worker", sorted(WORKERS))
@pytest.mark.parametrize("timeout", ["0", "30"])
def test_body_arriving_in_pieces_is_read_whole(start_server, worker, timeout):
    # timeout = 0: no total bound on the body, each read waits up to the default io timeout.
    server = start_server("pasteserve_paster", ini=ini(worker, f"timeout = {timeout}"))
    server.wait_workers(1)
    with Client(server.port, timeout=10) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(3):
            time.sleep(0.2)
            client.send(b"y" * 1000)
        status, _, body = client.response()
        assert (status, body) == (200, b"3000")
        assert client.get("/")[0] == 200
