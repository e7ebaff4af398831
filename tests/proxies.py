"""Real nginx and HAProxy in front of test servers, as child processes of the test.

The configs come from docs/examples/ (the ones docs/deploy.md shows), with the example
addresses replaced by the test's: `127.0.0.1:8000` and `:8001` by the instances' ports,
port 8080 by a free one. Each proxy runs in the foreground with its pid, logs and temp
files in its own directory, and `start_proxy` stops every one it started, even when the test
fails. A test skips when the binary is missing (scripts/system-deps installs both).

    def test_x(start_proxy, start_server):
        proxy = start_proxy("nginx", example("nginx-pasteserve.conf", [port1, port2]))
        get(proxy.port, "/")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.server import REPO, free_port

EXAMPLES = REPO / "docs" / "examples"
EXAMPLE_UPSTREAMS = ("127.0.0.1:8000", "127.0.0.1:8001")
EXAMPLE_LISTEN = 8080


def certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem); also both in one file,
    cert+key.pem, as HAProxy's `crt` wants."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    (directory / "cert+key.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    return str(cert), str(key)


def example(name: str, upstreams: list[int], listen: int | None = None) -> tuple[str, int]:
    """The example config `name` pointed at the test's instances; (text, the port it listens on)."""
    text = (EXAMPLES / name).read_text()
    for placeholder, port in zip(EXAMPLE_UPSTREAMS, upstreams):
        text = text.replace(placeholder, f"127.0.0.1:{port}")
    for placeholder in EXAMPLE_UPSTREAMS[len(upstreams):]:   # fewer instances: drop the extra lines
        text = "\n".join(line for line in text.splitlines() if placeholder not in line) + "\n"
    listen = listen or free_port()
    text = text.replace(f"listen {EXAMPLE_LISTEN};", f"listen 127.0.0.1:{listen};")
    text = text.replace(f"bind 127.0.0.1:{EXAMPLE_LISTEN}", f"bind 127.0.0.1:{listen}")
    return text, listen


class Proxy:
    def __init__(self, kind: str, directory: Path, argv: list[str], port: int) -> None:
        self.kind = kind
        self.dir = directory
        self.argv = argv
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.output = directory / "output.log"

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    def errors(self) -> str:
        """nginx's error log (HAProxy's messages go to the output)."""
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def start(self, timeout: float = 15.0) -> "Proxy":
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} exited ({self.proc.returncode}):\n"
                                     f"{self.output.read_text(errors='replace')}\n{self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.kind} did not listen on {self.port} within {timeout}s")

    def reload(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP if self.kind == "nginx" else signal.SIGUSR2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)   # fast shutdown for both
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)


def _binary(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/system-deps installs it)")
    return found


def nginx(directory: Path, site: str, port: int) -> Proxy:
    """nginx running `site` (a conf.d file: upstreams and servers) inside a minimal main config."""
    binary = _binary("nginx")
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    (directory / "site.conf").write_text(site)
    # As root (CI), nginx's workers would become `nobody`, who cannot read the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {kind}_temp_path tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (directory / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid nginx.pid;\nerror_log error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log access.log;\n{temp}    include site.conf;\n}}\n")
    argv = [binary, "-p", str(directory), "-c", "nginx.conf", "-e", "error.log", "-g", "daemon off;"]
    return Proxy("nginx", directory, argv, port)


def haproxy(directory: Path, config: str, port: int) -> Proxy:
    """HAProxy running `config` (defaults, frontends, backends) after a minimal global section."""
    binary = _binary("haproxy")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "haproxy.cfg").write_text("global\n    maxconn 2000\n\n" + config)
    return Proxy("haproxy", directory, [binary, "-f", "haproxy.cfg", "-db"], port)


@pytest.fixture
def start_proxy(tmp_path):
    """start_proxy("nginx" | "haproxy", (config, port)) -> a running Proxy, stopped at the end."""
    started: list[Proxy] = []

    def start(kind: str, config: tuple[str, int]) -> Proxy:
        directory = tmp_path / f"{kind}-{len(started)}"
        directory.mkdir()
        make = nginx if kind == "nginx" else haproxy
        proxy = make(directory, *config)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()
