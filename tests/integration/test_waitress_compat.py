"""waitress users: a Pyramid starter's INI with only its `use =` line changed, and each waitress
key that maps onto a pasteserve setting, served by real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from tests.conftest import ini_text
from tests.server import free_port
from tests.server import BIN, REPO, Server, get, request, wait_until

APP = "use = call:tests.integration.compat_app:factory"

# The production.ini of Pyramid's cookiecutter starter, as generated; the one change is `use =`.
STARTER_PRODUCTION_INI = """\
###
# app configuration
# https://docs.pylonsproject.org/projects/pyramid/en/latest/narr/environment.html
###

[app:main]
use = call:tests.frameworks.pyramid_app:main
greeting = hello from production.ini
data_dir = %(here)s/data

pyramid.reload_templates = false
pyramid.debug_authorization = false
pyramid.debug_notfound = false
pyramid.debug_routematch = false
pyramid.default_locale_name = en

###
# wsgi server configuration
###

[server:main]
use = {use}
listen = *:{port}

###
# logging configuration
# https://docs.pylonsproject.org/projects/pyramid/en/latest/narr/logging.html
###

[loggers]
keys = root, myproject

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[logger_myproject]
level = WARN
handlers =
qualname = myproject

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s:%(lineno)s][%(threadName)s] %(message)s
"""


def answers(port: int, family=socket.AF_INET, host="127.0.0.1") -> bool:
    try:
        with socket.socket(family) as sock:
            sock.settimeout(2)
            sock.connect((host, port))
            sock.sendall(b"GET /settings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return b"hello from production.ini" in sock.makefile("rb").read()
    except OSError:
        return False


@pytest.mark.parametrize("command", ["pserve", "pasteserve_paster"])
def test_pyramid_starter_production_ini_with_only_the_use_line_changed(tmp_path, command):
    port = free_port()
    ini = tmp_path / "production.ini"
    ini.write_text(STARTER_PRODUCTION_INI.format(use="egg:pasteserve#main", port=port))
    server = Server([str(BIN / command), str(ini)], tmp_path)
    try:
        # The starter's root logger is at WARN: no "Listening at" line to wait for; poll the port.
        server.start(expect_listening=False)
        server.wait_for(lambda: answers(port), 20, "the app on 0.0.0.0")
        # `*:PORT` is every interface, IPv6 too, as in waitress.
        if socket.has_ipv6:
            assert answers(port, socket.AF_INET6, "::1")
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_the_starter_ini_is_the_one_waitress_serves(tmp_path):
    # Guard for the fixture: waitress itself takes the same file (with its own `use =` line).
    pytest.importorskip("waitress")
    port = free_port()
    ini = tmp_path / "production.ini"
    ini.write_text(STARTER_PRODUCTION_INI.format(use="egg:waitress#main", port=port))
    server = Server([str(BIN / "pserve"), str(ini)], tmp_path)
    try:
        server.start(expect_listening=False)
        server.wait_for(lambda: answers(port), 20, "waitress to serve")
    finally:
        server.stop()


def test_mapped_waitress_keys_in_a_real_server(start_server):
    server = start_server("pasteserve_paster", ini=ini_text(
        "listen = 127.0.0.1:0 [::1]:0\nurl_prefix = /shop/\ntrusted_proxy = 127.0.0.1\nconnection_limit = 7\n"
        "channel_timeout = 9\nasyncore_use_poll = true\nsend_bytes = 18000\nbacklog = 64\nworkers = 1", APP))
    assert len(server.addresses) == 2 and server.addresses[1].startswith("http://[::1]:")
    status, _, body = get(server.port, "/shop/cart")
    data = json.loads(body)
    assert (status, data["SCRIPT_NAME"], data["PATH_INFO"]) == (200, "/shop", "/cart")
    # trusted_proxy is forwarded_allow_ips: the proxy's X-Forwarded-Proto counts.
    _, _, body = get(server.port, "/shop/", ["X-Forwarded-Proto: https"])
    assert json.loads(body)["url_scheme"] == "https"
    log = server.log()
    for line in ("asyncore_use_poll = true: waitress's setting, ignored: there is no asyncore loop",
                 "send_bytes = 18000: waitress's setting, ignored"):
        assert log.count(line) == 1


def test_print_config_names_the_waitress_key_a_setting_came_from(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text(ini_text("port = 6543\nconnection_limit = 7\nurl_prefix = app", APP))
    result = subprocess.run([str(BIN / "pasteserve"), "--paste", str(ini), "--print-config"], capture_output=True,
                            text=True, timeout=20, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert lines["bind"].endswith("= ['0.0.0.0:6543']    # [server:main] (port)")
    assert lines["worker_connections"].endswith("= 7    # [server:main] (connection_limit)")
    assert lines["root_path"].endswith("= '/app'    # [server:main] (url_prefix)")


def test_unix_socket(start_server, tmp_path):
    path = tmp_path / "app.sock"
    server = start_server("pasteserve_paster", ini=ini_text(f"unix_socket = {path}\nworkers = 1", APP))
    assert server.addresses == [f"unix:{path}"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")


def test_max_request_body_size(start_server):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nmax_request_body_size = 10", APP))
    status, _, _ = request(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n0123456789a")
    assert status == 413


def test_waitress_threads(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nthreads = 4", APP))
    assert get(server.port, "/")[0] == 200
    ini = tmp_path / "threads.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:0\nthreads = 4", APP))
    result = subprocess.run([str(BIN / "pasteserve"), "--paste", str(ini), "--print-config"], capture_output=True,
                            text=True, timeout=20, cwd=tmp_path)
    assert [line for line in result.stdout.splitlines() if line.startswith("threads ")][0].endswith(
        "= 4    # [server:main]")


def test_refused_and_misspelled_keys_stop_the_start_with_every_problem(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:0\nmax_request_header_size = 1000\nconection_limit = 5\n"
                            "url_prefx = /x", APP))
    result = subprocess.run([str(BIN / "pasteserve_paster"), str(ini)], capture_output=True, text=True, timeout=20,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "max_request_header_size = 1000: not supported: limit the head with limit_request_line" in result.stderr
    assert 'conection_limit = 5: unknown option; did you mean "worker_connections"?' in result.stderr
    assert 'url_prefx = /x: unknown option; did you mean "root_path"?' in result.stderr


def test_paster_serves_the_app_named_after_the_hash(start_server):
    extra = "\n[app:other]\nuse = call:tests.integration.compat_app:factory\nname = other\n"
    ini = ini_text("bind = 127.0.0.1:0\nworkers = 1", APP + "\nname = main", extra)
    server = start_server("pasteserve_paster", ini=ini)
    assert json.loads(get(server.port, "/")[2])["name"] == "main"
    path = server.argv[1]
    other = start_server("pasteserve_paster", args=[f"{path}#other"])
    assert json.loads(get(other.port, "/")[2])["name"] == "other"
    gunicorn_style = start_server("pasteserve", args=["--paste", f"{path}#other"])
    assert json.loads(get(gunicorn_style.port, "/")[2])["name"] == "other"


GUNICORN_LOGGERS_INI = """\
[loggers]
keys = root, gunicorn.error

