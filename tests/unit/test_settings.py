"""The settings table: checks, the configobj-driven validation, CLI flags and generated docs."""

import argparse
from pathlib import Path

import pytest

from pasteserve import settings as s

REPO = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_table():
    assert (REPO / "docs" / "settings.md").read_text() == s.render_docs(), \
        "docs/settings.md is stale: run `python -m pasteserve.settings > docs/settings.md`"


def test_every_setting_has_a_known_check_and_a_doc():
    for setting in s.SETTINGS:
        assert setting.check in s.CHECKS, setting.name
        assert setting.doc.strip(), setting.name
        # The default itself passes the check (defaults are data, not special cases).
        if setting.default is not None:
            assert setting.parse(setting.default) == setting.default, setting.name


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("Yes", True), ("on", True), ("1", True),
    ("false", False), ("NO", False), ("off", False), ("0", False),
])
def test_booleans_accept_what_pastedeploy_accepts(text, expected):
    assert s.check_bool(text) is expected


def test_values_are_typed():
    st = s.settings_from_mapping({"workers": "3", "bind": "127.0.0.1:9000, [::1]:9001", "preload_app": "yes",
                                  "timeout": "2.5", "umask": "027"}, "test", "INI")
    assert (st.workers, st.preload_app, st.timeout, st.umask) == (3, True, 2.5, 0o27)
    assert st.bind == ["127.0.0.1:9000", "[::1]:9001"]
    assert st.sources["workers"] == "INI" and st.sources["keepalive"] == "default"


def test_every_problem_is_reported_at_once_with_what_is_allowed():
    with pytest.raises(s.ConfigError) as info:
        s.validate({"workers": "abc", "timout": "3", "worker_class": "gevent", "bind": "x:y",
                    "keepalive": "-1", "preload_app": "maybe"}, "file app.ini, section [server:main]")
    report = str(info.value)
    assert report.startswith("Invalid configuration in file app.ini, section [server:main]:")
    assert 'timout = 3: unknown option; did you mean "timeout"?' in report
    assert "workers = abc: expected a whole number from 1 to 1000" in report
    assert "worker_class = gevent: expected one of: sync, gthread, eventlet" in report
    assert "bind = x:y:" in report and "HOST:PORT" in report
    assert "keepalive = -1: expected a number from 0 to 3600" in report
    assert "preload_app = maybe: expected a boolean" in report
    assert len(info.value.problems) == 6


def test_cli_flags_come_from_the_table():
    parser = argparse.ArgumentParser()
    s.add_arguments(parser)
    ns = parser.parse_args(["-w", "4", "-b", "127.0.0.1:1", "-b", "unix:/tmp/s", "-k", "eventlet", "--preload",
                            "--keep-alive", "0", "--limit-request-field_size", "100"])
    st = s.settings_from_mapping(s.cli_values(ns), "command line", "command line")
    assert (st.workers, st.worker_class, st.preload_app, st.keepalive) == (4, "eventlet", True, 0.0)
    assert st.bind == ["127.0.0.1:1", "unix:/tmp/s"]
    assert st.limit_request_field_size == 100
    assert s.cli_values(parser.parse_args([])) == {}


def test_runtime_options_are_typed():
    st = s.settings_from_mapping({
        "limit_request_body": "1048576", "limit_request_fields": "0", "limit_request_field_size": "0",
        "forwarded_allow_ips": "10.0.0.0/8 fd00::/8", "trusted_proxy_headers": "X-Forwarded-For, x-forwarded-proto",
        "trusted_proxy_count": "2", "clear_untrusted_proxy_headers": "true", "url_scheme": "HTTPS",
        "ident": "shop/1.0", "expose_tracebacks": "on", "unix_socket_perms": "660",
        "ca_certs": "/etc/ca.pem", "cert_reqs": "required", "ciphers": "ECDHE+AESGCM", "tls_min_version": "1.3",
    }, "test", "INI")
    assert (st.limit_request_body, st.limit_request_fields, st.limit_request_field_size) == (1048576, 0, 0)
    assert st.forwarded_allow_ips == ["10.0.0.0/8", "fd00::/8"]
    assert (st.trusted_proxy_headers, st.trusted_proxy_count) == (["x-forwarded-for", "x-forwarded-proto"], 2)
    assert (st.clear_untrusted_proxy_headers, st.url_scheme, st.ident, st.expose_tracebacks) == (True, "https", "shop/1.0", True)
    assert (st.unix_socket_perms, st.cert_reqs, st.tls_min_version) == (0o660, 2, "1.3")
    assert s.check_cert_reqs(1) == s.check_cert_reqs("optional") == 1


@pytest.mark.parametrize("key, value, message", [
    ("trusted_proxy_headers", "x-real-ip", "unknown proxy header x-real-ip"),
    ("trusted_proxy_headers", "forwarded x-forwarded-for", "exclude each other"),
    ("cert_reqs", "3", "expected 0/none, 1/optional or 2/required"),
    ("tls_min_version", "1.1", "expected one of: 1.2, 1.3"),
    ("url_scheme", "ftp", "expected one of: http, https"),
    ("ident", "bad\x01name", "printable ASCII"),
    ("limit_request_body", "-1", ">= 0"),
    ("trusted_proxy_count", "0", ">= 1"),
    ("forwarded_allow_ips", "10.0.0.0/33", "not an IP address or network"),
])
def test_runtime_options_refuse_bad_values(key, value, message):
    with pytest.raises(s.ConfigError) as info:
        s.settings_from_mapping({key: value}, "file app.ini, section [server:main]", "INI")
    assert message in str(info.value) and key in str(info.value)


def test_threads_choose_the_gthread_worker():
    from pasteserve import workers

    parser = argparse.ArgumentParser()
    s.add_arguments(parser)
    st = s.settings_from_mapping(s.cli_values(parser.parse_args(["--threads", "4"])), "command line", "command line")
    assert (st.worker_class, st.threads) == ("sync", 4)
    assert workers.chosen(st.worker_class, st.threads) == "gthread"
    assert workers.chosen("sync", 1) == "sync"
    # Gunicorn's name is accepted as it is, with however many threads (one by default).
    assert workers.chosen(s.settings_from_mapping({"worker_class": "gthread"}, "t", "INI").worker_class, 1) == "gthread"
    with pytest.raises(s.ConfigError) as info:
        s.validate({"threads": "0"}, "t")
    assert "threads = 0: expected a whole number from 1 to 1000" in str(info.value)


@pytest.mark.parametrize("layers,blamed", [
    ([{"worker_class": "eventlet", "threads": "4"}], "threads = 4: the eventlet worker has no thread pool"),
    # Blame the key that made the contradiction in this layer: threads came from the base.
    ([{"threads": "4"}, {"worker_class": "eventlet"}], "worker_class = eventlet: cannot run with threads = 4"),
    ([{"worker_class": "eventlet"}, {"threads": "2"}], "threads = 2: the eventlet worker has no thread pool"),
])
def test_threads_under_eventlet_are_refused_naming_the_key_and_what_to_use(layers, blamed):
    base = None
    with pytest.raises(s.ConfigError) as info:
        for i, raw in enumerate(layers):
            base = s.settings_from_mapping(raw, f"layer {i}", f"layer {i}", base)
    report = str(info.value)
    assert report.startswith(f"Invalid configuration in layer {len(layers) - 1}:")
    assert blamed in report and "gthread" in report
    # One thread is what eventlet has anyway: not an error.
    assert s.settings_from_mapping({"worker_class": "eventlet", "threads": "1"}, "t", "INI").threads == 1
