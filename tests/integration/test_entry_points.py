"""Walking skeleton: the ways users start pasteserve, as real processes on 127.0.0.1."""

import subprocess

import pytest
from paste.deploy import loadserver

from pasteserve.paste import PasteServer
from tests.conftest import ini_text
from tests.server import BIN, get

TEST_APP = "use = call:tests.apps:app_factory"


def test_egg_entry_point_resolves_through_pastedeploy(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:0\nworkers = 3"))
    server = loadserver(f"config:{ini}")
    assert isinstance(server, PasteServer)
    assert server.settings.workers == 3
    assert server.settings.sources["workers"] == "[server:main]"


def test_pasteserve_paster_serves_the_ini_app_with_n_workers(start_server):
    server = start_server("pasteserve_paster", ini=ini_text("bind = 127.0.0.1:0\nworkers = 2"))
    assert len(server.wait_workers(2)) == 2
    status, headers, body = get(server.port, "/some/path?x=1")
    assert status == 200
    assert b"PATH_INFO" in body and b"/some/path" in body
    assert headers["server"].startswith("pasteserve")


def test_pserve_serves_through_our_server_factory(start_server):
    server = start_server("pserve", ini=ini_text("bind = 127.0.0.1:0\nworkers = 2", TEST_APP))
    server.wait_workers(2)
    status, _, body = get(server.port, "/hello")
    assert (status, body) == (200, b"Hello, World!")


def test_pasteserve_cli_serves_module_callable(start_server):
    server = start_server("pasteserve", args=["-w", "2", "-b", "127.0.0.1:0", "tests.apps:router"])
    server.wait_workers(2)
    assert get(server.port, "/hello")[2] == b"Hello, World!"


def test_pasteserve_cli_paste_option(start_server, tmp_path):
    ini = tmp_path / "cli.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:1", TEST_APP))
    server = start_server("pasteserve", args=["--paste", str(ini), "-b", "127.0.0.1:0"])
    assert get(server.port, "/hello")[2] == b"Hello, World!"


def test_pserve_key_value_overrides_the_section(start_server):
    # PasteDeploy drops `workers` from the section's options when it is also a global var.
    server = start_server("pserve", ini=ini_text("bind = 127.0.0.1:0\nworkers = 2", TEST_APP), args=["workers=3"])
    server.wait_workers(3)
    assert get(server.port, "/hello")[0] == 200


def test_default_section_values_are_used_not_silently_dropped(start_server):
    ini = "[DEFAULT]\nworkers = 3\n\n" + ini_text("bind = 127.0.0.1:0", TEST_APP)
    server = start_server("pasteserve_paster", ini=ini)
    server.wait_workers(3)


def test_section_value_wins_over_default_section(start_server):
    ini = "[DEFAULT]\nworkers = 3\n\n" + ini_text("bind = 127.0.0.1:0\nworkers = 2", TEST_APP)
    server = start_server("pasteserve_paster", ini=ini)
    server.wait_workers(2)


@pytest.mark.parametrize("command", ["pasteserve_paster", "pserve"])
def test_bad_config_is_one_clear_report_and_a_nonzero_exit(tmp_path, command):
    ini = tmp_path / "bad.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:0\nworkers = many\nworker_class = gevent\ntimout = 3"))
    result = subprocess.run([str(BIN / command), str(ini)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    err = result.stderr
    assert f"file {ini}, section [server:main]" in err
    assert "workers = many: expected a whole number from 1 to 1000" in err
    assert "worker_class = gevent: expected one of: sync, gthread, eventlet" in err
    assert 'timout = 3: unknown option; did you mean "timeout"?' in err
    assert "Traceback" not in err


def test_app_that_cannot_load_stops_the_server_with_a_clear_message(tmp_path):
    ini = tmp_path / "noapp.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:0\nworkers = 2", "use = call:no_such_module:factory"))
    result = subprocess.run([str(BIN / "pasteserve_paster"), str(ini)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no_such_module" in result.stderr
    # One clear failure, not a fork loop.
    assert result.stderr.count("Booting worker") <= 2


def test_cli_app_import_error(tmp_path):
    result = subprocess.run([str(BIN / "pasteserve"), "-b", "127.0.0.1:0", "no_such_module:app"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "cannot import 'no_such_module'" in result.stderr


def test_cli_bad_flag_value(tmp_path):
    result = subprocess.run([str(BIN / "pasteserve"), "-w", "zero", "tests.apps:router"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Invalid configuration in command line:" in result.stderr
    assert "workers = zero: expected a whole number from 1 to 1000" in result.stderr


def test_cli_paste_takes_server_options_from_the_ini_under_the_flags(start_server, tmp_path):
    ini = tmp_path / "opts.ini"
    ini.write_text(ini_text("bind = 127.0.0.1:1\nworkers = 2\nkeepalive = 0", TEST_APP))
    server = start_server("pasteserve", args=["--paste", str(ini), "-b", "127.0.0.1:0"])
    server.wait_workers(2)
    status, headers, _ = get(server.port, "/hello")
    assert status == 200
