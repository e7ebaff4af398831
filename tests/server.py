"""Run pasteserve as users do, as a real process, and talk to it over 127.0.0.1.

Servers bind port 0 and we read the port from the "Listening at" log line, so tests never race
for ports and never wait with a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: (\S+)")


class Server:
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.argv = argv
        self.pass_fds = pass_fds
        self.cwd = cwd
        self.log_path = cwd / f"server-{len(list(cwd.glob('server-*.log')))}.log"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            [str(REPO), str(REPO / "tests"), str(cwd), os.environ.get("PYTHONPATH", "")]))
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.addresses: list[str] = []

    def start(self, timeout: float = 20.0, expect_listening: bool = True) -> "Server":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     pass_fds=self.pass_fds)
        if expect_listening:
            self.wait_for(lambda: LISTENING.search(self.log()), timeout, "the server to listen")
            self.addresses = LISTENING.findall(self.log())
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.addresses[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return self.addresses[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            if self.proc is not None and self.proc.poll() is not None and not predicate():
                raise AssertionError(f"server exited ({self.proc.returncode}) while waiting for {what}:\n{self.log()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.log()}")

    def children(self, pid: int | None = None) -> list[int]:
        """Worker pids: the direct children of the master (or of `pid`)."""
        return children(pid or self.pid)

    def wait_workers(self, count: int, timeout: float = 20.0, pid: int | None = None) -> list[int]:
        """Wait until exactly `count` workers run and answer; returns their pids."""
        def ready():
            kids = self.children(pid)
            return kids if len(kids) == count and all(_booted(k) for k in kids) else None
        return self.wait_for(ready, timeout, f"{count} workers")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """TERM, then KILL the whole process group: always leaves nothing running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()


def _booted(pid: int) -> bool:
    # setproctitle renames a worker once forked; the title says it is ours.
    try:
        return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


class Client:
    """One keep-alive connection with its own buffered reader, for several requests in a row."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = connect(port, timeout)
        self.rfile = self.sock.makefile("rb")

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        return read_response(self.rfile, head)

    def get(self, path: str = "/", headers: Iterable[str] = ()) -> tuple[int, dict[str, str], bytes]:
        extra = "".join(f"{h}\r\n" for h in headers)
        self.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
        return self.response()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.rfile.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_response(f, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length, chunked or close-delimited) from a buffered reader."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if head:
        body = b""
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = f.read()
    return status, headers, body


def request(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    with Client(port, timeout) as client:
        client.send(raw)
        return client.response()


def get(port: int, path: str = "/", headers: Iterable[str] = ()) -> tuple[int, dict[str, str], bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    return request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n".encode())


# --- process helpers for the signal, reload and upgrade tests ------------------------------------

def children(pid: int) -> list[int]:
    """The direct children of `pid` (none once it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def free_port() -> int:
    """A port nothing listens on now, for servers that must bind a known port (reloads, proxies)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parent_pid(pid: int) -> int:
    """The parent of `pid` (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name, in parentheses, may contain spaces: the fields after it are safe to split.
    return int(stat.rpartition(")")[2].split()[1])


def traced(pid: int) -> bool:
    """True once a tracer (strace) is attached to `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("TracerPid:")).split()[1] != "0"


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still runs after {timeout}s")
        time.sleep(0.02)


def wait_new_workers(server: Server, old: Iterable[int], count: int, timeout: float = 20.0,
                     pid: int | None = None) -> list[int]:
    """Wait until exactly `count` booted workers run and none of them is in `old`."""
    old = set(old)

    def replaced():
        kids = server.children(pid)
        return kids if len(kids) == count and not old & set(kids) and all(_booted(k) for k in kids) else None
    return server.wait_for(replaced, timeout, f"{count} workers, none of {sorted(old)}")


def wait_until(predicate, timeout: float, what: str):
    """Poll `predicate` until it is true; unlike Server.wait_for, does not care which process runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