[handlers]
keys = console, errorfile

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[logger_gunicorn.error]
level = INFO
handlers = errorfile
propagate = 0
qualname = gunicorn.error

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[handler_errorfile]
class = FileHandler
args = ('%(here)s/gunicorn-error.log', 'a')
formatter = generic

[formatter_generic]
format = GUNICORN-STYLE %(name)s %(message)s
"""


def test_ini_loggers_for_gunicorn_names_configure_ours(start_server, tmp_path):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nworkers = 1", APP,
                                                             GUNICORN_LOGGERS_INI), expect_listening=False)
    error_log = tmp_path / "gunicorn-error.log"
    wait_until(lambda: error_log.exists() and "Listening at: http://127.0.0.1:" in error_log.read_text(), 20,
               "our error log lines in gunicorn.error's file")
    text = error_log.read_text()
    assert "GUNICORN-STYLE pasteserve.error Listening at" in text
    assert text.count("gunicorn.error logger (Gunicorn's name) configures pasteserve.error") == 1
    assert "Listening at" not in server.log()


@pytest.mark.parametrize("command", ["pserve", "pasteserve_paster"])
def test_check_and_print_config_from_the_ini_commands(tmp_path, command):
    ini = tmp_path / "app.ini"
    ini.write_text(ini_text("listen = 127.0.0.1:0\nconnection_limit = 7\nsend_bytes = 1", APP))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    checked = subprocess.run([str(BIN / command), str(ini), "check_config=true"], capture_output=True, text=True,
                             timeout=20, cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK; the app app.ini loads" in checked.stdout
    assert "send_bytes = 1: waitress's setting, ignored" in checked.stdout
    printed = subprocess.run([str(BIN / command), str(ini), "print_config=yes"], capture_output=True, text=True,
                             timeout=20, cwd=tmp_path, env=env)
    assert printed.returncode == 0, printed.stderr
    assert "# [server:main] (connection_limit)" in printed.stdout
    assert "# command line (key=value)" in printed.stdout


def test_pasteserve_paste_says_when_the_server_section_is_not_read(tmp_path):
    ini = tmp_path / "production.ini"
    ini.write_text(STARTER_PRODUCTION_INI.format(use="egg:waitress#main", port=6543))
    result = subprocess.run([str(BIN / "pasteserve"), "--paste", str(ini), "--print-config"], capture_output=True,
                            text=True, timeout=20, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "# [server:main] in production.ini does not use pasteserve: its keys are not read" in result.stdout
