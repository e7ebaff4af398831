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
from tests.server import BIN, alive, get, wait_gone, wait_new_workers, wait_until

APP = "use = call:tests.integration.hookmod:app_factory"


@pytest.fixture(params=["sync", "eventlet", "gthread"])
def worker_class(request) -> str:
    return request.param


def ini(options: str, worker_class: str = "sync", extra: str = "") -> str:
    bind = "" if "bind =" in options else "bind = 127.0.0.1:0\n"
    return ini_text(f"{bind}{worker_lines(worker_class)}{options}", APP, extra)


def worker_lines(worker_class: str) -> str:
    # "gthread" runs the sync worker with four app threads.
    return f"worker_class = {worker_class}\n" + ("threads = 4\n" if worker_class == "gthread" else "")


# --- 5. signals ------------------------------------------------------------------------------------

def test_term_to_the_whole_process_group_stops_cleanly(start_server, worker_class):
    """What `systemctl stop` (KillMode=control-group) and `timeout` do: every process gets TERM at
    once, the workers also a second one from the master. A signal handler that did real work (an
    import, once) was re-entered and the worker died with a traceback."""
    server = start_server("pasteserve_paster", ini=ini("workers = 2", worker_class))
    server.wait_workers(2)
    assert get(server.port, "/")[0] == 200
    os.killpg(server.pid, signal.SIGTERM)
    assert server.wait_exit(20) == 0
    assert "Traceback" not in server.log()


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


# --- 2. umask, pidfile, socket owners --------------------------------------------------------------

