"""The eventlet worker: many concurrent requests and idle connections in one process, graceful stop.

The time bounds are correctness bounds: requests that run one after another would take 200 s,
not the 3 s allowed.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import Client, connect, get, read_response

APP = "use = call:tests.integration.hookmod:app_factory"
IDLE_CONNECTIONS = 2000


def ini(options: str) -> str:
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = eventlet\nworkers = 1\n{options}", APP)


def concurrent_gets(port: int, path: str, count: int, timeout: float = 30.0) -> list:
    """`count` GETs from as many threads, started together; each result or its exception."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        try:
            with Client(port, timeout=timeout) as client:
                barrier.wait(timeout)
                results[i] = client.get(path)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    return results


def test_200_sleeping_requests_run_concurrently_in_one_worker(start_server):
    server = start_server("pasteserve_paster", ini=ini(""))
    (worker,) = server.wait_workers(1)
    started = time.monotonic()
    results = concurrent_gets(server.port, "/sleep?seconds=1", 200)
    elapsed = time.monotonic() - started
    failures = [r for r in results if not (isinstance(r, tuple) and r[0] == 200 and int(r[2]) == worker)]
    assert not failures, failures[:5]
    assert elapsed < 3.0, f"200 requests of 1 s took {elapsed:.2f}s in one worker"


@pytest.fixture
def many_files():
    """Enough file descriptors for the idle connections, here and in the server (it inherits them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * IDLE_CONNECTIONS + 500
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_fds(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return 0


def test_2000_idle_connections_do_not_keep_other_clients_waiting(start_server, many_files):
    server = start_server("pasteserve_paster", ini=ini("worker_connections = 4000\nheader_timeout = 60"))
    (worker,) = server.wait_workers(1)
    idle = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(connect(server.port, timeout=30))
        server.wait_for(lambda: open_fds(worker) >= IDLE_CONNECTIONS, 30, "the worker to accept every connection")
        for _ in range(5):
            started = time.monotonic()
            status, _, body = get(server.port, "/pid")
            assert (status, int(body)) == (200, worker)
            assert time.monotonic() - started < 1.0
        # Every idle connection is still there and answers.
        for sock in idle:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in idle:
            with sock.makefile("rb") as f:
                status, _, body = read_response(f)
            assert (status, int(body)) == (200, worker)
    finally:
        for sock in idle:
            sock.close()


def test_waiting_connections_end_at_their_deadlines(start_server):
    # Deadlines are swept (SWEEP_INTERVAL), not timed per wait: idle after a request (keepalive),
    # silent since connecting (header_timeout), a head under way (408), each ends on time.
    server = start_server("pasteserve_paster", ini=ini("keepalive = 1\nheader_timeout = 2"))
    server.wait_workers(1)
    with Client(server.port) as idle, Client(server.port) as silent, Client(server.port) as slow:
        assert idle.get("/pid")[0] == 200
        started = time.monotonic()
        slow.send(b"GET /pid HTTP/1.1\r\n")
        assert idle.closed_by_peer(timeout=10)
        idle_for = time.monotonic() - started
        assert slow.response()[0] == 408
        slow_for = time.monotonic() - started
        assert silent.closed_by_peer(timeout=10)
        silent_for = time.monotonic() - started
    assert 0.9 < idle_for < 2.0, idle_for
    assert 1.9 < slow_for < 3.0, slow_for
    assert 1.9 < silent_for < 3.0, silent_for
    # The sweep ended only what was due: the worker serves on.
    assert get(server.port, "/pid")[0] == 200


def test_term_lets_every_sleeping_request_finish(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini(""), env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    results: list = []
    thread = threading.Thread(target=lambda: results.extend(concurrent_gets(server.port, "/sleep?seconds=2", 20)),
                              daemon=True)
    thread.start()
    server.wait_for(lambda: len([e for e in read_log(hook_log) if e[0] == "sleep-start"]) == 20, 20,
                    "20 requests in flight")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    thread.join(30)
    assert [(r[0], int(r[2])) if isinstance(r, tuple) else r for r in results] == [(200, worker)] * 20
