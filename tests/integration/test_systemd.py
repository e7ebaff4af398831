"""systemd's part played by the tests: a NOTIFY_SOCKET datagram socket, and socket activation.

The notify socket asks the kernel for the sender's credentials (SO_PASSCRED), as systemd does, so
the tests see which process said what. Socket activation is done the way systemd does it: the
listening socket is fd 3 of the exec'd server, and LISTEN_PID is the pid that execs it (a small
python wrapper sets it, then execs the console script in the same process).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ini_text
from tests.server import BIN, Server, alive, get, wait_gone, wait_until

APP = "use = call:tests.integration.hookmod:app_factory"

# What systemd's exec does for socket activation: the socket becomes fd 3, LISTEN_PID our own pid.
ACTIVATE = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
            "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); os.execv(sys.argv[2], sys.argv[2:])")


@pytest.fixture(params=["sync", "eventlet"])
def worker_class(request) -> str:
    return request.param


class Notifications:
    """systemd's notify socket: (sender pid, {field: value}) per datagram."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address if not address.startswith("@") else "\0" + address[1:])
        self.sock.settimeout(0.1)
        self.received: list[tuple[int, dict[str, str]]] = []

    def poll(self) -> None:
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return
        pid = 0
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append((pid, fields))

    def wait(self, field: str, count: int = 1, timeout: float = 20.0) -> tuple[int, dict[str, str]]:
        """The count-th message carrying ``field``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.received if field in m[1]]
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {field} from the server; got {self.received}")
            self.poll()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notifications(tmp_path):
    notes = Notifications(str(tmp_path / "notify.sock"))
    yield notes
    notes.close()


def ini(options: str, worker_class: str = "sync") -> str:
    return ini_text(f"bind = 127.0.0.1:0\nworker_class = {worker_class}\n{options}", APP)


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def test_ready_reloading_stopping_and_the_new_master_of_an_upgrade(start_server, notifications, tmp_path,
                                                                    worker_class):
    pidfile = tmp_path / "app.pid"
    server = start_server("pasteserve_paster", ini=ini(f"workers = 2\npidfile = {pidfile}", worker_class),
                          env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    sender, ready = notifications.wait("READY")
    assert (sender, ready["READY"], ready["MAINPID"]) == (server.pid, "1", str(server.pid))
    assert "2 workers" in ready["STATUS"]
    # READY means serving: both workers are there and answer.
    first = server.wait_workers(2, timeout=1)
    assert get(server.port, "/pid")[0] == 200

    server.signal(signal.SIGHUP)
    sender, reloading = notifications.wait("RELOADING")
    assert sender == server.pid and reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    sender, _ = notifications.wait("READY", 2)
    assert sender == server.pid
    # The second READY comes once the new generation serves and the old one is retiring.
    kids = server.children()
    assert len(set(kids) - set(first)) == 2
    assert notifications.received.index(notifications.wait("RELOADING")) < \
        notifications.received.index(notifications.wait("READY", 2))

    # The recipe of docs/deploy.md: signals to the pid in the pidfile.
    os.kill(read_pid(pidfile), signal.SIGUSR2)
    new_master = server.wait_for(lambda: read_pid(Path(f"{pidfile}.2")), 20, "PIDFILE.2")
    try:
        sender, ready = notifications.wait("READY", 3)
        assert (sender, ready["MAINPID"]) == (new_master, str(new_master))
        server.wait_workers(2, pid=new_master, timeout=1)
        # The old master goes; the service does not stop: no STOPPING from it.
        assert read_pid(pidfile) == server.pid
        os.kill(read_pid(pidfile), signal.SIGTERM)
        assert server.wait_exit(30) == 0
        for _ in range(5):
            notifications.poll()
        assert not [m for m in notifications.received if "STOPPING" in m[1]]
        wait_until(lambda: read_pid(pidfile) == new_master, 20, "the new master to take over the pidfile")
        os.kill(new_master, signal.SIGTERM)
        sender, stopping = notifications.wait("STOPPING")
        assert (sender, stopping["STOPPING"]) == (new_master, "1")
        wait_gone(new_master, 30)
    finally:
        if alive(new_master):
            os.kill(new_master, signal.SIGKILL)


def test_quit_and_int_say_stopping_and_abstract_socket_names_work(start_server, tmp_path):
    name = f"@pasteserve-test-{os.getpid()}-{time.monotonic_ns()}"
    notes = Notifications(name)
    try:
        for sig in (signal.SIGQUIT, signal.SIGINT):
            server = start_server("pasteserve_paster", ini=ini("workers = 1"), env={"NOTIFY_SOCKET": name})
            sender, _ = notes.wait("READY")
            server.signal(sig)
            assert server.wait_exit(30) == 0
            sender, _ = notes.wait("STOPPING")
            assert sender == server.pid
            notes.received.clear()
    finally:
        notes.close()


def test_a_hup_whose_config_is_bad_still_ends_with_ready(start_server, notifications, tmp_path):
    server = start_server("pasteserve_paster", ini=ini("workers = 1"),
                          env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    notifications.wait("READY")
    ini_path = Path(server.argv[1])
    ini_path.write_text(ini_path.read_text().replace("workers = 1", "workers = lots"))
    server.signal(signal.SIGHUP)
    notifications.wait("RELOADING")
    sender, _ = notifications.wait("READY", 2)
    assert sender == server.pid
    assert "Reload cancelled" in server.log()


def test_watchdog_pings_from_the_master_only_when_it_is_the_watched_pid(start_server, notifications, tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
    server = start_server("pasteserve_paster", ini=ini("workers = 1"), env=env)
    notifications.wait("READY")
    pings = [notifications.wait("WATCHDOG", n, timeout=10) for n in (1, 2, 3)]
    assert {sender for sender, _ in pings} == {server.pid}
    server.stop()
    # systemd watches another process (WATCHDOG_PID): not ours to ping.
    notifications.received.clear()
    server = start_server("pasteserve_paster", ini=ini("workers = 1"), env={**env, "WATCHDOG_PID": "1"})
    notifications.wait("READY")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        notifications.poll()
    assert not [m for m in notifications.received if "WATCHDOG" in m[1]]


# --- socket activation ----------------------------------------------------------------------------

def activated_server(tmp_path: Path, listener: socket.socket, ini_text_: str) -> Server:
    path = tmp_path / f"activated{len(list(tmp_path.glob('activated*.ini')))}.ini"
    path.write_text(ini_text_)
    fd = listener.fileno()
    argv = [sys.executable, "-c", ACTIVATE, str(fd), str(BIN / "pasteserve_paster"), str(path)]
    return Server(argv, tmp_path, pass_fds=(fd,))


@pytest.fixture
def activated(tmp_path):
    started: list[Server] = []

    def start(listener: socket.socket, text: str, expect_listening: bool = True) -> Server:
        server = activated_server(tmp_path, listener, text)
        started.append(server)
        return server.start(expect_listening=expect_listening)

    yield start
    for server in started:
        server.stop()


def tcp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_without_bind_the_inherited_socket_is_served(activated, worker_class):
    listener = tcp_listener()
    port = listener.getsockname()[1]
    try:
        server = activated(listener, ini_text(f"worker_class = {worker_class}", APP))
        assert server.addresses == [f"http://127.0.0.1:{port}"]
        server.wait_workers(1)
        assert get(port, "/pid")[0] == 200
        assert "Closing inherited socket" not in server.log()
        # Our own copy is the only one left: the server's descriptor keeps the socket listening.
        listener.close()
        assert get(port, "/pid")[0] == 200
    finally:
        listener.close()


def test_a_bind_matching_the_inherited_socket_reuses_it(activated):
    listener = tcp_listener()
    port = listener.getsockname()[1]
    try:
        server = activated(listener, ini_text(f"bind = 127.0.0.1:{port}", APP))
        assert server.addresses == [f"http://127.0.0.1:{port}"]
        assert "address in use" not in server.log()
        server.wait_workers(1)
        assert get(port, "/pid")[0] == 200
    finally:
        listener.close()


def test_an_activated_unix_socket_file_outlives_the_server(activated, tmp_path):
    # systemd keeps the socket for the next start: stopping must not remove its file.
    path = str(tmp_path / "web.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    try:
        server = activated(listener, ini_text("workers = 1", APP))
        assert server.addresses == [f"unix:{path}"]
        server.wait_workers(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(path)
            client.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert client.recv(100).startswith(b"HTTP/1.1 200")
        server.signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0
        assert os.path.exists(path)
        # The next start finds connections queued meanwhile (systemd's promise).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
    finally:
        listener.close()


# --- the units of docs/deploy.md, run as far as a machine without systemd allows -------------------

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "docs" / "examples"


def unit_file(name: str) -> dict[str, dict[str, str]]:
    """A systemd unit file's [Section] key=value lines (comments skipped)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (EXAMPLES / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_the_documented_units(tmp_path, notifications):
    socket_unit, service = unit_file("pasteserve.socket"), unit_file("pasteserve.service")["Service"]
    assert (service["Type"], service["NotifyAccess"], service["KillMode"]) == ("notify", "all", "mixed")
    run = tmp_path / "run"   # /run/pasteserve
    run.mkdir()
    path = socket_unit["Socket"]["ListenStream"].replace("/run/pasteserve", str(run))
    ini = (EXAMPLES / "production.ini").read_text().replace("/run/pasteserve", str(run))
    ini = ini.replace("statsd_host = 127.0.0.1:8125", "statsd_host = 127.0.0.1:9")   # nobody listens: fine
    (tmp_path / "production.ini").write_text(ini)
    # What systemd does: bind ListenStream, exec ExecStart with it as fd 3, NOTIFY_SOCKET set.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    exec_start = service["ExecStart"].split()
    assert exec_start == ["/srv/app/.venv/bin/pasteserve_paster", "/srv/app/production.ini"]
    argv = [sys.executable, "-c", ACTIVATE, str(listener.fileno()), str(BIN / "pasteserve_paster"),
            str(tmp_path / "production.ini")]
    watchdog_usec = str(int(service["WatchdogSec"]) * 1_000_000)
    server = Server(argv, tmp_path, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                         "WATCHDOG_USEC": watchdog_usec}, pass_fds=(listener.fileno(),))
    try:
        server.start()
        assert server.addresses == [f"unix:{path}"]
        _, ready = notifications.wait("READY")
        main_pid = int(ready["MAINPID"])
        assert main_pid == server.pid and "4 workers" in ready["STATUS"]
        assert notifications.wait("WATCHDOG")[0] == main_pid
        reload = service["ExecReload"].replace("$MAINPID", str(main_pid)).split()
        assert subprocess.run(reload, timeout=10).returncode == 0
        notifications.wait("RELOADING")
        notifications.wait("READY", 2)
        done = subprocess.run([str(BIN / "pasteserve"), "status", str(run / "app.pid")], capture_output=True,
                              text=True, timeout=10)
        assert done.returncode == 0 and done.stdout.count(" worker ") == 4, done.stdout + done.stderr
        # systemctl stop with KillMode=mixed: TERM to the main process.
        os.kill(main_pid, signal.SIGTERM)
        assert server.wait_exit(45) == 0
        notifications.wait("STOPPING")
        assert os.path.exists(path)
    finally:
        server.stop()
        listener.close()


def test_deploy_md_shows_the_example_files():
    guide = (EXAMPLES.parent / "deploy.md").read_text()
    for name in ("pasteserve.socket", "pasteserve.service", "production.ini"):
        assert (EXAMPLES / name).read_text() in guide, f"docs/deploy.md does not show docs/examples/{name}"
