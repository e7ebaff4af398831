"""StatsD metrics of a real server, received on real datagram sockets (UDP and unix), both worker classes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import BIN, Client, get

APP = "use = call:tests.integration.hookmod:app_factory"


@pytest.fixture(params=["sync", "eventlet"])
def worker_class(request) -> str:
    return request.param


class Receiver:
    """A statsd server's end: collects metric lines from datagrams."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.1)
        self.lines: list[str] = []

    def wait_for(self, predicate, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for metrics; got {self.lines}")
            try:
                self.lines += self.sock.recv(65536).decode().split("\n")
            except socket.timeout:
                pass
        return self.lines


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield Receiver(sock)
    sock.close()


def has(*wanted: str):
    return lambda lines: all(w in lines for w in wanted)


def test_gunicorn_names_and_types_with_prefix_and_tags(start_server, udp_receiver, worker_class):
    port = udp_receiver.sock.getsockname()[1]
    server = start_server("pasteserve_paster", ini=ini_text(
        f"bind = 127.0.0.1:0\nworkers = 2\nworker_class = {worker_class}\n"
        f"statsd_host = 127.0.0.1:{port}\nstatsd_prefix = myapp\ndogstatsd_tags = env:test,team:ops", APP))
    server.wait_workers(2)
    tag = "|#env:test,team:ops"
    udp_receiver.wait_for(has(f"myapp.gunicorn.workers:2|g{tag}"))
    assert get(server.port, "/hello")[0] == 200
    assert get(server.port, "/no-such-app")[0] == 404
    assert get(server.port, "/crash")[0] == 500
    lines = udp_receiver.wait_for(has(
        f"myapp.gunicorn.request.status.200:1|c{tag}", f"myapp.gunicorn.request.status.404:1|c{tag}",
        f"myapp.gunicorn.request.status.500:1|c{tag}", f"myapp.gunicorn.log.exception:1|c{tag}"))
    assert lines.count(f"myapp.gunicorn.requests:1|c{tag}") == 3
    durations = [line for line in lines if line.startswith("myapp.gunicorn.request.duration:")]
    assert len(durations) == 3
    for line in durations:
        value, _, rest = line.partition(":")[2].partition("|")
        assert float(value) >= 0 and rest == f"ms{tag}"


def test_worker_gauge_follows_ttin_and_log_counters_count_warnings(start_server, udp_receiver):
    port = udp_receiver.sock.getsockname()[1]
    server = start_server("pasteserve_paster", ini=ini_text(
        f"bind = 127.0.0.1:0\nworkers = 1\nstatsd_host = 127.0.0.1:{port}\nstatsd_namespace =", APP))
    (victim,) = server.wait_workers(1)
    udp_receiver.wait_for(has("workers:1|g"))
    server.signal(signal.SIGTTIN)
    udp_receiver.wait_for(has("workers:2|g"))
    # A killed worker is a warning in the master's log: counted, without the namespace segment.
    os.kill(victim, signal.SIGKILL)
    udp_receiver.wait_for(has("log.warning:1|c"))


def test_backlog_histogram_counts_connections_waiting_to_be_accepted(start_server, udp_receiver, tmp_path):
    # Gunicorn's enable_backlog_metric: the sync worker is inside a slow request, so the next
    # three connections wait in the listener's accept queue.
    port = udp_receiver.sock.getsockname()[1]
    server = start_server("pasteserve", args=["-w", "1", "-b", "127.0.0.1:0", "--statsd-host", f"127.0.0.1:{port}",
                                              "--enable-backlog-metric", "tests.integration.hookmod:app"],
                          env={HOOK_LOG_ENV: str(tmp_path / "hooks.log")})
    server.wait_workers(1)
    udp_receiver.wait_for(has("gunicorn.backlog:0|h"))
    slow = Client(server.port)
    waiting = []
    try:
        slow.send(b"GET /sleep?seconds=4 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for(lambda: any(e[0] == "sleep-start" for e in read_log(tmp_path / "hooks.log")), 10,
                        "the slow request")
        waiting = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
        udp_receiver.wait_for(has("gunicorn.backlog:3|h"), timeout=3.0)
        assert slow.response()[0] == 200
    finally:
        slow.close()
        for sock in waiting:
            sock.close()


def test_unix_datagram_socket(start_server, tmp_path, worker_class):
    path = str(tmp_path / "statsd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        receiver = Receiver(sock)
        server = start_server("pasteserve_paster", ini=ini_text(
            f"bind = 127.0.0.1:0\nworker_class = {worker_class}\nstatsd_host = unix:{path}\n"
            "statsd_prefix = web.", APP))
        server.wait_workers(1)
        assert get(server.port, "/hello")[0] == 200
        receiver.wait_for(has("web.gunicorn.requests:1|c", "web.gunicorn.request.status.200:1|c",
                              "web.gunicorn.workers:1|g"))
    finally:
        sock.close()


def test_no_listener_never_fails_a_request(start_server, tmp_path, worker_class):
    # Nothing reads this unix path (every send fails) and the UDP case has no receiver either.
    for target in (f"unix:{tmp_path / 'nobody.sock'}", "127.0.0.1:9"):
        server = start_server("pasteserve_paster", ini=ini_text(
            f"bind = 127.0.0.1:0\nworker_class = {worker_class}\nstatsd_host = {target}", APP))
        server.wait_workers(1)
        for _ in range(20):
            assert get(server.port, "/hello")[0] == 200
        server.stop()
        assert "Traceback" not in server.log()


def test_a_receiver_that_never_reads_costs_metrics_not_requests(start_server, tmp_path, worker_class):
    # A unix datagram queue holds a handful of datagrams (net.unix.max_dgram_qlen): a blocking
    # send would hang the worker after that. Ours drops the metric and counts it.
    path = str(tmp_path / "stuck-statsd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    pidfile = tmp_path / "app.pid"
    try:
        server = start_server("pasteserve_paster", ini=ini_text(
            f"bind = 127.0.0.1:0\nworker_class = {worker_class}\nstatsd_host = unix:{path}\npidfile = {pidfile}",
            APP))
        server.wait_workers(1)
        for _ in range(40):
            assert get(server.port, "/hello")[0] == 200

        def worker_status():
            done = subprocess.run([str(BIN / "pasteserve"), "status", str(pidfile), "--json"],
                                  capture_output=True, text=True, timeout=10)
            return json.loads(done.stdout)["workers"][0]
        # The worker records a request just after its answer left.
        worker = server.wait_for(lambda: (w := worker_status())["requests"] == 40 and w, 10, "40 requests counted")
        assert worker["metrics_dropped"] > 0
    finally:
        sock.close()


def test_bad_statsd_host_is_a_config_error(start_server):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nstatsd_host = localhost:notaport",
                                                           APP), expect_listening=False)
    assert server.wait_exit(20) == 2
    assert "statsd_host = localhost:notaport" in server.log()
    assert "port must be a number" in server.log()
