"""Process and socket features of a real server: unix sockets, TLS, daemon mode, user switching,
process titles, preloading and --chdir.

Each test runs the console scripts from the venv. A daemonized master leaves the harness's process
at once, so those tests find it through the pidfile (and an environment tag every process of the
test inherits) and kill it themselves, whatever happens.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sysconfig
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ini_text
from tests.server import (LISTENING, Client, alive, get, read_response, wait_gone, wait_new_workers,
                          wait_until)

APP = "use = call:tests.integration.hookmod:app_factory"
WORKER_CLASSES = ["sync", "eventlet", "gthread"]
TAG_ENV = "PASTESERVE_TEST_PROCESS_TAG"


def ini(options: str, worker_class: str = "sync", app: str = APP) -> str:
    # "gthread" runs the sync worker with four app threads.
    threads = "threads = 4\n" if worker_class == "gthread" else ""
    return ini_text(f"worker_class = {worker_class}\n{threads}{options}", app)


def pid_of(port: int) -> int:
    status, _, body = get(port, "/pid")
    assert status == 200, body
    return int(body)


def tcp_port(addresses: list[str]) -> int:
    (address,) = [a for a in addresses if not a.startswith("unix:")]
    return int(address.rsplit(":", 1)[1])


def wait_log(server, text: str, count: int = 1) -> None:
    server.wait_for(lambda: server.log().count(text) >= count, 20, f"{count} x {text!r} in the log")


# --- processes seen through /proc -----------------------------------------------------------------

def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def title(pid: int) -> str:
    """What ps shows for `pid`: setproctitle rewrites the argv area, padded with NULs or spaces."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def is_worker(pid: int) -> bool:
    try:
        return "worker" in title(pid)
    except OSError:
        return False


def wait_workers(master: int, count: int) -> list[int]:
    """For a master that is not the harness's process (daemonized): `count` booted workers."""
    def ready():
        kids = children(master)
        return kids if len(kids) == count and all(is_worker(k) for k in kids) else None
    return wait_until(ready, 20, f"{count} workers of master {master}")


