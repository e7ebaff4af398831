"""Server hooks from a Python config file and from dotted names in the INI; access logs written to files."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.conftest import ini_text
from tests.integration.hookmod import HOOK_LOG_ENV, read_log
from tests.server import get, request, wait_new_workers

APP = "use = call:tests.integration.hookmod:app_factory"

CONFIG_FILE = '''\
import os

workers = 3          # the INI says 2, and the INI wins
keepalive = 7.5


def _record(event, detail=""):
    with open(os.environ["PASTESERVE_TEST_HOOK_LOG"], "a") as f:
        f.write(f"{event} {os.getpid()} {detail}".rstrip() + "\\n")


def on_starting(server):
    _record("on_starting")


def when_ready(server):
    _record("when_ready", server.settings.keepalive)


def post_fork(server, worker):
    _record("post_fork", worker.pid)


def pre_request(worker, req):
    _record("pre_request")


def on_exit(server):
    _record("on_exit")
'''


def events(log, name: str) -> list[tuple[str, int, str]]:
    return [e for e in read_log(log) if e[0] == name]


def test_python_config_file_sets_options_and_hooks(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    (tmp_path / "conf.py").write_text(CONFIG_FILE)
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nworkers = 2\nconfig = conf.py", APP),
                          env={HOOK_LOG_ENV: str(hook_log)})
    workers = server.wait_workers(2)
    # The master runs when_ready after forking, so the workers may be up before it.
    server.wait_for(lambda: len(events(hook_log, "post_fork")) == 2 and events(hook_log, "when_ready"), 10,
                    "post_fork in both workers and when_ready in the master")
    assert events(hook_log, "on_starting") == [("on_starting", server.pid, "")]
    assert events(hook_log, "when_ready") == [("when_ready", server.pid, "7.5")]
    assert sorted(pid for _, pid, _ in events(hook_log, "post_fork")) == sorted(workers)
    assert all(str(pid) == detail for _, pid, detail in events(hook_log, "post_fork"))
    status, _, body = get(server.port, "/pid")
    assert status == 200
    assert events(hook_log, "pre_request") == [("pre_request", int(body), "")]
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    assert events(hook_log, "on_exit") == [("on_exit", server.pid, "")]


HOOK_NAMES = ("on_starting", "when_ready", "on_reload", "pre_fork", "post_fork", "post_worker_init",
              "pre_request", "post_request", "child_exit", "worker_exit", "nworkers_changed", "on_exit")


@pytest.mark.parametrize("worker_class", ["sync", "eventlet"])
def test_dotted_hook_names_in_the_ini_run_where_gunicorn_runs_them(start_server, tmp_path, worker_class):
    hook_log = tmp_path / "hooks.log"
    hooks = "\n".join(f"{name} = tests.integration.hookmod:{name}" for name in HOOK_NAMES)
    server = start_server("pasteserve_paster",
                          ini=ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\nworkers = 1\n{hooks}", APP),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (first,) = server.wait_workers(1)
    server.wait_for(lambda: events(hook_log, "post_worker_init"), 10, "post_worker_init")
    assert get(server.port, "/pid")[0] == 200
    server.signal(signal.SIGTTIN)
    workers = server.wait_workers(2)
    # The reload reads the INI again: back to its one worker.
    server.signal(signal.SIGHUP)
    wait_new_workers(server, workers, 1)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0

    log = read_log(hook_log)
    master = server.pid
    in_master = {e for e, pid, _ in log if pid == master}
    assert in_master == {"on_starting", "when_ready", "on_reload", "pre_fork", "child_exit", "nworkers_changed",
                         "on_exit"}
    assert ("post_fork", first, str(first)) in log
    assert ("post_worker_init", first, str(first)) in log
    assert ("pre_request", first, "") in log
    assert ("post_request", first, "/pid") in log
    assert ("nworkers_changed", master, "1->2") in log
    # Two workers retired on HUP and one stopped on TERM: each ran worker_exit and was reaped.
    exited = {pid for e, pid, _ in log if e == "worker_exit"}
    assert exited == {int(d) for e, _, d in log if e == "child_exit"}
    assert len(exited) == 3 and first in exited
    assert [e for e, _, _ in log][:2] == ["on_starting", "pre_fork"] and log[-1][0] == "on_exit"


def test_a_hook_that_raises_is_logged_and_the_server_keeps_serving(start_server, tmp_path):
    hook_log = tmp_path / "hooks.log"
    broken = "tests.integration.hookmod:broken"
    server = start_server("pasteserve_paster",
                          ini=ini_text(f"bind = 127.0.0.1:0\nworkers = 1\nwhen_ready = {broken}\n"
                                       f"post_fork = {broken}\npre_request = {broken}\npost_request = {broken}", APP),
                          env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    for _ in range(2):
        status, _, body = get(server.port, "/pid")
        assert (status, int(body)) == (200, worker)
    # post_request runs after the response is sent, when_ready in the master after forking:
    # wait for every failure rather than assume an order.
    failures = {"when_ready": 1, "post_fork": 1, "pre_request": 2, "post_request": 2}
    server.wait_for(lambda: all(server.log().count(f"Exception in {hook} hook") == n for hook, n in failures.items()),
                    10, f"the hook failures {failures}")
    assert server.log().count("RuntimeError: hook failed on purpose") == 6
    assert len(events(hook_log, "broken")) == 1 + 1 + 2 * 2
    assert server.children() == [worker]


ATOMS = '%(h)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(p)s "%({x-test}i)s" "%({content-type}o)s" "%(a)s" %(D)s'


@pytest.mark.parametrize("worker_class", ["sync", "eventlet"])
def test_access_log_file_with_gunicorn_atoms(start_server, tmp_path, worker_class):
    access = tmp_path / "access.log"
    # `%` is the INI's interpolation character: `%%` is a literal one.
    options = (f"bind = 127.0.0.1:0\nworker_class = {worker_class}\nworkers = 1\naccesslog = {access}\n"
               f"access_log_format = {ATOMS.replace('%', '%%')}")
    server = start_server("pasteserve_paster", ini=ini_text(options, APP))
    (worker,) = server.wait_workers(1)
    status, _, body = request(server.port, b"GET /pid?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test: hello there\r\n"
                                           b"User-Agent: probe/1.0\r\nConnection: close\r\n\r\n")
    assert status == 200
    server.wait_for(lambda: access.exists() and access.read_text(), 10, "an access log line")
    (line,) = access.read_text().splitlines()
    expected = (rf'127\.0\.0\.1 GET /pid a=1&b=2 HTTP/1\.1 200 {len(body)} {worker} "hello there" "text/plain" '
                r'"probe/1\.0" \d+')
    assert re.fullmatch(expected, line), line
    # Access lines go to the access log only.
    assert "GET /pid" not in server.log()


LOGGING_INI = """
[loggers]
keys = root, access

