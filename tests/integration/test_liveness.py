"""Liveness: a worker stuck on the CPU is aborted and replaced; a worker that waits cooperatively is not."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import Client, get, wait_gone, wait_new_workers

APP = "use = call:tests.integration.hookmod:app_factory"
HOOKS = "worker_abort = tests.integration.hookmod:worker_abort"


def start(start_server, tmp_path, worker_class: str):
    hook_log = tmp_path / "hooks.log"
    threads = "threads = 4\n" if worker_class == "gthread" else ""
    ini = ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\n{threads}workers = 1\ntimeout = 2\n{HOOKS}", APP)
    server = start_server("pasteserve_paster", ini=ini, env={HOOK_LOG_ENV: str(hook_log)})
    return server, hook_log


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_worker_stuck_on_the_cpu_is_aborted_and_replaced(start_server, tmp_path, worker_class):
    server, hook_log = start(start_server, tmp_path, worker_class)
    (stuck,) = server.wait_workers(1)
    with Client(server.port, timeout=30) as client:
        client.send(b"GET /spin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # The client of the stuck request gets no answer; its connection closes with the worker.
        assert client.closed_by_peer(timeout=30)
    events = read_log(hook_log)
    assert ("spin-start", stuck, "") in events
    assert ("worker_abort", stuck, str(stuck)) in events
    assert f"WORKER TIMEOUT (pid {stuck})" in server.log()
    (fresh,) = wait_new_workers(server, [stuck], 1)
    status, _, body = get(server.port, "/pid")
    assert (status, int(body)) == (200, fresh)


def test_eventlet_worker_sleeping_cooperatively_past_timeout_is_not_killed(start_server, tmp_path):
    server, hook_log = start(start_server, tmp_path, "eventlet")
    (worker,) = server.wait_workers(1)
    with Client(server.port, timeout=30) as client:
        # Twice the timeout: the hub keeps beating while the request sleeps.
        status, _, body = client.get("/sleep?seconds=4")
        assert (status, int(body)) == (200, worker)
        assert int(client.get("/pid")[2]) == worker
    assert server.children() == [worker]
    assert "WORKER TIMEOUT" not in server.log()
    assert not [e for e in read_log(hook_log) if e[0] == "worker_abort"]


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_workers_exit_by_themselves_when_the_master_dies(start_server, worker_class):
    server = start_server("pasteserve_paster",
                          ini=ini_text(f"bind = 127.0.0.1:0\nworkers = 2\nworker_class = {worker_class}\nthreads = "
                                           f"{4 if worker_class == 'gthread' else 1}", APP))
    workers = server.wait_workers(2)
    os.kill(server.pid, signal.SIGKILL)   # no chance to stop them
    for pid in workers:
        wait_gone(pid, 10)