def ids(pid: int) -> dict[str, list[int]]:
    """The Uid, Gid and Groups lines of /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(v) for v in value.split()]
    return fields


# --- unix sockets ---------------------------------------------------------------------------------

def unix_get(path: Path, target: str) -> tuple[int, dict[str, str], bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        with sock.makefile("rb") as f:
            return read_response(f)


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_unix_socket_serves_and_its_file_is_removed_on_term(start_server, tmp_path, worker_class):
    path = tmp_path / "app.sock"
    server = start_server("pasteserve_paster", ini=ini(f"bind = unix:{path}\naccesslog = -", worker_class))
    assert server.addresses == [f"unix:{path}"]
    mode = os.stat(path).st_mode
    # umask defaults to 0, as Gunicorn's: a proxy running as another user may connect.
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o777

    status, _, body = unix_get(path, "/environ")
    assert status == 200, body
    environ = json.loads(body)
    # A unix peer has no address; the server name comes from the Host header.
    assert environ["REMOTE_ADDR"] == ""
    assert environ["wsgi.url_scheme"] == "http"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    # The access log formats that empty address without failing, and the worker keeps serving.
    wait_log(server, '"GET /environ HTTP/1.1" 200')
    assert unix_get(path, "/pid")[2].decode() in map(str, server.children())

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not path.exists()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_server_name_and_port_are_the_address_the_client_reached(start_server, worker_class, host):
    # Known from the listener when it has one address; asked of each connection under a wildcard.
    server = start_server("pasteserve_paster", ini=ini(f"bind = {host}:0", worker_class))
    port = tcp_port(server.addresses)
    for _ in range(2):   # a new connection each time
        status, _, body = get(port, "/environ")
        assert status == 200, body
        environ = json.loads(body)
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(port))


def test_unix_socket_mode_follows_umask(start_server, tmp_path):
    path = tmp_path / "private.sock"
    start_server("pasteserve_paster", ini=ini(f"bind = unix:{path}\numask = 077"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    status, _, body = unix_get(path, "/hello")
    assert (status, body) == (200, b"Hello, World!")


def test_tcp_and_unix_binds_serve_together(start_server, tmp_path):
    path = tmp_path / "both.sock"
    server = start_server("pasteserve_paster", ini=ini(f"bind = 127.0.0.1:0 unix:{path}\nworkers = 2"))
    addresses = server.wait_for(lambda: len(LISTENING.findall(server.log())) == 2 and LISTENING.findall(server.log()),
                                20, "both listeners")
    assert f"unix:{path}" in addresses
    workers = server.wait_workers(2)
    assert pid_of(tcp_port(addresses)) in workers
    status, _, body = unix_get(path, "/pid")
    assert status == 200 and int(body) in workers


# --- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, usable as its own CA, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def tls_ini(tls_files: tuple[Path, Path], worker_class: str = "sync", options: str = "") -> str:
    cert, key = tls_files
    return ini(f"bind = 127.0.0.1:0\ncertfile = {cert}\nkeyfile = {key}\n{options}", worker_class)


def tls_connect(port: int, cafile: Path, timeout: float = 10.0) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(cafile))   # verifies the chain and 127.0.0.1
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout),
                               server_hostname="127.0.0.1")


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_tls_serves_https_with_keep_alive(start_server, tls_files, worker_class):
    server = start_server("pasteserve_paster", ini=tls_ini(tls_files, worker_class))
    (worker,) = server.wait_workers(1)

    # Plain HTTP on the TLS port fails its handshake; the worker goes on serving.
    with Client(server.port) as plain:
        plain.send(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            answer = plain.rfile.read()   # a TLS alert at most, then the close
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/")

    with tls_connect(server.port, tls_files[0]) as sock, sock.makefile("rb") as rfile:
        for n in range(3):
            sock.sendall(f"GET /environ?n={n} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            status, headers, body = read_response(rfile)
            assert status == 200, body
            assert headers.get("connection", "").lower() != "close"
            environ = json.loads(body)
            assert (environ["wsgi.url_scheme"], environ["QUERY_STRING"]) == ("https", f"n={n}")
            assert environ["SERVER_PORT"] == str(server.port)
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(rfile)[2] == str(worker).encode()


def test_tls_listener_is_announced_as_https(start_server, tls_files):
    server = start_server("pasteserve_paster", ini=tls_ini(tls_files))
    server.wait_workers(1)
    assert server.url == f"https://127.0.0.1:{server.port}"


@pytest.mark.parametrize("worker_class", ["sync", "eventlet", "gthread"])
def test_silent_tls_client_does_not_hold_the_worker(start_server, tls_files, worker_class):
    # header_timeout (10 s) is far above the patient client's 3 s: only a blocked worker makes it wait that long.
    server = start_server("pasteserve_paster", ini=tls_ini(tls_files, worker_class, "header_timeout = 10"))
    server.wait_workers(1)
    with socket.create_connection(("127.0.0.1", server.port)):
        # accept() takes connections in order: the silent one is the worker's first.
        with tls_connect(server.port, tls_files[0], timeout=3) as sock, sock.makefile("rb") as rfile:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert read_response(rfile)[0] == 200


def test_missing_certfile_stops_the_server_with_an_error_naming_it(start_server, tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    server = start_server("pasteserve_paster", expect_listening=False,
                          ini=ini(f"bind = 127.0.0.1:0\ncertfile = {missing}\nkeyfile = {missing}"))
    # Either the master gives up, or it replaces a failed worker: the crash loop; either says enough.
    wait_until(lambda: server.proc.poll() is not None or "replacing it" in server.log(), 20,
               "the server to exit or to replace a worker")
    assert server.proc.poll() is not None, f"the master keeps forking failing workers:\n{server.log()}"
    assert server.proc.returncode != 0
    assert str(missing) in server.log()


# --- daemon mode ----------------------------------------------------------------------------------

def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def tagged(tag: str) -> list[int]:
    """Every process whose environment carries our tag: the daemon and whatever it forked."""
    needle = f"{TAG_ENV}={tag}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextlib.contextmanager
def daemon_reaper(pidfile: Path, tag: str) -> Iterator[None]:
    """Kill the daemon's master (from the pidfile), its process group and every tagged process."""
    try:
        yield
    finally:
        master = read_pid(pidfile)
        if master and alive(master):
            with contextlib.suppress(OSError):
                group = os.getpgid(master)
                if group != os.getpgrp():
                    os.killpg(group, signal.SIGKILL)
        for pid in tagged(tag):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_daemon_writes_the_pidfile_and_winch_ttin_term_drive_it(start_server, tmp_path):
    pidfile, errorlog, tag = tmp_path / "app.pid", tmp_path / "error.log", uuid.uuid4().hex
    with daemon_reaper(pidfile, tag):
        launcher = start_server("pasteserve_paster", expect_listening=False, env={TAG_ENV: tag}, ini=ini(
            f"bind = 127.0.0.1:0\nworkers = 2\ndaemon = true\npidfile = {pidfile}\nerrorlog = {errorlog}"))
        assert launcher.wait_exit(20) == 0
        master = wait_until(lambda: read_pid(pidfile), 20, "the pidfile")
        assert master != launcher.pid and alive(master)
        # Detached: its own session, stdio on /dev/null.
        assert os.getsid(master) != os.getsid(0)
        assert os.readlink(f"/proc/{master}/fd/0") == os.devnull
        match = wait_until(lambda: errorlog.exists() and LISTENING.search(errorlog.read_text()), 20,
                           "the Listening line in the error log")
        port = tcp_port([match.group(1)])
        workers = wait_workers(master, 2)
        assert pid_of(port) in workers

        os.kill(master, signal.SIGWINCH)
        wait_until(lambda: not children(master), 20, "WINCH to stop every worker")
        assert alive(master) and read_pid(pidfile) == master

        os.kill(master, signal.SIGTTIN)
        (worker,) = wait_workers(master, 1)
        assert pid_of(port) == worker

        os.kill(master, signal.SIGTERM)
        wait_gone(master)
        assert not pidfile.exists()
        assert "Shutting down: master" in errorlog.read_text()


