"""`pserve --reload app.ini`, the development loop of every Pyramid tutorial: each change stops the
server within the one second pserve gives it, and a new one serves."""

from __future__ import annotations

import re
import time

from tests.server import free_port
from tests.server import BIN, Client, Server, alive, get, wait_until

INI = """\
[app:main]
use = call:tests.frameworks.pyramid_app:main
greeting = {greeting}
data_dir = %(here)s/data

[server:main]
use = egg:pasteserve#main
bind = 127.0.0.1:{port}
workers = 2
"""


def servers(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"Starting server in PID (\d+)", log)]


def workers_of(log: str, master: int) -> list[int]:
    return [int(p) for p in re.findall(rf"\[{master}\] \[INFO\] Booting worker with pid (\d+)", log)]


def test_three_edits_three_clean_restarts(tmp_path):
    port = free_port()
    ini = tmp_path / "development.ini"
    ini.write_text(INI.format(greeting="v0", port=port))
    server = Server([str(BIN / "pserve"), "--reload", str(ini)], tmp_path)
    try:
        server.start(timeout=30)
        seen_workers: list[int] = []
        for n in range(1, 4):
            # A browser keeps its connection open between page loads; the stop must not wait for it.
            client = Client(port)
            assert client.get("/settings")[0] == 200
            masters = servers(server.log())
            old_master = masters[-1]
            server.wait_for(lambda: len(workers_of(server.log(), old_master)) >= 2, 10, "the workers")
            old_workers = workers_of(server.log(), old_master)
            seen_workers += old_workers
            detected = server.log().count("changed; reloading")
            writes: list[float] = []

            def restarted():
                # hupper compares modification times against what it saw first: an edit in the
                # same instant as its first look goes unseen, so edit again until one is seen.
                if server.log().count("changed; reloading") == detected and \
                        (not writes or time.monotonic() - writes[-1] > 2.5):
                    ini.write_text(INI.format(greeting=f"v{n}", port=port) + f"# edit {len(writes)}\n")
                    writes.append(time.monotonic())
                return len(servers(server.log())) > len(masters)
            server.wait_for(restarted, 20, f"restart {n}")

            def serves_new():
                try:
                    return f"v{n}".encode() in get(port, "/settings")[2]
                except OSError:
                    return False
            server.wait_for(serves_new, 20, f"the server to serve edit {n}")
            client.close()
            # The old master and every one of its workers are gone; no worker outlived its master.
            assert not alive(old_master)
            assert not [p for p in old_workers if alive(p)]
        log = server.log()
        assert log.count("changed; reloading") == 3
        assert log.count("Shutting down: master") == 3
        assert "forcefully killing" not in log
    finally:
        server.stop()
    wait_until(lambda: not [p for p in seen_workers + servers(server.log()) if alive(p)], 10,
               "every server and worker to be gone")


def test_reload_extra_files_are_watched_under_pserve(tmp_path):
    port = free_port()
    extra = tmp_path / "template.html"
    extra.write_text("one")
    ini = tmp_path / "development.ini"
    ini.write_text(INI.format(greeting="v0", port=port) + f"reload_extra_files = {extra}\n")
    server = Server([str(BIN / "pserve"), "--reload", str(ini)], tmp_path)
    try:
        server.start(timeout=30)
        writes: list[float] = []

        def restarted():
            if "changed; reloading" not in server.log() and (not writes or time.monotonic() - writes[-1] > 2.5):
                extra.write_text(f"edit {len(writes)}")
                writes.append(time.monotonic())
            return len(servers(server.log())) == 2
        server.wait_for(restarted, 20, "a restart after the extra file changed")
        assert f"{extra} changed; reloading" in server.log()
        assert "forcefully killing" not in server.log()
    finally:
        server.stop()
