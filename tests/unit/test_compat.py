"""The compatibility table: Gunicorn's and waitress's names translated, refused or ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from pasteserve import compat as c
from pasteserve import settings as s
from pasteserve.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def ini(raw: dict) -> s.Settings:
    return c.settings_from_mapping(raw, "file app.ini, section [server:main]", "INI")


def problems(raw: dict, **kw) -> str:
    with pytest.raises(s.ConfigError) as info:
        c.settings_from_mapping(raw, "file app.ini, section [server:main]", "INI", **kw)
    return str(info.value)


# --- the table covers both servers completely ----------------------------------------------------

def test_every_waitress_adjustment_has_a_row():
    adjustments = pytest.importorskip("waitress.adjustments")
    names = {name for name, _ in adjustments.Adjustments._params}
    assert names - set(c.ROWS[c.WAITRESS]) == set()


def test_every_gunicorn_setting_has_a_row():
    config = pytest.importorskip("gunicorn.config")
    names = {setting.name for setting in config.KNOWN_SETTINGS}
    assert names - set(c.ROWS[c.GUNICORN]) == set()


def test_every_row_is_a_real_setting_of_its_server():
    config = pytest.importorskip("gunicorn.config")
    adjustments = pytest.importorskip("waitress.adjustments")
    assert set(c.ROWS[c.GUNICORN]) - {setting.name for setting in config.KNOWN_SETTINGS} == set()
    assert set(c.ROWS[c.WAITRESS]) - {name for name, _ in adjustments.Adjustments._params} == set()


def test_every_gunicorn_flag_of_a_row_is_what_gunicorn_has():
    config = pytest.importorskip("gunicorn.config")
    for setting in config.KNOWN_SETTINGS:
        assert set(setting.cli or ()) == set(c.ROWS[c.GUNICORN][setting.name].flags), setting.name


def test_a_native_setting_makes_its_rows_same():
    for rows in c.ROWS.values():
        for row in rows.values():
            kind, note = c.status(row)
            assert note, row.name
            if row.name in s.BY_NAME and row.kind != c.FLAG:
                assert kind == c.SAME
            assert kind in (c.SAME, c.MAPPED, c.IGNORED, c.REFUSED, c.FLAG)


def test_migration_guides_are_generated_from_the_table():
    for server in (c.GUNICORN, c.WAITRESS):
        path = REPO / "docs" / f"migrating-from-{server}.md"
        assert path.read_text() == c.render_guide(server), \
            f"{path.name} is stale: run `python -m pasteserve.compat {server} > docs/{path.name}`"


# --- waitress keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,bind", [
    ({"host": "127.0.0.1", "port": "6543"}, ["127.0.0.1:6543"]),
    ({"port": "6543"}, ["0.0.0.0:6543"]),                     # waitress: port alone = all interfaces
    ({"host": "127.0.0.1"}, ["127.0.0.1:8080"]),              # waitress's default port
    ({"host": "::1", "port": "80"}, ["[::1]:80"]),
    ({"listen": "*:6543"}, ["0.0.0.0:6543", "[::]:6543"]),
    ({"listen": "*:6543", "ipv6": "false"}, ["0.0.0.0:6543"]),
    ({"listen": "localhost:6543 127.0.0.1:1 [::1]:2"}, ["localhost:6543", "127.0.0.1:1", "[::1]:2"]),
    ({"unix_socket": "/tmp/app.sock"}, ["unix:/tmp/app.sock"]),
])
def test_waitress_spellings_of_bind(raw, bind):
    st = ini(raw)
    assert st.bind == bind
    assert st.sources["bind"].startswith("INI (")


def test_waitress_rules_for_bind_are_kept():
    assert "host or port may not be set if listen is set" in problems({"listen": "*:1", "port": "2"})
    assert "give either bind or port" in problems({"bind": "127.0.0.1:1", "port": "2"})
    assert "unix_socket serves only the unix socket" in problems({"unix_socket": "/tmp/x", "port": "2"})


@pytest.mark.parametrize("raw,name,value", [
    ({"url_prefix": "/app/"}, "root_path", "/app"),
    ({"url_prefix": "app"}, "root_path", "/app"),
    ({"trusted_proxy": "10.0.0.1"}, "forwarded_allow_ips", ["10.0.0.1"]),
    ({"connection_limit": "50"}, "worker_connections", 50),
    ({"channel_timeout": "60"}, "keepalive", 60.0),
])
def test_mapped_waitress_keys(raw, name, value):
    st = ini(raw)
    assert getattr(st, name) == value
    assert st.sources[name] == f"INI ({next(iter(raw))})"


def test_max_request_body_size_is_limit_request_body():
    assert ini({"max_request_body_size": "1024"}).limit_request_body == 1024


def test_waitress_threads_are_threads():
    assert ini({"threads": "4"}).threads == 4


def test_keys_without_meaning_are_accepted_with_one_notice_each():
    st = ini({"asyncore_use_poll": "true", "send_bytes": "1", "outbuf_overflow": "1048576", "workers": "2"})
    assert st.workers == 2
    assert len(st.notices) == 3
    assert any("asyncore_use_poll = true: waitress's setting, ignored: there is no asyncore loop" in n
               for n in st.notices)


def test_refused_keys_name_what_to_use_instead():
    report = problems({"max_request_header_size": "1000", "sockets": "x", "workers": "0"})
    assert "max_request_header_size = 1000: not supported: limit the head with limit_request_line" in report
    assert "sockets = x: not supported:" in report and "bind fd://N" in report
    # Every problem at once, foreign and native alike.
    assert "workers = 0: expected a whole number from 1 to 1000" in report


# --- did you mean --------------------------------------------------------------------------------------

@pytest.mark.parametrize("typo,meant", [
    ("timout", "timeout"),
    ("max-requests", "max_requests"),
    ("max_request_body_sise", "limit_request_body" if "limit_request_body" in s.BY_NAME
     else "max_request_body_size"),
    ("url_prefx", "root_path"),
    ("conection_limit", "worker_connections"),
])
def test_did_you_mean_suggests_the_real_equivalent(typo, meant):
    assert f'{typo} = 1: unknown option; did you mean "{meant}"?' in problems({typo: "1"})


def test_did_you_mean_never_suggests_an_unrelated_setting():
    # Both were once answered with "did you mean reload / max_requests": now each is either
    # accepted (a native or mapped setting) or refused without an unrelated suggestion.
    for key in ("threads", "max_request_body_size"):
        try:
            c.settings_from_mapping({key: "1"}, "file app.ini, section [server:main]", "INI")
        except s.ConfigError as exc:
            assert "reload" not in str(exc) and "max_requests" not in str(exc)
    assert c.suggest("frobnicate") == "unknown option"


# --- Gunicorn names: config file and flags --------------------------------------------------------

CONF = '''\
import multiprocessing
import os

port = int(os.environ.get("NO_SUCH_PORT_VAR", "8123"))    # a helper, not waitress's port
bind = f"127.0.0.1:{port}"
workers = 2
worker_class = "gunicorn.workers.sync.SyncWorker"
raw_env = ["A=1", "B=two words"]
worker_tmp_dir = "/dev/shm"
logconfig_dict = {"version": 1, "loggers": {}}


def helper():
    return multiprocessing.cpu_count()


def post_fork(server, worker):
    server.log.info("forked %s", worker.pid)
'''


def test_gunicorn_config_file(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(CONF)
    st = c.load_config_file_settings(str(conf))
    assert st.bind == ["127.0.0.1:8123"] and st.workers == 2 and st.worker_class == "sync"
    assert st.raw_env == ["A=1", "B=two words"]
    assert st.logconfig_dict == {"version": 1, "loggers": {}}
    assert callable(st.post_fork)
    assert st.sources["worker_class"] == f"config file {conf} (worker_class)" or \
        st.sources["worker_class"] == f"config file {conf}"
    assert [n for n in st.notices if "worker_tmp_dir" in n and "shared memory" in n]


def test_config_file_values_are_a_base_layer(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("workers = 3\ntimeout = 7\n\ndef post_fork(server, worker):\n    pass\n")
    base = c.load_config_file_settings(str(conf))
    assert base.workers == 3 and callable(base.post_fork)
    st = c.settings_from_mapping({"workers": "5"}, "test", "INI", base)
    assert (st.workers, st.timeout) == (5, 7.0)


def test_a_gunicorn_setting_we_lack_in_a_config_file_is_refused(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("syslog = True\nworkers = 2\nhelper_value = 3\n")
    with pytest.raises(s.ConfigError) as info:
        c.load_config_file_settings(str(conf))
    assert "syslog = True: not supported: log to syslog with logconfig_dict" in str(info.value)
    assert len(info.value.problems) == 1


def test_gunicorn_flags_are_parsed_and_translated():
    parser = build_parser()
    ns = parser.parse_args(["--worker-tmp-dir", "/dev/shm", "-e", "A=1", "-e", "B=2", "--pythonpath", "a,b",
                            "--check-config", "--print-config", "--log-config", "x.ini", "myapp:app"])
    flags = {**s.cli_values(ns), **c.gunicorn_flag_values(ns)}
    st = c.settings_from_mapping(flags, "command line", "command line", prefer=c.GUNICORN)
    assert st.raw_env == ["A=1", "B=2"] and st.pythonpath == ["a", "b"]
    assert st.check_config and st.print_config and st.logconfig == "x.ini"
    assert any("worker_tmp_dir" in n for n in st.notices)
    ns = parser.parse_args(["--spew", "myapp:app"])
    with pytest.raises(s.ConfigError, match="spew = true: not supported"):
        c.settings_from_mapping(c.gunicorn_flag_values(ns), "command line", "command line", prefer=c.GUNICORN)


def test_harmless_values_of_unsupported_switches_are_accepted():
    parser = build_parser()
    ns = parser.parse_args(["--no-control-socket", "--http-protocols", "h1", "myapp:app"])
    assert c.gunicorn_flag_values(ns) == {"control_socket_disable": "true", "http_protocols": "h1"}
    c.settings_from_mapping(c.gunicorn_flag_values(ns), "command line", "command line", prefer=c.GUNICORN)
    with pytest.raises(s.ConfigError, match="only h1 is supported"):
        c.settings_from_mapping({"http_protocols": "h2,h1"}, "x", "x", prefer=c.GUNICORN)
    with pytest.raises(s.ConfigError, match="sendfile = false: only true is supported"):
        c.settings_from_mapping(c.gunicorn_flag_values(parser.parse_args(["--no-sendfile", "a:b"])), "x", "x",
                                prefer=c.GUNICORN)


@pytest.mark.parametrize("value,ours", [("sync", "sync"), ("eventlet", "eventlet"),
                                        ("gunicorn.workers.geventlet.EventletWorker", "eventlet"),
                                        ("gthread", "gthread"), ("gunicorn.workers.gthread.ThreadWorker", "gthread")])
def test_gunicorn_worker_classes(value, ours):
    assert c.settings_from_mapping({"worker_class": value}, "x", "x", prefer=c.GUNICORN).worker_class == ours


def test_gevent_is_refused_with_what_there_is():
    with pytest.raises(s.ConfigError, match="worker_class = gevent: expected one of: sync, gthread, eventlet"):
        c.settings_from_mapping({"worker_class": "gevent"}, "x", "x", prefer=c.GUNICORN)


# --- environment -------------------------------------------------------------------------------------

def test_environment_is_the_lowest_layer():
    env = c.environment_settings({"WEB_CONCURRENCY": "3", "PORT": "5000"})
    assert env.workers == 3 and env.bind == ["0.0.0.0:5000"]
    assert env.sources["workers"] == "environment WEB_CONCURRENCY"
    st = c.settings_from_mapping({"workers": "2"}, "x", "INI", env)
    assert (st.workers, st.bind) == (2, ["0.0.0.0:5000"])
    assert c.environment_settings({}) is None


def test_cmd_args_from_the_environment():
    assert c.cli_extra_args({"GUNICORN_CMD_ARGS": "-w 3 --env 'A=b c'", "PASTESERVE_CMD_ARGS": "-t 5"}) == [
        ("PASTESERVE_CMD_ARGS", ["-t", "5"]), ("GUNICORN_CMD_ARGS", ["-w", "3", "--env", "A=b c"])]


def test_a_config_file_name_close_to_a_setting_is_left_alone_with_a_notice(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("max_request = 1000\nbase_dir = '/srv'\n\ndef worker_exits(server, worker):\n    pass\n")
    st = c.load_config_file_settings(str(conf))
    assert st.max_requests == 0
    assert st.notices == [f'config file {conf}: max_request = 1000: not a setting, left alone; '
                          'did you mean "max_requests"?']


def test_logconfig_json_becomes_logconfig_dict(tmp_path):
    path = tmp_path / "logging.json"
    path.write_text('{"version": 1, "root": {"level": "INFO"}}')
    st = c.settings_from_mapping({"logconfig_json": str(path)}, "x", "command line", prefer=c.GUNICORN)
    assert st.logconfig_dict == {"version": 1, "root": {"level": "INFO"}}
    assert st.sources["logconfig_dict"] == "command line (logconfig_json)"
    with pytest.raises(s.ConfigError, match="cannot read a JSON logging config"):
        c.settings_from_mapping({"logconfig_json": str(tmp_path / "missing.json")}, "x", "x", prefer=c.GUNICORN)


def test_ipv4_ipv6_alone_change_nothing_and_say_so():
    st = ini({"bind": "127.0.0.1:1", "ipv6": "false"})
    assert st.bind == ["127.0.0.1:1"]
    assert st.notices == ["file app.ini, section [server:main]: ipv6 = false: waitress's setting, ignored: "
                          "it only matters with listen = *:PORT"]


def test_config_from_an_importable_module(tmp_path, monkeypatch):
    (tmp_path / "deploy_conf_for_test.py").write_text("workers = 4\nbind = ['127.0.0.1:9']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    st = c.load_config_file_settings("python:deploy_conf_for_test")
    assert (st.workers, st.bind) == (4, ["127.0.0.1:9"])
    assert st.sources["workers"] == "config file python:deploy_conf_for_test"
