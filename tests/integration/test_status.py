"""`pasteserve status PIDFILE` against real servers whose workers are busy or stuck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import BIN, Client, get, wait_new_workers

APP = "use = call:tests.integration.hookmod:app_factory"


def ini(options: str, worker_class: str = "sync") -> str:
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\ntimeout = 60\n{options}", APP)


def status(pidfile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "pasteserve"), "status", str(pidfile), *args], capture_output=True,
                          text=True, timeout=10)


def status_json(pidfile: Path) -> dict:
    done = status(pidfile, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sleep_request(port: int, seconds: float, results: list) -> threading.Thread:
    def run():
        try:
            with Client(port, timeout=seconds + 20) as client:
                results.append(client.get(f"/sleep?seconds={seconds}&secret=hunter2"))
        except Exception as exc:
            results.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_sleeping(server, hook_log: Path, count: int) -> None:
    server.wait_for(lambda: sum(e == "sleep-start" for e, _, _ in read_log(hook_log)) >= count, 20,
                    f"{count} requests in the app")


def test_table_while_every_sync_worker_is_stuck(start_server, tmp_path):
    pidfile, hook_log = tmp_path / "app.pid", tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 2\npidfile = {pidfile}"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    workers = server.wait_workers(2)
    for _ in range(3):
        assert get(server.port, "/pid")[0] == 200
    results: list = []
    threads = [sleep_request(server.port, 6, results) for _ in range(2)]
    wait_sleeping(server, hook_log, 2)
    server.wait_for(lambda: all(w["heartbeat_age"] > 1.0 for w in status_json(pidfile)["workers"]), 10,
                    "both workers silent for a second")

    done = status(pidfile)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["PID", "ROLE", "AGE", "GEN", "REQUESTS", "CONNS", "HEARTBEAT", "NOW"]
    assert lines[1].split()[:2] == [str(server.pid), "master"]
    assert "2 workers (2 wanted)" in lines[1]
    rows = {int(line.split()[0]): line for line in lines[2:]}
    assert set(rows) == set(workers)
    for line in rows.values():
        assert line.split()[1] == "worker"
        assert "serving GET /sleep for " in line and "hunter2" not in line

    report = status_json(pidfile)
    assert report["master"]["pid"] == server.pid
    by_pid = {w["pid"]: w for w in report["workers"]}
    assert sum(w["requests"] for w in by_pid.values()) == 3
    for w in by_pid.values():
        # Its own, and maybe one of the earlier requests, closing, whose end it has not read yet.
        assert w["generation"] == 0 and w["connections"] in (1, 2) and w["stopping"] is None
        assert w["request"]["method"] == "GET" and w["request"]["path"] == "/sleep"
        assert w["request"]["seconds"] >= 1.0 and w["heartbeat_age"] >= 1.0
    for thread in threads:
        thread.join(20)
    assert [r[0] for r in results] == [200, 200]
    # A worker records the request as done just after the client has its answer.
    server.wait_for(lambda: (r := status_json(pidfile)["workers"]) and all(w["request"] is None for w in r)
                    and sum(w["requests"] for w in r) == 5, 10, "both requests done in the status map")


def test_eventlet_worker_shows_its_oldest_request_and_connections(start_server, tmp_path):
    pidfile, hook_log = tmp_path / "app.pid", tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\npidfile = {pidfile}", "eventlet"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    server.wait_workers(1)
    results: list = []
    first = sleep_request(server.port, 3, results)
    wait_sleeping(server, hook_log, 1)
    time.sleep(1.0)   # so the first request is clearly the oldest
    later = [sleep_request(server.port, 5, results) for _ in range(2)]
    wait_sleeping(server, hook_log, 3)
    (worker,) = status_json(pidfile)["workers"]
    seen_at = time.monotonic()
    assert worker["connections"] == 3
    assert worker["request"]["path"] == "/sleep"
    oldest = worker["request"]["seconds"]
    first.join(20)
    # The oldest finished: the slot shows the next oldest, which started later.
    (worker,) = server.wait_for(lambda: (r := status_json(pidfile)["workers"]) and r[0]["requests"] == 1 and r,
                                10, "the first request done")
    # Had it kept showing the first one, it would be this old now; the next started 1 s later
    # (minus what the two status commands took to exit, on a loaded machine).
    first_age = oldest + (time.monotonic() - seen_at)
    assert worker["request"] is not None and worker["request"]["seconds"] < first_age - 0.5
    server.wait_for(lambda: status_json(pidfile)["workers"][0]["connections"] == 2, 10, "2 connections")
    for thread in later:
        thread.join(20)
    server.wait_for(lambda: (w := status_json(pidfile)["workers"][0])["request"] is None and w["requests"] == 3
                    and w["connections"] == 0, 10, "all requests done, connections closed")


def test_generation_after_hup_and_the_map_goes_with_the_master(start_server, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\npidfile = {pidfile}"))
    old = server.wait_workers(1)
    server.signal(signal.SIGHUP)
    (new,) = wait_new_workers(server, old, 1)
    report = server.wait_for(lambda: (r := status_json(pidfile)) and r["master"]["generation"] == 1 and r, 10,
                             "the master's generation 1")
    assert [(w["pid"], w["generation"]) for w in report["workers"]] == [(new, 1)]
    maps = [p for p in Path("/dev/shm").glob(f"pasteserve-{server.pid}.status")]
    assert maps
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert not maps[0].exists()
    pidfile.write_text(f"{server.pid}\n")   # as a crashed master would leave it
    done = status(pidfile)
    assert done.returncode == 1 and "no status map" in done.stderr


def test_stopping_worker_is_marked(start_server, tmp_path):
    pidfile, hook_log = tmp_path / "app.pid", tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\npidfile = {pidfile}\ngraceful_timeout = 30"),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    results: list = []
    thread = sleep_request(server.port, 3, results)
    wait_sleeping(server, hook_log, 1)
    os.kill(worker, signal.SIGTERM)   # the worker finishes its request, then exits; a new one follows
    server.wait_for(lambda: any(w["pid"] == worker and w["stopping"] is not None
                                for w in status_json(pidfile)["workers"]),
                    10, "the worker marked stopping")
    assert "serving GET /sleep for" in status(pidfile).stdout and "(stopping for " in status(pidfile).stdout
    thread.join(20)
    assert results[0][0] == 200


@pytest.mark.parametrize("content", [None, "not a pid\n"])
def test_unreadable_pidfile(tmp_path, content):
    pidfile = tmp_path / "app.pid"
    if content is not None:
        pidfile.write_text(content)
    done = status(pidfile)
    assert done.returncode == 1
    assert f"cannot read a pid from {pidfile}" in done.stderr