def test_winch_is_ignored_when_not_daemonized(start_server):
    server = start_server("pasteserve_paster", ini=ini("bind = 127.0.0.1:0\nworkers = 2\nloglevel = debug"))
    workers = server.wait_workers(2)
    server.signal(signal.SIGWINCH)
    wait_log(server, "SIGWINCH ignored")
    assert sorted(server.children()) == sorted(workers)
    assert pid_of(server.port) in workers


# --- user and group -------------------------------------------------------------------------------

def readable_by_others(path: str) -> bool:
    """Whether any user may read `path`: every directory above it searchable, the path readable."""
    current = Path(path).resolve()
    if os.stat(current).st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
        return False
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in current.parents)


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "load_in_worker"])
def test_workers_run_as_user_and_group_while_the_master_stays_root(start_server, preload):
    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    try:
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user 'nobody' or no group 'nogroup' on this system")
    # A worker loads the app after switching users: the modules it imports must be readable by them.
    stdlib = sysconfig.get_paths()["stdlib"]
    if not preload and not readable_by_others(stdlib):
        pytest.skip(f"the standard library ({stdlib}) is not readable by other users")
    # Module:callable, not an INI in tmp_path, which only root may read.
    argv = ["-b", "127.0.0.1:0", "-w", "2", "-u", "nobody", "-g", "nogroup", "tests.integration.hookmod:app"]
    server = start_server("pasteserve", args=["--preload", *argv] if preload else argv)
    workers = server.wait_workers(2)
    for worker in workers:
        seen = ids(worker)
        assert seen["Uid"] == [uid] * 4 and seen["Gid"] == [gid] * 4
        assert 0 not in seen["Groups"]
    assert ids(server.pid)["Uid"] == [0] * 4 and ids(server.pid)["Gid"] == [0] * 4
    assert pid_of(server.port) in workers


# --- process titles -------------------------------------------------------------------------------

@pytest.mark.parametrize("option, name", [("proc_name = myapp", "myapp"), ("", "app0.ini")],
                         ids=["proc_name", "default"])
def test_process_titles_name_the_role_and_the_app(start_server, option, name):
    server = start_server("pasteserve_paster", ini=ini(f"bind = 127.0.0.1:0\nworkers = 2\n{option}"))
    workers = server.wait_workers(2)
    assert title(server.pid) == f"pasteserve: master [{name}]"
    assert [title(w) for w in workers] == [f"pasteserve: worker [{name}]"] * 2


# --- preload_app ----------------------------------------------------------------------------------

PRELOAD_MODULE = '''\
import os

VERSION = {version!r}
IMPORTED_IN = os.getpid()
with open(os.environ["PRELOAD_IMPORT_LOG"], "a") as log:
    log.write(f"{{IMPORTED_IN}}\\n")


def app(environ, start_response):
    body = f"{{IMPORTED_IN}} {{VERSION}} {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app_factory(global_conf, **local_conf):
    return app
'''


def test_preload_imports_the_app_once_in_the_master_and_hup_keeps_that_code(start_server, tmp_path):
    module, imports = tmp_path / "preload_probe.py", tmp_path / "imports.log"
    module.write_text(PRELOAD_MODULE.format(version="one"))
    app = "use = call:preload_probe:app_factory"
    server = start_server("pasteserve_paster", env={"PRELOAD_IMPORT_LOG": str(imports)},
                          ini=ini("bind = 127.0.0.1:0\npreload_app = true\nworkers = 1", app=app))
    (worker,) = server.wait_workers(1)
    assert get(server.port)[2].decode().split() == [str(server.pid), "one", str(worker)]

    # New code on disk (another length, so no stale bytecode could hide a re-import) and new settings.
    module.write_text(PRELOAD_MODULE.format(version="second"))
    (tmp_path / "app0.ini").write_text(ini("bind = 127.0.0.1:0\npreload_app = true\nworkers = 2", app=app))
    server.signal(signal.SIGHUP)
    workers = wait_new_workers(server, [worker], 2)
    for _ in range(4):
        imported_in, version, pid = get(server.port)[2].decode().split()
        assert (imported_in, version) == (str(server.pid), "one") and int(pid) in workers
    assert imports.read_text().split() == [str(server.pid)]


# --- chdir ----------------------------------------------------------------------------------------

CHDIR_MODULE = '''\
import os


def app(environ, start_response):
    body = os.getcwd().encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def test_chdir_imports_the_app_module_from_that_directory(start_server, tmp_path):
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "chdir_probe.py").write_text(CHDIR_MODULE)
    argv = ["-b", "127.0.0.1:0", "chdir_probe:app"]
    # The server runs in tmp_path: without --chdir the module is nowhere on its path.
    refused = start_server("pasteserve", args=argv, expect_listening=False)
    assert refused.wait_exit(20) != 0
    assert "chdir_probe" in refused.log()

    server = start_server("pasteserve", args=["--chdir", str(directory), *argv])
    (worker,) = server.wait_workers(1)
    status, _, body = get(server.port)
    assert (status, body.decode()) == (200, str(directory))
    assert os.readlink(f"/proc/{worker}/cwd") == str(directory)