[handlers]
keys = console, accessfile

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = console

[logger_access]
level = INFO
handlers = accessfile
qualname = pasteserve.access
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = plain

[handler_accessfile]
class = FileHandler
args = ('%(here)s/routed-access.log', 'a')
formatter = plain

[formatter_plain]
format = INI %(name)s %(message)s
"""


def test_logging_sections_of_the_ini_route_the_access_log(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nworkers = 1", APP, LOGGING_INI))
    server.wait_workers(1)
    assert get(server.port, "/hello")[0] == 200
    routed = tmp_path / "routed-access.log"
    server.wait_for(lambda: routed.exists() and routed.read_text(), 10, "the routed access line")
    (line,) = routed.read_text().splitlines()
    assert line.startswith('INI pasteserve.access 127.0.0.1 - - [') and '"GET /hello HTTP/1.1" 200 13' in line
    # The error logger follows the INI's root logger and format.
    assert "INI pasteserve.error Listening at:" in server.log()
    assert os.path.getsize(routed) == len(line) + 1


def test_access_line_with_percent_in_the_url_under_an_always_interpolating_formatter(start_server, tmp_path):
    # Paginated URLs carry "%" escapes; a formatter that always does `msg % args` lost the whole line.
    logging_ini = LOGGING_INI.replace(
        "[formatter_plain]\n",
        "[formatter_plain]\nclass = tests.integration.logging_helpers.AlwaysInterpolating\n")
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nworkers = 1", APP, logging_ini))
    server.wait_workers(1)
    assert get(server.port, "/hello?q=100%25&page=%2s%(h)s")[0] == 200
    assert get(server.port, "/hello?page=2")[0] == 200
    routed = tmp_path / "routed-access.log"
    server.wait_for(lambda: routed.exists() and routed.read_text().count("\n") >= 2, 10, "two access lines")
    first, second = routed.read_text().splitlines()
    assert first.startswith("pasteserve.access 127.0.0.1 - - [")
    assert '"GET /hello?q=100%25&page=%2s%(h)s HTTP/1.1" 200 13' in first
    assert '"GET /hello?page=2 HTTP/1.1" 200 13' in second
    assert "Logging error" not in server.log()