def umask_of(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc status")


def test_umask_applies_to_unix_sockets_only_and_the_pidfile_is_0644(start_server, tmp_path):
    path, pidfile = tmp_path / "app.sock", tmp_path / "app.pid"
    previous = os.umask(0o022)
    try:
        server = start_server("pasteserve_paster", ini=ini(f"bind = unix:{path}\nworkers = 1\npidfile = {pidfile}"),
                              expect_listening=False)
    finally:
        os.umask(previous)
    server.wait_for(lambda: "Listening at" in server.log(), 20, "the server to listen")
    (worker,) = server.wait_workers(1)
    # The default umask 0 is for the socket (a proxy running as another user connects) ...
    assert stat_mode(path) == 0o777
    # ... never for the processes, whose files stay as private as the operator's umask says.
    assert umask_of(server.pid) == 0o022 and umask_of(worker) == 0o022
    assert stat_mode(pidfile) == 0o644 and pidfile.read_text() == f"{server.pid}\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "pid" in p.name) == ["app.pid"]


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_unix_socket_is_given_to_user_and_group(start_server, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving files away needs root")
    import grp
    import pwd
    try:
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user 'nobody' or no group 'nogroup' on this system")
    path = tmp_path / "app.sock"
    # The app is preloaded: tmp_path is readable by root only.
    server = start_server("pasteserve", args=["-b", f"unix:{path}", "-u", "nobody", "-g", "nogroup", "--preload",
                                              "tests.integration.hookmod:app"])
    server.wait_workers(1)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (uid, gid)


# --- 3. user and group -----------------------------------------------------------------------------

@pytest.mark.parametrize("option, words", [("user = no-such-user-here", "no user named 'no-such-user-here'"),
                                           ("group = no-such-group-here", "no group named 'no-such-group-here'")])
def test_unknown_user_or_group_is_a_config_error(start_server, option, words):
    server = start_server("pasteserve_paster", ini=ini(option), expect_listening=False)
    assert server.wait_exit(20) == 2
    text = server.log()
    assert "[server:main]" in text and option in text and words in text
    assert "Booting worker" not in text


def test_worker_that_cannot_switch_user_stops_the_server_instead_of_forking_on(start_server):
    import shutil

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        pytest.skip("needs root and setpriv (util-linux), to take the capability away")
    # Root without CAP_SETUID/CAP_SETGID: the names resolve, but no worker can switch.
    server = start_server(setpriv, args=["--bounding-set", "-setuid,-setgid",
                                                    str(BIN / "pasteserve"), "-b", "127.0.0.1:0", "-w", "2",
                                                    "-u", "nobody", "tests.integration.hookmod:app"])
    assert server.wait_exit(20) == 3
    text = server.log()
    assert "cannot switch to user 'nobody'" in text
    assert text.count("Booting worker") <= 4


# --- 4. boot failures mid-life -----------------------------------------------------------------------

def flaky_ini(options: str, flag, worker_class: str = "sync") -> str:
    options += "\npost_worker_init = tests.integration.hookmod:post_worker_init"
    return ini_text(f"bind = 127.0.0.1:0\n{worker_lines(worker_class)}{options}",
                    f"use = call:tests.integration.flaky_app:app_factory\nbroken_flag = {flag}")


def test_bad_deploy_then_a_dead_worker_keeps_the_healthy_ones_serving(start_server, tmp_path, worker_class):
    flag = tmp_path / "broken"
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=flaky_ini("workers = 2", flag, worker_class),
                          env={HOOK_LOG_ENV: str(hook_log)})
    first, second = server.wait_workers(2)
    wait_booted(server, hook_log, 2)
    flag.write_text("")
    result: list = []
    thread = slow_get(server.port, "/sleep?seconds=3", result)
    server.wait_for(lambda: [e for e in read_log(hook_log) if e[0] == "sleep-start"], 10, "the slow request")
    (busy,) = {e[1] for e in read_log(hook_log) if e[0] == "sleep-start"}
    idle = first if busy == second else second
    os.kill(idle, signal.SIGKILL)
    # Each failed boot is logged loudly and retried later, while the healthy worker serves on.
    server.wait_for(lambda: server.log().count("WORKER BOOT FAILED") >= 2, 20, "two failed boots")
    thread.join(20)
    assert result and result[0][0] == 200 and int(result[0][2]) == busy, result
    assert alive(server.pid) and int(get(server.port, "/pid")[2]) == busy
    assert "trying again in 1 s" in server.log() and "trying again in 2 s" in server.log()
    flag.unlink()
    workers = server.wait_workers(2, timeout=20)
    assert busy in workers
    server.wait_for(lambda: "the app loads again" in server.log(), 10, "the recovery")


def test_bad_deploy_with_a_single_worker_stops_when_it_exits(start_server, tmp_path):
    # No worker left serving: stopping is the only honest answer.
    flag = tmp_path / "broken"
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=flaky_ini("workers = 1", flag), env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    wait_booted(server, hook_log, 1)
    flag.write_text("")
    os.kill(worker, signal.SIGKILL)
    assert server.wait_exit(20) == 3
    assert "no worker is left serving" in server.log()


def test_hup_turning_on_preload_with_a_broken_app_is_cancelled(start_server, tmp_path):
    flag = tmp_path / "broken"
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=flaky_ini("workers = 1", flag), env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    wait_booted(server, hook_log, 1)
    flag.write_text("")
    ini_path = tmp_path / "app0.ini"
    ini_path.write_text(flaky_ini("workers = 1\npreload_app = true", flag))
    server.signal(signal.SIGHUP)
    server.wait_for(lambda: "Reload cancelled" in server.log(), 20, "the reload to be cancelled")
    assert alive(server.pid) and server.children() == [worker]
    assert int(get(server.port, "/pid")[2]) == worker


def wait_booted(server, hook_log, count: int) -> None:
    server.wait_for(lambda: len([e for e in read_log(hook_log) if e[0] == "post_worker_init"]) >= count, 20,
                    f"{count} workers to load the app")


def slow_get(port: int, path: str, result: list):
    import threading

    from tests.server import Client

    def run():
        try:
            with Client(port, timeout=30) as client:
                result.append(client.get(path))
        except Exception as exc:
            result.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- 1. USR2 in daemon mode ---------------------------------------------------------------------------

def read_pid(path) -> int:
    try:
        return int(open(path).read().strip() or 0)
    except (OSError, ValueError):
        return 0


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def unix_pid(path) -> int:
    import socket as socket_mod

    from tests.server import read_response
    with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        with sock.makefile("rb") as f:
            status, _, body = read_response(f)
    assert status == 200, body
    return int(body)


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_usr2_upgrade_recipe_in_daemon_mode_with_a_unix_socket(start_server, tmp_path, worker_class):
    sock, pidfile, errorlog = tmp_path / "app.sock", tmp_path / "app.pid", tmp_path / "error.log"
    masters: list[int] = []
    try:
        launcher = start_server("pasteserve_paster", expect_listening=False, ini=ini(
            f"bind = unix:{sock}\nworkers = 2\ndaemon = true\npidfile = {pidfile}\nerrorlog = {errorlog}",
            worker_class))
        assert launcher.wait_exit(20) == 0
        old = wait_until(lambda: read_pid(pidfile), 20, "the pidfile")
        masters.append(old)
        wait_until(lambda: len(children_of(old)) == 2 and sock.exists(), 20, "the old master's workers")
        assert unix_pid(sock) in children_of(old)

        # docs/signals.md: kill -USR2 $(cat app.pid); then kill -TERM $(cat app.pid)
        os.kill(read_pid(pidfile), signal.SIGUSR2)
        new = wait_until(lambda: read_pid(f"{pidfile}.2"), 20, "PIDFILE.2")
        masters.append(new)
        assert new != old and new in children_of(old)   # not detached again: the old master tracks it
        wait_until(lambda: len([p for p in children_of(new) if p]) == 2, 20, "the new master's workers")
        assert read_pid(pidfile) == old
        time.sleep(1.5)   # the old master would long have "noticed" a new master that detached again
        assert read_pid(pidfile) == old and alive(new)
        assert "from USR2 exited" not in open(errorlog).read()

        os.kill(read_pid(pidfile), signal.SIGTERM)
        wait_gone(old)
        wait_until(lambda: read_pid(pidfile) == new and not os.path.exists(f"{pidfile}.2"), 20,
                   "the new master to take the pidfile")
        # The socket file the new master serves survived the old master's exit.
        assert sock.exists()
        new_workers = children_of(new)
        assert {unix_pid(sock) for _ in range(4)} <= set(new_workers)

        os.kill(read_pid(pidfile), signal.SIGTERM)
        wait_gone(new)
        assert not sock.exists() and not pidfile.exists()
    finally:
        for pid in masters:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- 6. HUP with a changed backlog or reuse_port; USR2 with chdir -----------------------------------

def listen_backlog(port: int) -> int:
    import subprocess

    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    # For a listening socket, Send-Q is its backlog.
    return int(out.split()[2])


def test_hup_applies_a_changed_backlog_and_says_reuse_port_needs_a_restart(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 1\nbacklog = 64"))
    (worker,) = server.wait_workers(1)
    assert listen_backlog(server.port) == 64
    ini_path = tmp_path / "app0.ini"
    ini_path.write_text(ini_path.read_text().replace("backlog = 64", "backlog = 100\nreuse_port = true"))
    server.signal(signal.SIGHUP)
    wait_new_workers(server, [worker], 1)
    assert listen_backlog(server.port) == 100
    assert "reuse_port changed to True" in server.log() and "restarted" in server.log()
    assert get(server.port, "/hello")[0] == 200


def test_usr2_with_chdir_and_a_relative_ini_path(tmp_path):
    from tests.server import Server

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pidfile = tmp_path / "app.pid"
    (tmp_path / "app.ini").write_text(ini(f"workers = 1\nchdir = {elsewhere}\npidfile = {pidfile}"))
    server = Server([str(BIN / "pasteserve_paster"), "app.ini"], tmp_path)
    new = 0
    try:
        server.start()
        (old_worker,) = server.wait_workers(1)
        server.signal(signal.SIGUSR2)
        new = server.wait_for(lambda: read_pid(f"{pidfile}.2"), 20, "PIDFILE.2")
        server.wait_workers(1, pid=new)
        server.signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0
        wait_until(lambda: read_pid(pidfile) == new, 20, "the new master to take over")
        assert int(get(server.port, "/pid")[2]) in children_of(new)
        assert "from USR2 exited" not in server.log()
    finally:
        if new and alive(new):
            os.kill(new, signal.SIGTERM)
            wait_gone(new, 30)
        server.stop()


# --- 7. what HUP reloads, per entry point ----------------------------------------------------------

VERSIONED_APP = '''
MESSAGE = b"%s"


def app_factory(global_conf, greeting="hello"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [MESSAGE + b" " + greeting.encode()]
    return app
'''


@pytest.mark.parametrize("command", ["pasteserve_paster", "pserve"])
def test_hup_reloads_code_under_pasteserve_paster_and_only_the_ini_under_pserve(start_server, tmp_path, command):
    module = tmp_path / "versioned_app.py"
    module.write_text(VERSIONED_APP % "v1")
    app_section = "use = call:versioned_app:app_factory\ngreeting = hello"
    server = start_server(command, ini=ini_text("bind = 127.0.0.1:0\nworkers = 1", app_section))
    (worker,) = server.wait_workers(1)
    assert get(server.port, "/")[2] == b"v1 hello"
    # Another length too: a .pyc checked against an mtime in the same second must not be reused.
    module.write_text(VERSIONED_APP % "v2-new")
    ini_path = tmp_path / "app0.ini"
    ini_path.write_text(ini_path.read_text().replace("greeting = hello", "greeting = again"))
    server.signal(signal.SIGHUP)
    wait_new_workers(server, [worker], 1)
    body = get(server.port, "/")[2]
    if command == "pserve":
        # pserve imported the code in the master: the INI's app settings change, the code does not.
        assert body == b"v1 again"
        assert "Reload under pserve" in server.log() and "USR2" in server.log()
    else:
        assert body == b"v2-new again"
        assert "Reload under pserve" not in server.log()


def test_ttin_after_a_bad_deploy_keeps_serving_and_retries(start_server, tmp_path):
    flag = tmp_path / "broken"
    hook_log = tmp_path / "hooks.log"
    server = start_server("pasteserve_paster", ini=flaky_ini("workers = 1", flag), env={HOOK_LOG_ENV: str(hook_log)})
    (worker,) = server.wait_workers(1)
    wait_booted(server, hook_log, 1)
    flag.write_text("")
    server.signal(signal.SIGTTIN)
    server.wait_for(lambda: "WORKER BOOT FAILED" in server.log(), 20, "a failed boot")
    assert alive(server.pid) and int(get(server.port, "/pid")[2]) == worker
    flag.unlink()
    assert worker in server.wait_workers(2, timeout=20)
