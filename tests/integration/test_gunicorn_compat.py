"""Gunicorn users: a gunicorn.conf.py with every hook written the way Gunicorn's documented
examples write them, Gunicorn's flags, environment variables and logger names, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from tests.server import BIN, REPO, get, wait_new_workers, wait_until

# Our own config file, in the style of Gunicorn's examples/example_config.py: every hook, each
# using the attributes Gunicorn's documentation shows.
GUNICORN_CONF = '''\
import os
import sys
import threading
import traceback

bind = "127.0.0.1:0"
workers = 2
worker_class = "gunicorn.workers.sync.SyncWorker"
timeout = 30
keepalive = 2
loglevel = "info"
proc_name = "compat-example"
raw_env = ["COMPAT_ENV=from raw_env"]
worker_tmp_dir = "/dev/shm"


def _helper(n):                      # helpers and imports in the file are left alone
    return n * 2


def on_starting(server):
    server.log.info("hook on_starting pid=%s workers=%s", server.pid, server.cfg.workers)


def on_reload(server):
    server.log.info("hook on_reload num_workers=%s", server.num_workers)


def when_ready(server):
    server.log.info("hook when_ready: Server is ready. Spawning workers (%s)", _helper(server.cfg.workers))


def pre_fork(server, worker):
    server.log.info("hook pre_fork age=%s", worker.age)


def post_fork(server, worker):
    server.log.info("hook post_fork: Worker spawned (pid: %s)", worker.pid)


def post_worker_init(worker):
    worker.log.info("hook post_worker_init pid=%s ppid=%s age=%s alive=%s timeout=%s",
                    worker.pid, worker.ppid, worker.age, worker.alive, worker.cfg.timeout)


def pre_exec(server):
    server.log.info("Forked child, re-executing.")


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    worker.log.info("hook pre_request %s %s %s %s", req.method, req.path, req.query, os.environ["COMPAT_ENV"])


def post_request(worker, req, environ, resp):
    host = [value for name, value in req.headers if name == "HOST"][0]
    worker.log.info("hook post_request %s %s HTTP/%s.%s host=%s scheme=%s status=%s code=%s sent=%s headers=%s",
                    req.uri, req.fragment or "-", req.version[0], req.version[1], host, req.scheme, resp.status,
                    resp.status_code, resp.sent, len(resp.headers))


def child_exit(server, worker):
    server.log.info("hook child_exit pid=%s", worker.pid)


def worker_exit(server, worker):
    server.log.info("hook worker_exit pid=%s", worker.pid)


def nworkers_changed(server, new_value, old_value):
    server.log.info("hook nworkers_changed %s -> %s (running %s)", old_value, new_value, len(server.WORKERS))


def worker_int(worker):
    worker.log.info("worker received INT or QUIT signal")
    id2name = {th.ident: th.name for th in threading.enumerate()}
    code = []
    for thread_id, stack in sys._current_frames().items():
        code.append("\\n# Thread: %s(%d)" % (id2name.get(thread_id, ""), thread_id))
        for filename, lineno, name, line in traceback.extract_stack(stack):
            code.append('File: "%s", line %d, in %s' % (filename, lineno, name))
            if line:
                code.append("  %s" % (line.strip()))
    worker.log.info("hook worker_int dumped %s lines", len(code))


def worker_abort(worker):
    worker.log.info("hook worker_abort: worker received SIGABRT signal")


def on_exit(server):
    server.log.info("hook on_exit")
'''


def test_gunicorn_conf_py_with_every_hook_runs_without_an_error(start_server, tmp_path):
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    # No -c: like Gunicorn, ./gunicorn.conf.py is read when it is there.
    server = start_server("pasteserve", args=["tests.integration.compat_app:app"])
    first = server.wait_workers(2)
    status, _, body = get(server.port, "/some/path?x=1")
    assert status == 200 and json.loads(body)["COMPAT_ENV"] == "from raw_env"
    server.wait_for(lambda: "hook post_request" in server.log(), 10, "post_request")
    server.signal(signal.SIGTTIN)
    grown = server.wait_workers(3)
    server.signal(signal.SIGHUP)
    wait_new_workers(server, grown, 2)      # the reload reads workers = 2 again
    two = server.wait_workers(2)
    os.kill(two[0], signal.SIGINT)          # worker_int; the master replaces the worker
    os.kill(two[1], signal.SIGABRT)         # worker_abort
    wait_new_workers(server, two, 2)
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0
    log = server.log()
    assert "Exception in" not in log and "Traceback" not in log, log
    assert f"hook on_starting pid={server.pid} workers=2" in log
    assert "hook when_ready: Server is ready. Spawning workers (4)" in log
    assert "hook pre_fork age=0" in log
    for pid in first:
        assert f"hook post_fork: Worker spawned (pid: {pid})" in log
        assert f"hook post_worker_init pid={pid} ppid={server.pid} age=0 alive=True timeout=30.0" in log
    assert "hook pre_request GET /some/path x=1 from raw_env" in log
    assert "hook post_request /some/path?x=1 - HTTP/1.1 host=localhost scheme=http status=200 OK code=200 sent=" \
        in log
    assert "hook nworkers_changed 2 -> 3 (running 2)" in log
    assert "hook on_reload num_workers=2" in log
    assert "worker received INT or QUIT signal" in log and "hook worker_int dumped" in log
    assert "hook worker_abort: worker received SIGABRT signal" in log
    assert log.count("hook child_exit pid=") == log.count("hook worker_exit pid=") >= 5
    assert log.rstrip().splitlines()[-2].endswith("hook on_exit")
    # The setting without meaning here is said once, with why.
    assert log.count("worker_tmp_dir = /dev/shm") == 1 and "shared memory" in log


def run(args: list[str], cwd, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(cwd)]), **(env or {}))
    for var in ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS", "PASTESERVE_CMD_ARGS"):
        if env is None or var not in env:
            full_env.pop(var, None)
    return subprocess.run([str(BIN / "pasteserve"), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_print_config_says_where_every_value_came_from(tmp_path):
    (tmp_path / "conf.py").write_text("workers = 3\ntimeout = 9\nkeepalive = 4\n")
    result = run(["-c", "conf.py", "--print-config", "-t", "11", "tests.integration.compat_app:app"], tmp_path,
                 {"PORT": "5001", "GUNICORN_CMD_ARGS": "--keep-alive 6 --max-requests 7",
                  "PASTESERVE_CMD_ARGS": "--max-requests 8"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if not line.startswith("#")}
    assert lines["workers"].endswith(f"= 3    # config file conf.py")
    assert lines["timeout"].endswith("= 11.0    # command line")
    assert lines["keepalive"].endswith("= 6.0    # environment GUNICORN_CMD_ARGS")
    assert lines["max_requests"].endswith("= 8    # environment PASTESERVE_CMD_ARGS")
    assert lines["bind"].endswith("= ['0.0.0.0:5001']    # environment PORT")
    assert lines["backlog"].endswith("= 2048    # default")
    assert len(lines) >= 40


def test_web_concurrency_sets_workers_unless_set_elsewhere(tmp_path):
    out = run(["--print-config", "tests.integration.compat_app:app"], tmp_path, {"WEB_CONCURRENCY": "5"}).stdout
    assert "= 5    # environment WEB_CONCURRENCY" in out
    out = run(["--print-config", "-w", "2", "tests.integration.compat_app:app"], tmp_path, {"WEB_CONCURRENCY": "5"}).stdout
    assert [line for line in out.splitlines() if line.startswith("workers ")][0].endswith("= 2    # command line")


def test_forwarded_allow_ips_from_the_environment_decides_whom_to_believe(start_server):
    # Gunicorn reads FORWARDED_ALLOW_IPS as the default of forwarded_allow_ips; images set it to
    # their proxy's address (or *). Here it leaves out 127.0.0.1, which the default trusts.
    https = ["X-Forwarded-Proto: https"]
    default = start_server("pasteserve", args=["-w", "1", "-b", "127.0.0.1:0", "tests.integration.compat_app:app"])
    assert json.loads(get(default.port, "/", https)[2])["url_scheme"] == "https"
    server = start_server("pasteserve", args=["-w", "1", "-b", "127.0.0.1:0", "tests.integration.compat_app:app"],
                          env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert json.loads(get(server.port, "/", https)[2])["url_scheme"] == "http"
    flag = start_server("pasteserve", args=["-w", "1", "-b", "127.0.0.1:0", "--forwarded-allow-ips", "127.0.0.1",
                                            "tests.integration.compat_app:app"], env={"FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert json.loads(get(flag.port, "/", https)[2])["url_scheme"] == "https"   # any other source wins
    out = run(["--print-config", "tests.integration.compat_app:app"], ".", {"FORWARDED_ALLOW_IPS": "*"}).stdout
    assert "= ['*']    # environment FORWARDED_ALLOW_IPS" in out


def test_port_from_the_environment_is_served(start_server, tmp_path):
    from tests.server import free_port

    port = free_port()
    env = {"PORT": str(port), "GUNICORN_CMD_ARGS": "-w 1"}
    server = start_server("pasteserve", args=["tests.integration.compat_app:app"], env=env)
    assert server.addresses == [f"http://0.0.0.0:{port}"]
    assert get(port, "/")[0] == 200


def test_check_config_loads_the_app(tmp_path):
    ok = run(["--check-config", "-e", "COMPAT_ENV=x", "tests.integration.compat_app:app"], tmp_path)
    assert ok.returncode == 0 and "configuration OK" in ok.stdout, ok.stderr
    missing = run(["--check-config", "no_such_module_here:app"], tmp_path)
    assert missing.returncode == 3 and "cannot import 'no_such_module_here'" in missing.stderr
    bad = run(["--check-config", "--workers", "0", "--threadz", "2", "tests.integration.compat_app:app"], tmp_path)
    assert bad.returncode == 2
    refused = run(["--check-config", "--log-syslog", "tests.integration.compat_app:app"], tmp_path)
    assert refused.returncode == 2
    assert "syslog = true: not supported: log to syslog with logconfig_dict" in refused.stderr


def test_wsgi_app_and_pythonpath_from_the_config_file(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "hidden_app.py").write_text("from tests.integration.compat_app import app\n")
    (tmp_path / "conf.py").write_text('wsgi_app = "hidden_app:app"\npythonpath = "lib"\n')
    result = run(["-c", "conf.py", "--check-config"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the app hidden_app:app loads" in result.stdout


def test_gunicorn_setting_we_lack_in_the_config_file_is_refused(tmp_path):
    (tmp_path / "conf.py").write_text("import os\nworkers = 2\nsyslog = True\nhelper = os.getcwd()\n")
    result = run(["-c", "conf.py", "tests.integration.compat_app:app"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n  ") == 1 and "syslog = True: not supported" in result.stderr


def test_logconfig_dict_and_capture_output(start_server, tmp_path):
    log_file = tmp_path / "error.log"
    (tmp_path / "conf.py").write_text(f'''
errorlog = {str(log_file)!r}
capture_output = True
workers = 1
logconfig_dict = {{
    "version": 1,
    "formatters": {{"tagged": {{"format": "TAGGED %(name)s %(message)s"}}}},
    "handlers": {{"out": {{"class": "logging.StreamHandler", "formatter": "tagged", "stream": "ext://sys.stderr"}}}},
    "loggers": {{"gunicorn.error": {{"handlers": ["out"], "level": "INFO", "propagate": False}}}},
}}
''')
    server = start_server("pasteserve", args=["-c", "conf.py", "-b", "127.0.0.1:0", "tests.integration.compat_app:app"],
                          expect_listening=False)
    # The dict configured Gunicorn's logger name; ours follows it, and captured stderr is the file.
    wait_until(lambda: log_file.exists() and "TAGGED pasteserve.error Listening at" in log_file.read_text(), 20,
               "the listening line in the error log file")
    port = int(log_file.read_text().split("Listening at: http://127.0.0.1:")[1].split()[0])
    assert get(port, "/print")[0] == 200
    wait_until(lambda: "compat_app printed this line" in log_file.read_text(), 10, "the printed line")
    assert log_file.read_text().count("gunicorn.error logger (Gunicorn's name) configures pasteserve.error") == 1


def test_gunicorn_flags_we_lack_are_refused_by_name(tmp_path):
    result = run(["--spew", "tests.integration.compat_app:app"], tmp_path)
    assert result.returncode == 2
    assert "spew = true: not supported: no tracing switch" in result.stderr


def test_log_config_file(start_server, tmp_path):
    log_file = tmp_path / "by-fileconfig.log"
    (tmp_path / "logging.ini").write_text(f"""\
[loggers]
keys = root, gunicorn.access

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = file

[logger_gunicorn.access]
level = INFO
handlers = file
propagate = 0
qualname = gunicorn.access

[handler_file]
class = FileHandler
args = ({str(log_file)!r}, 'a')
formatter = plain

[formatter_plain]
format = FILECONFIG %(name)s %(message)s
""")
    start_server("pasteserve", args=["--log-config", "logging.ini", "-b", "127.0.0.1:0", "-w", "1",
                                     "tests.integration.compat_app:app"], expect_listening=False)
    wait_until(lambda: log_file.exists() and "Listening at: http://127.0.0.1:" in log_file.read_text(), 20,
               "the listening line in the fileConfig'd file")
    port = int(log_file.read_text().split("Listening at: http://127.0.0.1:")[1].split()[0])
    assert get(port, "/logged")[0] == 200
    # The access logger follows gunicorn.access, which the file configured.
    wait_until(lambda: 'FILECONFIG pasteserve.access 127.0.0.1 - - [' in log_file.read_text(), 10, "an access line")
    assert '"GET /logged HTTP/1.1" 200' in log_file.read_text()
