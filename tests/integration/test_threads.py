"""`threads = N`: the sync worker with a pool of app threads (Gunicorn's gthread), against real servers.

Time bounds are correctness bounds with wide margins (requests ran side by side, or they did not),
never speed assertions. The sync worker's behaviour with threads (signals and max_requests under
load, keep-alive, liveness, HTTP, hostile clients, TLS, unix sockets) is also covered by the
suites parametrized over "gthread" (test_signals, test_keepalive, test_liveness, test_http_live,
test_hostile, test_process) and by the Pyramid test with a waitress-style INI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.integration.load import Load
from tests.integration.test_keepalive import spread_connections, two_workers
from tests.integration.test_nonblocking_io import Trace
from tests.server import BIN, Client, get, wait_new_workers

APP = "use = call:tests.integration.hookmod:app_factory"


def ini(options: str) -> str:
    return ini_text(f"bind = 127.0.0.1:0\n{options}", APP)


def concurrently(port: int, paths: list[str], timeout: float = 20.0) -> tuple[float, list]:
    """GET every path at once, each on its own connection; (seconds until the last answer, answers)."""
    answers: list = [None] * len(paths)
    barrier = threading.Barrier(len(paths))

    def fetch(i: int) -> None:
        try:
            with Client(port, timeout) as client:
                barrier.wait(timeout)
                answers[i] = client.get(paths[i])
        except Exception as exc:
            answers[i] = exc

    threads = [threading.Thread(target=fetch, args=(i,), daemon=True) for i in range(len(paths))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return time.monotonic() - started, answers


def test_eight_half_second_requests_on_four_threads_take_two_rounds(start_server):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 4"))
    (worker,) = server.wait_workers(1)
    elapsed, answers = concurrently(server.port, ["/sleep?seconds=0.5"] * 8)
    assert [(status, int(body)) for status, _, body in answers] == [(200, worker)] * 8, answers
    # Four at a time: two rounds of 0.5 s. One at a time would take 4 s; eight at a time 0.5 s.
    assert 0.9 < elapsed < 1.9, elapsed
    assert "Using worker: gthread (4 threads)" in server.log()


def test_each_thread_has_its_own_threading_local_and_runs_the_hooks_of_its_requests(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    hooks = ("pre_request = tests.integration.hookmod:pre_request_thread\n"
             "post_request = tests.integration.hookmod:post_request_thread")
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\nthreads = 4\n{hooks}"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    server.wait_workers(1)
    _, answers = concurrently(server.port, ["/thread?seconds=0.5"] * 4)
    seen = [json.loads(body) for status, _, body in answers]
    assert all(status == 200 for status, _, _ in answers), answers
    assert all(s["multithread"] is True for s in seen), seen
    # Four requests side by side: four threads, each with its own local value, untouched by the others.
    names = {s["thread"] for s in seen}
    assert len(names) == 4, seen
    assert len({s["local"][0] for s in seen}) == 4 and all(s["local"][0] == s["local"][1] for s in seen), seen
    # A thread keeps its local across requests: later requests find one of the four values.
    later = [json.loads(get(server.port, "/thread")[2]) for _ in range(4)]
    assert all(s["thread"] in names and s["local"][0] in {x["local"][0] for x in seen} for s in later), later
    # The hooks of each request ran in the thread that ran the app.
    server.wait_for(lambda: len(read_log(hook_log)) >= 16, 10, "the hook lines")
    events = read_log(hook_log)
    assert {detail for event, _, detail in events if event == "pre_request_thread"} <= names
    assert {detail for event, _, detail in events if event == "post_request_thread"} <= names
    assert sorted(d for e, _, d in events if e == "pre_request_thread") == \
        sorted([s["thread"] for s in seen + later])


def test_threads_that_finish_their_requests_keep_the_worker_alive_past_timeout(start_server):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 2\ntimeout = 2"))
    (worker,) = server.wait_workers(1)
    # Two threads busy for 4 s in all, in requests of 0.8 s each: progress all along.
    _, answers = concurrently(server.port, ["/sleep?seconds=0.8"] * 2)
    for _ in range(4):
        _, more = concurrently(server.port, ["/sleep?seconds=0.8"] * 2)
        answers += more
    assert [(status, int(body)) for status, _, body in answers] == [(200, worker)] * 10, answers
    assert server.children() == [worker]
    assert "WORKER TIMEOUT" not in server.log()


def test_a_thread_stuck_on_the_cpu_gets_the_worker_replaced_and_the_log_names_its_request(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 2\ntimeout = 2"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (stuck,) = server.wait_workers(1)
    with Client(server.port, timeout=30) as spinning:
        spinning.send(b"GET /spin?n=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.wait_for(lambda: any(e[0] == "spin-start" for e in read_log(hook_log)), 10, "the spinning request")
        # The other thread still serves meanwhile.
        status, _, body = get(server.port, "/pid")
        assert (status, int(body)) == (200, stuck)
        assert spinning.closed_by_peer(timeout=30)
    assert f"WORKER TIMEOUT (pid {stuck})" in server.log()
    server.wait_for(lambda: "ran GET /spin?n=1 from 127.0.0.1" in server.log(), 10, "the stuck request in the log")
    assert "(stuck past timeout)" in server.log()
    (fresh,) = wait_new_workers(server, [stuck], 1)
    status, _, body = get(server.port, "/pid")
    assert (status, int(body)) == (200, fresh)


def test_term_lets_every_thread_finish_its_request(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 4"), env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    result: list = []
    runner = threading.Thread(target=lambda: result.append(concurrently(server.port, ["/sleep?seconds=1.5"] * 4)),
                              daemon=True)
    runner.start()
    server.wait_for(lambda: sum(e[0] == "sleep-start" for e in read_log(hook_log)) == 4, 10, "four requests")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    runner.join(10)
    _, answers = result[0]
    assert [(status, int(body)) for status, _, body in answers] == [(200, worker)] * 4, answers


def test_waitress_style_ini_with_threads_serves_concurrently(start_server):
    # What a Pyramid user's waitress section becomes: `listen` and `threads` kept as they were.
    server = start_server("pasteserve_paster", ini=ini_text("listen = 127.0.0.1:0\nthreads = 4", APP))
    (worker,) = server.wait_workers(1)
    elapsed, answers = concurrently(server.port, ["/sleep?seconds=0.5"] * 4)
    assert [(status, int(body)) for status, _, body in answers] == [(200, worker)] * 4, answers
    # One process, four requests side by side (one at a time would take 2 s).
    assert elapsed < 1.4, elapsed


@pytest.mark.parametrize("grown", [False, True], ids=["workers-2", "ttin-to-2"])
def test_a_busy_workers_connections_are_served_by_a_sibling_with_a_free_thread(start_server, tmp_path, grown):
    hook_log = tmp_path / "hooks.log"
    server = two_workers(start_server, "threads = 2\nkeepalive = 30", grown, hook_log)
    by_pid = spread_connections(server.port, 4)
    clients = [c for held in by_pid.values() for c in held]
    try:
        assert sorted(len(held) for held in by_pid.values()) == [4, 4], "connections not spread over both workers"
        (busy, busy_conns), (idle, _) = by_pid.items()
        slow, others = busy_conns[:2], [c for c in clients if c not in busy_conns[:2]]
        for client in slow:   # both threads of `busy`
            client.send(b"GET /sleep?seconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.wait_for(lambda: sum(e[0] == "sleep-start" for e in read_log(hook_log)) == 2, 10, "the slow requests")
        sent = time.monotonic()
        for client in others:
            client.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
        waits = []
        for client in others:
            status, _, body = client.response()
            waits.append((round(time.monotonic() - sent, 3), status, int(body)))
        # Two of the six wait behind the slow requests unless they move to the other worker.
        assert all(wait < 1.0 and status == 200 and pid == idle for wait, status, pid in waits), waits
        for client in slow:
            status, _, body = client.response()
            assert (status, int(body)) == (200, busy)
        # The busy worker closed its descriptors of what it lent; the sibling's keep the sockets
        # alive, so a registration left in an epoll would outlive them (and fire for a new
        # connection given the same number).
        assert stale_registrations(busy) == [], "the lender's epoll still watches what it lent"
    finally:
        for client in clients:
            client.close()


def test_a_worker_whose_threads_are_all_busy_does_not_query_the_hand_off_socket_each_turn(start_server, tmp_path):
    # Only what it lent (or is about to lend) makes it look at the hand-off socket's queue.
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 2\nthreads = 2\nkeepalive = 30"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    server.wait_workers(2)
    by_pid = spread_connections(server.port, 2)
    clients = [c for held in by_pid.values() for c in held]
    try:
        assert sorted(len(held) for held in by_pid.values()) == [2, 2], "connections not spread over both workers"
        busy, slow = next(iter(by_pid.items()))
        for client in slow:   # both threads of `busy`
            client.send(b"GET /sleep?seconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.wait_for(lambda: sum(e[0] == "sleep-start" for e in read_log(hook_log)) == 2, 10, "the slow requests")
        with Trace(server, busy, tmp_path / "trace.txt", "ioctl,epoll_wait") as trace:
            for _ in range(20):   # each wakes its selector thread for a turn (USR1 reopens the logs)
                os.kill(busy, signal.SIGUSR1)
                time.sleep(0.02)
        for client in slow:
            assert client.response()[0] == 200
    finally:
        for client in clients:
            client.close()
    assert trace.count("epoll_wait") >= 10, trace.text()[-2000:]
    # Before: one ioctl (SIOCOUTQ) per turn.
    assert trace.count("ioctl") == 0, trace.text()[-2000:]


def test_threads_with_the_eventlet_worker_are_refused(tmp_path):
    path = tmp_path / "app.ini"
    path.write_text(ini("worker_class = eventlet\nthreads = 4"))
    run = subprocess.run([str(BIN / "pasteserve_paster"), str(path)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run
    assert f"file {path}, section [server:main]" in run.stderr
    assert "threads = 4: the eventlet worker has no thread pool" in run.stderr
    assert "worker_class = gthread" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([str(BIN / "pasteserve"), "-k", "eventlet", "--threads", "2", "tests.apps:router"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2, run
    assert "command line" in run.stderr and "threads = 2: the eventlet worker has no thread pool" in run.stderr


def stale_registrations(pid: int) -> list[str]:
    """What the epoll instances of process `pid` watch that is not (any more) its descriptor.

    /proc/PID/fdinfo of an epoll lists each registration's descriptor number and inode.
    """
    stale = []
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{name}") as info:
                lines = [line.split() for line in info if line.startswith("tfd:")]
        except OSError:
            continue   # closed meanwhile
        for fields in lines:
            tfd, ino = fields[1], int(next(f for f in fields if f.startswith("ino:"))[4:], 16)
            try:
                held = os.stat(f"/proc/{pid}/fd/{tfd}").st_ino
            except OSError:
                held = None
            if held != ino:
                stale.append(f"epoll {name} watches descriptor {tfd} (inode {ino:x}, now {held})")
    return stale


def socket_count(pid: int) -> int:
    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{name}").startswith("socket:")
        except OSError:
            pass   # closed meanwhile
    return count


def test_worker_connections_bounds_queued_connections_too(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 2\nworker_connections = 4"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    idle_sockets = socket_count(worker)   # listener and hand-off pair
    result: list = []
    runner = threading.Thread(target=lambda: result.append(concurrently(server.port, ["/sleep?seconds=0.5"] * 10)),
                              daemon=True)
    runner.start()
    server.wait_for(lambda: sum(e[0] == "sleep-start" for e in read_log(hook_log)) >= 2, 10, "two busy threads")
    # Over a second (time enough to accept all ten if nothing held them back): two served, two
    # queued; the others wait in the listen queue, not in the worker.
    held = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        held.append(socket_count(worker) - idle_sockets)
        time.sleep(0.02)
    runner.join(30)
    _, answers = result[0]
    assert [(status, int(body)) for status, _, body in answers] == [(200, worker)] * 10, answers
    assert max(held) == 4, held


def test_hup_and_max_requests_with_every_thread_busy_drop_nothing(start_server):
    # More clients than threads, on requests that take a while: queues, lending between the two
    # workers, retiring workers draining busy threads and handing their idle connections on.
    server = start_server("pasteserve_paster", ini=ini("workers = 2\nthreads = 2\nmax_requests = 60\n"
                                                       "max_requests_jitter = 20"))
    workers = server.wait_workers(2)
    with Load(server.port, keepalive=6, fresh=3, path="/sleep?seconds=0.05", duration=60) as load:
        load.wait_requests(40)
        server.signal(signal.SIGHUP)
        wait_new_workers(server, workers, 2)
        load.wait_requests(150)
    assert not load.failures, load.report()
    assert not load.stale, load.report()
    assert len(load.pids) >= 4, load.pids   # the reload and max_requests both replaced workers
    assert "reached max_requests" in server.log()


def test_a_late_arrival_waits_its_turn_not_behind_every_busy_connection(start_server):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nthreads = 2"))
    server.wait_workers(1)
    stop = threading.Event()
    hogged: list = []

    def hog() -> None:
        # Keeps a thread busy: the next request leaves as soon as the previous answer is in.
        with Client(server.port, timeout=20) as client:
            while not stop.is_set():
                hogged.append(client.get("/sleep?seconds=0.3")[0])

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(3)]
    for thread in hogs:
        thread.start()
    try:
        server.wait_for(lambda: len(hogged) >= 4, 10, "the busy clients to be served")
        waits = []
        for _ in range(3):
            started = time.monotonic()
            status, _, _ = get(server.port, "/pid")
            waits.append((round(time.monotonic() - started, 3), status))
    finally:
        stop.set()
        for thread in hogs:
            thread.join(10)
    # Three clients on two threads always have a request waiting; a newcomer queues behind at most
    # the ones already waiting (about 0.3 s), never behind all of them forever.
    assert all(status == 200 and wait < 1.5 for wait, status in waits), waits
    assert set(hogged) == {200}


def test_gunicorn_gthread_name_runs_one_app_thread_by_default(start_server):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nworker_class = gthread"))
    (worker,) = server.wait_workers(1)
    assert "Using worker: gthread (1 thread)" in server.log()
    seen = json.loads(get(server.port, "/thread")[2])
    # One thread: the app is not run multithreaded, but in the worker's app thread.
    assert (seen["pid"], seen["thread"], seen["multithread"]) == (worker, "pasteserve-app-1", False)


def test_a_reload_may_switch_the_sync_worker_to_threads(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 1"))
    (first,) = server.wait_workers(1)
    assert json.loads(get(server.port, "/thread")[2])["multithread"] is False
    # Only a change to or from eventlet needs a restart.
    (tmp_path / "app0.ini").write_text(ini("workers = 1\nworker_class = gthread\nthreads = 4"))
    server.signal(signal.SIGHUP)
    (second,) = wait_new_workers(server, [first], 1)
    elapsed, answers = concurrently(server.port, ["/thread?seconds=0.5"] * 4)
    seen = [json.loads(body) for _, _, body in answers]
    assert {(s["pid"], s["multithread"]) for s in seen} == {(second, True)} and len({s["thread"] for s in seen}) == 4
    assert elapsed < 1.4, elapsed
    assert "Reload cancelled" not in server.log()
