"""Signals to the master of a real server: worker count, crashes, reload, upgrade, stop, log reopening.

Every test drives `pasteserve_paster` with an INI file, over 127.0.0.1, for each worker class.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.integration.load import Load
from tests.server import Client, alive, get, parent_pid, request, wait_gone, wait_new_workers, wait_until

APP = "use = call:tests.integration.hookmod:app_factory"


@pytest.fixture(params=["sync", "eventlet", "gthread"])
def worker_class(request) -> str:
    return request.param


def ini(options: str, worker_class: str = "sync") -> str:
    # "gthread" runs the sync worker with four app threads.
    threads = "threads = 4\n" if worker_class == "gthread" else ""
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\n{threads}{options}", APP)


def pid_of(port: int, path: str = "/pid") -> int:
    status, _, body = get(port, path)
    assert status == 200, body
    return int(body)


def wait_log(server, text: str, count: int = 1, timeout: float = 20.0) -> None:
    server.wait_for(lambda: server.log().count(text) >= count, timeout, f"{count} x {text!r} in the log")


# --- worker count -------------------------------------------------------------------------------

def test_ttin_adds_and_ttou_removes_a_worker_never_below_one(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 2", worker_class))
    first = server.wait_workers(2)
    server.signal(signal.SIGTTIN)
    three = server.wait_workers(3)
    assert set(first) < set(three)
    (newest,) = set(three) - set(first)
    server.signal(signal.SIGTTOU)
    # One of the two oldest retires.
    remaining = server.wait_workers(2)
    assert newest in remaining and set(remaining) < set(three)
    # The kernel merges a signal sent again before the first was received: send each after the
    # previous was handled.
    for handled in (2, 3, 4):
        server.signal(signal.SIGTTOU)
        wait_log(server, "Handling signal: ttou", handled)
    (last,) = server.wait_workers(1)
    assert pid_of(server.port) == last
    assert server.children() == [last]


def test_ttin_received_while_the_master_is_busy_counts_each_time(start_server):
    # Gunicorn's way: three TTINs the master receives are three more workers, even when the
    # last two wait in its queue while it handles the first (here its nworkers_changed hook is
    # slow). The kernel still merges signals sent before the master receives the first.
    hook = "nworkers_changed = tests.integration.hookmod:nworkers_changed_slowly"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\n{hook}"))
    server.wait_workers(1)
    server.signal(signal.SIGTTIN)
    wait_log(server, "Handling signal: ttin")   # the master is in the hook now, for 0.5 s
    for _ in range(2):
        server.signal(signal.SIGTTIN)
        time.sleep(0.05)
    server.wait_workers(4)
    wait_log(server, "Handling signal: ttin", 3)


def test_killed_worker_is_replaced_and_the_log_says_why(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 2", worker_class))
    victim, survivor = server.wait_workers(2)
    os.kill(victim, signal.SIGKILL)
    kids = wait_new_workers(server, [victim], 2)
    assert survivor in kids
    wait_log(server, f"Worker (pid {victim}) was killed by signal 9")
    assert get(server.port, "/pid")[0] == 200


def test_app_exception_is_a_500_and_the_worker_keeps_serving(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class))
    (worker,) = server.wait_workers(1)
    with Client(server.port) as client:
        status, _, body = client.get("/pid")
        assert (status, int(body)) == (200, worker)
        status, _, _ = client.get("/crash")
        assert status == 500
        # The same connection and the same process serve the next request.
        status, _, body = client.get("/pid")
        assert (status, int(body)) == (200, worker)
    assert pid_of(server.port) == worker
    wait_log(server, "RuntimeError: crash requested by the test")
    assert "Traceback (most recent call last)" in server.log()
    assert server.children() == [worker]


# --- reload (HUP) -------------------------------------------------------------------------------

def test_hup_under_load_replaces_every_worker_and_drops_nothing(start_server, worker_class, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 2", worker_class))
    ini_path = tmp_path / "app0.ini"
    workers = server.wait_workers(2)
    seen = set(workers)
    with Load(server.port, keepalive=3, fresh=3, duration=60) as load:
        load.wait_requests(50)
        for round_, count in enumerate((2, 3, 3)):
            if round_ == 1:
                # The reload reads the INI again: the new worker count takes effect.
                ini_path.write_text(ini("workers = 3", worker_class))
            server.signal(signal.SIGHUP)
            workers = wait_new_workers(server, seen, count)
            seen.update(workers)
            load.wait_requests(50)
    assert not load.failures, load.report()
    assert not load.stale, load.report()
    # Requests reached workers of every generation.
    assert len(set(load.pids)) >= 5, load.pids
    assert server.log().count("Handling signal: hup") == 3


def test_hup_during_a_response_keeps_its_keepalive_connection(start_server, worker_class, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (old,) = server.wait_workers(1)
    with Client(server.port) as client:
        client.send(b"GET /slow-body?seconds=2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_hook_event(server, hook_log, "body-start")
        # The head is out, promising keep-alive; the worker is told to retire while the body runs.
        server.signal(signal.SIGHUP)
        status, headers, body = client.response()
        assert (status, body) == (200, b"first %d" % old)
        assert headers.get("connection") != "close"
        # So the connection must still serve: the retiring worker answers what already arrived,
        # or hands the connection to its successor.
        status, _, body = client.get("/pid")
        assert status == 200


def test_hup_with_a_broken_ini_keeps_the_running_workers(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 2"))
    workers = server.wait_workers(2)
    (tmp_path / "app0.ini").write_text(ini("workers = many"))
    server.signal(signal.SIGHUP)
    wait_log(server, "Reload cancelled")
    assert "workers = many: expected a whole number" in server.log()
    # Signals after the cancelled reload are handled, and the original workers are all still there.
    server.signal(signal.SIGTTIN)
    kids = server.wait_workers(3)
    assert set(workers) < set(kids)
    assert pid_of(server.port) in kids


def test_hup_with_a_new_bind_listens_there_too(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 1"))
    server.wait_workers(1)
    path = tmp_path / "added.sock"
    # The TCP listener is kept (same spec, port 0 included), the unix one is new.
    (tmp_path / "app0.ini").write_text(ini("workers = 1").replace("bind = 127.0.0.1:0", f"bind = 127.0.0.1:0 unix:{path}"))
    server.signal(signal.SIGHUP)
    wait_log(server, f"Listening at: unix:{path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert pid_of(server.port) > 0   # the TCP listener still serves


# --- upgrade (USR2) -----------------------------------------------------------------------------

def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_usr2_then_term_old_master_under_load(start_server, worker_class, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 2\npidfile = {pidfile}", worker_class))
    old_workers = server.wait_workers(2)
    assert read_pid(pidfile) == server.pid
    new_master = 0
    try:
        with Load(server.port, keepalive=3, fresh=3, duration=60) as load:
            load.wait_requests(50)
            server.signal(signal.SIGUSR2)
            new_master = server.wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 20, "PIDFILE.2")
            assert parent_pid(new_master) == server.pid
            new_workers = server.wait_workers(2, pid=new_master)
            assert read_pid(pidfile) == server.pid
            # Both generations accept on the shared listener.
            server.wait_for(lambda: set(old_workers) & set(load.pids) and set(new_workers) & set(load.pids)
                            and set(new_workers) & {pid_of(server.port)}, 20,
                            "requests served by the old and the new master's workers")
            server.signal(signal.SIGTERM)
            assert server.wait_exit(30) == 0
            wait_until(lambda: read_pid(pidfile) == new_master and not Path(f"{pidfile}.2").exists(),
                       20, "the new master to take over the pidfile")
            load.wait_requests(100)
            assert set(new_workers) >= {pid_of(server.port) for _ in range(5)}
        assert not load.failures, load.report()
        assert alive(new_master)
    finally:
        if new_master and alive(new_master):
            os.kill(new_master, signal.SIGTERM)
            wait_gone(new_master, 30)
    assert "The old master" in server.log()


# --- stopping -----------------------------------------------------------------------------------

def slow_request(port: int, seconds: float, result: list) -> threading.Thread:
    def run():
        try:
            with Client(port, timeout=seconds + 20) as client:
                result.append(client.get(f"/sleep?seconds={seconds}"))
        except Exception as exc:
            result.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_hook_event(server, log: Path, event: str, count: int = 1, timeout: float = 20.0) -> None:
    server.wait_for(lambda: sum(e == event for e, _, _ in read_log(log)) >= count, timeout,
                    f"{count} x {event} in {log}")


def test_term_lets_the_request_in_flight_finish(start_server, worker_class, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    result: list = []
    thread = slow_request(server.port, 2, result)
    wait_hook_event(server, hook_log, "sleep-start")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    thread.join(10)
    status, _, body = result[0]
    assert (status, int(body)) == (200, worker)


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_a_worker_told_to_stop_finishes_its_request_and_takes_no_new_one(start_server, worker_class, tmp_path):
    # What the old master's workers go through after USR2 + TERM: connections that arrive while
    # they stop belong to whoever accepts next on the shared listener, here the replacement worker.
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (busy,) = server.wait_workers(1)
    result: list = []
    thread = slow_request(server.port, 2, result)
    wait_hook_event(server, hook_log, "sleep-start")
    os.kill(busy, signal.SIGTERM)
    # The stopping worker is the only one accepting: these wait in the listen queue for its successor.
    answers = []
    for _ in range(3):
        try:
            answers.append(request(server.port, b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   timeout=20))
        except OSError as exc:
            answers.append(exc)
    thread.join(10)
    status, _, body = result[0]
    assert (status, int(body)) == (200, busy)
    (successor,) = server.wait_workers(1)
    seen = [(a[0], int(a[2])) if isinstance(a, tuple) else a for a in answers]
    if worker_class == "sync":
        assert seen == [(200, successor)] * 3
    else:
        # A loop free when the signal comes (eventlet's hub, gthread's selector thread) stops at
        # once and answers what is queued on the listener then (Worker.release_listeners), or the
        # hub hands the green acceptor a connection in the same turn as the signal: the stopping
        # worker serves those itself. Either way nothing is dropped.
        assert all(isinstance(a, tuple) and a[0] == 200 and a[1] in (busy, successor) for a in seen), seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_stop_at_once(start_server, worker_class, tmp_path, sig):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1", worker_class),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    result: list = []
    thread = slow_request(server.port, 60, result)
    wait_hook_event(server, hook_log, "sleep-start")
    started = time.monotonic()
    server.signal(sig)
    server.wait_exit(20)
    # A correctness bound, not a benchmark: the 60 s request was not waited for.
    assert time.monotonic() - started < 10
    assert not alive(worker)
    thread.join(10)
    assert isinstance(result[0], Exception), result


# --- max_requests ---------------------------------------------------------------------------------

def test_max_requests_rotates_workers_without_errors(start_server, worker_class):
    server = start_server("pasteserve_paster",
                          ini=ini("workers = 2\nmax_requests = 20\nmax_requests_jitter = 5", worker_class))
    server.wait_workers(2)
    with Load(server.port, keepalive=3, fresh=3, duration=60, max_requests=300) as load:
        load.wait_done(60)
    assert not load.failures, load.report()
    assert not load.stale, load.report()
    # A worker retires after 20 to 25 requests, plus the few its connections already sent meanwhile.
    assert max(load.pids.values()) < 50, load.pids
    assert len(load.pids) >= 300 // 50 + 1, load.pids
    assert "reached max_requests" in server.log()


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_max_requests_counts_requests_on_connections_that_close(start_server, worker_class):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nmax_requests = 5", worker_class))
    server.wait_workers(1)
    served = Counter(pid_of(server.port) for _ in range(30))
    # Five requests each (one more at most, if accepted in the instant the worker retires).
    assert len(served) >= 5 and max(served.values()) <= 6, served


# --- log files (USR1) -----------------------------------------------------------------------------

def test_usr1_reopens_the_log_files(start_server, worker_class, tmp_path):
    errorlog, accesslog = tmp_path / "error.log", tmp_path / "access.log"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 2\nerrorlog = {errorlog}\n"
                                                       f"accesslog = {accesslog}", worker_class),
                          expect_listening=False)
    server.wait_for(lambda: errorlog.exists() and "Listening at" in errorlog.read_text(), 20, "the error log")
    server.addresses = [errorlog.read_text().split("Listening at: ")[1].split()[0]]
    server.wait_workers(2)
    assert get(server.port, "/pid")[0] == 200
    server.wait_for(lambda: accesslog.exists() and "GET /pid" in accesslog.read_text(), 10, "an access line")
    errorlog.rename(tmp_path / "error.log.1")
    accesslog.rename(tmp_path / "access.log.1")
    server.signal(signal.SIGUSR1)

    # Workers reopen when the master passes USR1 on: keep asking until the new files fill.
    def new_access_line():
        get(server.port, "/hello")
        return accesslog.exists() and "GET /hello" in accesslog.read_text()
    server.wait_for(new_access_line, 20, "an access line in the new access log")

    def new_traceback():
        get(server.port, "/crash")
        return errorlog.exists() and "crash requested by the test" in errorlog.read_text()
    server.wait_for(new_traceback, 20, "a worker's traceback in the new error log")
    # The master writes there too.
    server.signal(signal.SIGTTIN)
    server.wait_for(lambda: "Booting worker" in errorlog.read_text(), 20, "the master's line in the new error log")
