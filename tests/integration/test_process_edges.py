"""The less-travelled paths of process management (issue 8): signal bursts, work outside signal
handlers, boot failures mid-life, file modes, users, upgrades in daemon mode, reload of listeners.

Real servers over 127.0.0.1, driven by signals as operators drive them.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import alive, get, wait_gone, wait_new_workers, wait_until

APP = "use = call:tests.integration.hookmod:app_factory"


@pytest.fixture(params=["sync", "eventlet"])
def worker_class(request) -> str:
    return request.param


def ini(options: str, worker_class: str = "sync", extra: str = "") -> str:
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\n{options}", APP, extra)


# --- 5. signals ------------------------------------------------------------------------------------

def test_a_burst_of_signals_never_drops_a_new_kind(start_server, tmp_path):
    # The master is busy (a slow on_reload hook) while a burst of CHLD arrives, then TERM.
    conf = tmp_path / "conf.py"
    conf.write_text("import time\n\ndef on_reload(server):\n    time.sleep(2)\n")
    server = start_server("pasteserve_paster", ini=ini(f"workers = 1\nconfig = {conf}"))
    server.wait_workers(1)
    server.signal(signal.SIGHUP)
    server.wait_for(lambda: "Handling signal: hup" in server.log(), 10, "the reload to start")
    for _ in range(15):
        server.signal(signal.SIGCHLD)
        time.sleep(0.02)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert "Handling signal: term" in server.log()


def test_worker_hooks_and_log_reopening_run_outside_signal_handlers(start_server, tmp_path, worker_class):
    hook_log = tmp_path / "hooks.log"
    logging_ini = f"""
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = file

[handler_file]
class = tests.integration.logging_helpers.ReopenRecorder
args = ('{tmp_path}/server.log', 'a')
formatter = plain

[formatter_plain]
format = %(message)s
"""
    options = ("workers = 1\nworker_int = tests.integration.hookmod:worker_int_where\n"
               "worker_abort = tests.integration.hookmod:worker_abort_where")
    server = start_server("pasteserve_paster", ini=ini(options, worker_class, logging_ini),
                         env={HOOK_LOG_ENV: str(hook_log)}, expect_listening=False)
    log_file = tmp_path / "server.log"
    server.wait_for(lambda: log_file.exists() and "Listening at: " in log_file.read_text(), 20, "the log")
    server.addresses = [log_file.read_text().split("Listening at: ")[1].split()[0]]
    (worker,) = server.wait_workers(1)
    os.kill(worker, signal.SIGUSR1)
    server.wait_for(lambda: [e for e in read_log(hook_log) if e[:2] == ("reopen", worker)], 10, "the reopen")
    for sig, hook in ((signal.SIGQUIT, "worker_int"), (signal.SIGABRT, "worker_abort")):
        os.kill(worker, sig)
        wait_gone(worker)
        assert server.wait_for(lambda: [e for e in read_log(hook_log) if e[:2] == (hook, worker)], 10, hook)
        (worker,) = wait_new_workers(server, [worker], 1)
    wheres = {(event, detail) for event, _, detail in read_log(hook_log)}
    assert wheres == {("reopen", "outside-handler"), ("worker_int", "outside-handler"),
                      ("worker_abort", "outside-handler")}
