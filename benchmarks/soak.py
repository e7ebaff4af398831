"""Chaos soak: mixed load on a real pasteserve while signals, SIGKILLs and hostile clients hit it.

    .venv/bin/python -m benchmarks.soak [--duration 180] [--worker-class sync|eventlet] [--workers 3]
                                        [--interval 2] [--tls] [--seed N] [--json PATH]

Starts `pasteserve_paster` (serving benchmarks/soak_app.py) on 127.0.0.1, then for `--duration`
seconds runs, all at once:

- load: keep-alive GETs, a new connection per GET, uploads (Content-Length and chunked, up to
  512 KiB, checked by length and hash) and streaming downloads (up to 4 MiB, checked by length);
- chaos, every `--interval` seconds (each kind once first, in random order, then at random):
  SIGKILL a worker, HUP, TTIN, TTOU (never below one worker), and a USR2 upgrade following the
  recipe in docs/signals.md (USR2 to the pidfile's master, wait for PIDFILE.2 and its workers,
  TERM the old master, wait until the pidfile names the new one);
- hostile clients: random garbage, requests cut off by a TCP reset, heads trickled a byte at a
  time past header_timeout, idle connections, and TLS handshakes that stop in the middle.

A failed request is *allowed* only when it can have been in flight on a killed worker: the
connection was reset or closed under it (never a timeout or a wrong answer) and a worker was
SIGKILLed while it ran. A reused keep-alive connection the server closed before answering a
single byte is retried on a new connection, as HTTP clients do, and counted as `stale`.

Prints a Markdown report (requests served and failed, chaos and hostile counts, RSS and
descriptors of the master and workers at start and end) and exits 1 on any disallowed failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TAG_ENV = "PASTESERVE_SOAK_TAG"
REQUEST_TIMEOUT = 30.0
# Chaos actions and their weights once each has run once.
ACTIONS = {"kill": 4, "hup": 2, "ttin": 2, "ttou": 2, "usr2": 2}


# --- the server ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def booted(pid: int) -> bool:
    try:
        return b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def usage(pid: int) -> tuple[int, int] | None:
    """(RSS in KiB, open descriptors) of a process, None once it is gone."""
    try:
        rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


def wait_until(predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    return None


class Server:
    """pasteserve_paster in a session of its own; the current master is the one in the pidfile."""

    def __init__(self, directory: Path, worker_class: str, workers: int, tls: bool) -> None:
        self.dir = directory
        self.port = free_port()
        self.workers = workers
        self.tls = tls
        self.pidfile = directory / "soak.pid"
        self.tag = uuid.uuid4().hex
        options = [f"bind = 127.0.0.1:{self.port}", f"workers = {workers}", f"worker_class = {worker_class}",
                   f"pidfile = {self.pidfile}", f"errorlog = {directory / 'error.log'}", "header_timeout = 5",
                   "graceful_timeout = 20", "timeout = 30", "max_requests = 3000", "max_requests_jitter = 500"]
        if tls:
            cert, key = directory / "cert.pem", directory / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                            "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                           check=True, capture_output=True)
            options += [f"certfile = {cert}", f"keyfile = {key}"]
        self.ini = directory / "soak.ini"
        self.ini.write_text("[app:main]\nuse = call:benchmarks.soak_app:app_factory\n\n[server:main]\n"
                            "use = egg:pasteserve#main\n" + "\n".join(options) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env[TAG_ENV] = self.tag
        self.log = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen([str(BIN / "pasteserve_paster"), str(self.ini)], cwd=REPO, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if not wait_until(lambda: self.master() and len(self.worker_pids()) >= self.workers and answers(self), 30):
            raise RuntimeError(f"the server did not start:\n{self.error_log()}")

    def master(self) -> int:
        return read_pid(self.pidfile)

    def worker_pids(self, master: int = 0) -> list[int]:
        return [p for p in children(master or self.master()) if booted(p)]

    def error_log(self) -> str:
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        """TERM the current master, then KILL whatever still carries our tag; the count of such strays."""
        master = self.master()
        if master and alive(master):
            os.kill(master, signal.SIGTERM)
            wait_until(lambda: not alive(master), 40)
        strays = [p for p in tagged(self.tag) if alive(p)]
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
            self.log.close()
        return len(strays)


def tagged(tag: str) -> list[int]:
    needle = f"{TAG_ENV}={tag}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# --- HTTP over raw sockets ------------------------------------------------------------------------

class Stale(Exception):
    """A reused connection closed before a single byte of the answer."""


class WrongAnswer(Exception):
    """The server answered, but not what the request asked for."""


def connect(server: Server, timeout: float = REQUEST_TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    if server.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    return sock


def read_response(f) -> tuple[int, dict[str, str], bytes]:
    status_line = f.readline()
    if not status_line:
        raise ConnectionResetError("closed before the status line")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline()
        if not line:
            raise ConnectionResetError("closed inside the head")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
        if len(body) != int(headers["content-length"]):
            raise ConnectionResetError("closed inside the body")
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size_line = f.readline()
            if not size_line:
                raise ConnectionResetError("closed inside the chunked body")
            size = int(size_line.split(b";")[0], 16)
            if not size:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            piece = f.read(size + 2)
            if len(piece) != size + 2:
                raise ConnectionResetError("closed inside a chunk")
            parts.append(piece[:-2])
        body = b"".join(parts)
    else:
        body = f.read()
    return status, headers, body


class Connection:
    """One client connection that may be reused; `request` raises Stale when a reuse found it closed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sock: socket.socket | None = None
        self.f = None
        self.used = False

    def request(self, raw: bytes, close: bool = False) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None:
            self.sock = connect(self.server)
            self.f = self.sock.makefile("rb")
            self.used = False
        reused = self.used
        self.used = True
        try:
            self.sock.sendall(raw)
            first = self.f.peek(1)[:1]
        except (ConnectionError, ssl.SSLError):
            self.close()
            if reused:   # nothing of the answer came: the server had closed the idle connection
                raise Stale() from None
            raise
        if not first:
            self.close()
            if reused:
                raise Stale()
            raise ConnectionResetError("closed before the status line")
        try:
            answer = read_response(self.f)
        except Exception:
            self.close()
            raise
        if close or answer[1].get("connection", "").lower() == "close":
            self.close()
        return answer

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.f.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = self.f = None


# --- load -----------------------------------------------------------------------------------------

@dataclass
class Failure:
    kind: str
    started: float
    at: float
    error: str
    reset: bool           # the connection was reset or closed under the request (not a timeout or wrong answer)
    allowed: bool = False


@dataclass
class Stats:
    served: Counter = field(default_factory=Counter)
    stale: int = 0
    failures: list[Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def hello(conn: Connection, rng: random.Random, close: bool) -> None:
    extra = b"Connection: close\r\n" if close else b""
    status, _, body = conn.request(b"GET /hello HTTP/1.1\r\nHost: soak\r\n" + extra + b"\r\n", close)
    if (status, body) != (200, b"Hello, World!"):
        raise WrongAnswer(f"/hello: {status} {body[:60]!r}")


def upload(conn: Connection, rng: random.Random, close: bool) -> None:
    body = rng.randbytes(rng.randint(1, 512) * 1024)
    expected = f"{len(body)} {hashlib.sha256(body).hexdigest()[:16]}".encode()
    if rng.random() < 0.5:
        raw = b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    else:
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        raw = (b"POST /upload HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n")
    status, _, answer = conn.request(raw)
    if (status, answer) != (200, expected):
        raise WrongAnswer(f"/upload: {status} {answer[:60]!r}, expected {expected!r}")


def stream(conn: Connection, rng: random.Random, close: bool) -> None:
    pieces = rng.randint(16, 256)
    status, _, body = conn.request(b"GET /stream?n=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % pieces)
    if status != 200 or len(body) != pieces * 16384:
        raise WrongAnswer(f"/stream: {status}, {len(body)} bytes of {pieces * 16384}")


CLIENTS: dict[str, tuple[Callable[[Connection, random.Random, bool], None], bool]] = {
    # kind: (request, new connection for each request)
    "keepalive": (hello, False),
    "close": (hello, True),
    "upload": (upload, False),
    "stream": (stream, False),
}


def client(server: Server, kind: str, stats: Stats, stop: threading.Event, t0: float, seed: int) -> None:
    rng = random.Random(seed)
    send, fresh = CLIENTS[kind]
    conn = Connection(server)
    while not stop.is_set():
        started = time.monotonic() - t0
        try:
            try:
                send(conn, rng, fresh)
            except Stale:
                with stats.lock:
                    stats.stale += 1
                send(conn, rng, fresh)   # on a new connection: a stale one is never retried twice
            with stats.lock:
                stats.served[kind] += 1
        except Exception as exc:
            conn.close()
            reset = isinstance(exc, (ConnectionError, ssl.SSLError, Stale)) and not isinstance(exc, TimeoutError)
            with stats.lock:
                stats.failures.append(Failure(kind, started, time.monotonic() - t0,
                                              f"{type(exc).__name__}: {exc}"[:200], reset))
            stop.wait(0.05)
    conn.close()


# --- hostile clients ---------------------------------------------------------------------------------

def garbage(server: Server, rng: random.Random, stop: threading.Event) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(rng.randbytes(rng.randint(1, 2048)) + b"\r\n\r\n")
        sock.recv(4096)


def reset(server: Server, rng: random.Random, stop: threading.Event) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 100000\r\n\r\n" + b"x" * rng.randint(0, 5000))
    stop.wait(rng.random() * 0.2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()   # with a zero linger: a TCP reset


def trickle(server: Server, rng: random.Random, stop: threading.Event) -> None:
    head = b"GET /hello HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for byte in head:
            if stop.wait(0.2):
                return
            sock.sendall(bytes([byte]))   # past header_timeout (5 s): a 408 and a close are expected
        sock.recv(4096)


def idle(server: Server, rng: random.Random, stop: threading.Event) -> None:
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(10)]
    stop.wait(rng.uniform(2, 8))
    for sock in socks:
        sock.close()


# The first bytes of a TLS 1.2 ClientHello record, cut off: the handshake never completes.
PARTIAL_CLIENT_HELLO = bytes.fromhex("16030100c8010000c40303") + bytes(20)


def partial_tls(server: Server, rng: random.Random, stop: threading.Event) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(PARTIAL_CLIENT_HELLO[: rng.randint(3, len(PARTIAL_CLIENT_HELLO))])
        stop.wait(rng.uniform(2, 8))


HOSTILE: dict[str, Callable[[Server, random.Random, threading.Event], None]] = {
    "garbage": garbage, "reset": reset, "trickle": trickle, "idle": idle, "partial-tls": partial_tls,
}


def hostile(server: Server, kind: str, counts: Counter, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            HOSTILE[kind](server, rng, stop)
        except OSError:
            pass   # what the server does to a hostile client is its business, as long as it serves the rest
        counts[kind] += 1
        stop.wait(rng.uniform(0.05, 0.3))


# --- chaos -------------------------------------------------------------------------------------------

@dataclass
class Event:
    at: float
    action: str
    detail: str


class Chaos:
    def __init__(self, server: Server, rng: random.Random, t0: float) -> None:
        self.server = server
        self.rng = rng
        self.t0 = t0
        self.events: list[Event] = []
        self.kills: list[float] = []     # when a worker was SIGKILLed
        self.count = server.workers      # workers the master is asked to run

    def note(self, action: str, detail: str) -> None:
        self.events.append(Event(round(time.monotonic() - self.t0, 2), action, detail))

    def run(self, stop: threading.Event, interval: float) -> None:
        first = list(ACTIONS)
        self.rng.shuffle(first)
        while not stop.wait(self.rng.uniform(0.5, 1.5) * interval):
            action = first.pop() if first else self.rng.choices(list(ACTIONS), list(ACTIONS.values()))[0]
            try:
                getattr(self, action)(stop)
            except OSError as exc:
                self.note(action, f"failed: {exc}")

    def kill(self, stop: threading.Event) -> None:
        workers = self.server.worker_pids()
        if not workers:
            self.note("kill", "no worker to kill")
            return
        pid = self.rng.choice(workers)
        self.kills.append(time.monotonic() - self.t0)
        os.kill(pid, signal.SIGKILL)
        self.note("kill", str(pid))

    def hup(self, stop: threading.Event) -> None:
        os.kill(self.server.master(), signal.SIGHUP)
        self.count = self.server.workers   # the INI's count again
        self.note("hup", "")

    def ttin(self, stop: threading.Event) -> None:
        if self.count >= self.server.workers + 2:
            return self.ttou(stop)
        os.kill(self.server.master(), signal.SIGTTIN)
        self.count += 1
        self.note("ttin", f"{self.count} workers")

    def ttou(self, stop: threading.Event) -> None:
        if self.count <= 1:
            return self.ttin(stop)
        os.kill(self.server.master(), signal.SIGTTOU)
        self.count -= 1
        self.note("ttou", f"{self.count} workers")

    def usr2(self, stop: threading.Event) -> None:
        """The upgrade recipe of docs/signals.md, step by step."""
        old = self.server.master()
        os.kill(old, signal.SIGUSR2)
        second = Path(f"{self.server.pidfile}.2")
        new = wait_until(lambda: read_pid(second), 30)
        if not new:
            self.note("usr2", f"no {second.name} from {old}: upgrade failed")
            return
        if not wait_until(lambda: len(self.server.worker_pids(new)) >= self.server.workers, 30):
            self.note("usr2", f"new master {new} did not boot its workers")
            return
        os.kill(old, signal.SIGTERM)
        if not wait_until(lambda: read_pid(self.server.pidfile) == new and not alive(old), 60):
            self.note("usr2", f"old master {old} did not hand over to {new}")
            return
        self.count = self.server.workers
        self.note("usr2", f"{old} -> {new}")


# --- the run -----------------------------------------------------------------------------------------

def snapshot(server: Server) -> dict[str, Any]:
    master = server.master()
    workers = {pid: usage(pid) for pid in server.worker_pids(master)}
    return {"master": {"pid": master, "usage": usage(master)},
            "workers": {str(pid): u for pid, u in workers.items() if u is not None}}


def answers(server: Server) -> bool:
    try:
        hello(Connection(server), random.Random(0), True)
        return True
    except (OSError, WrongAnswer, ValueError, IndexError):
        return False


def soak(duration: float, worker_class: str, workers: int, interval: float, tls: bool, seed: int,
         clients: dict[str, int], hostiles: dict[str, int]) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="pasteserve-soak-") as tmp:
        server = Server(Path(tmp), worker_class, workers, tls)
        server.start()
        strays = 0
        try:
            time.sleep(1.0)   # let the workers settle before the first measurement
            start = snapshot(server)
            t0 = time.monotonic()
            stats, hostile_counts, stop = Stats(), Counter(), threading.Event()
            chaos = Chaos(server, random.Random(rng.random()), t0)
            threads = [threading.Thread(target=client, args=(server, kind, stats, stop, t0, rng.random()),
                                        daemon=True, name=f"client-{kind}-{i}")
                       for kind, count in clients.items() for i in range(count)]
            threads += [threading.Thread(target=hostile, args=(server, kind, hostile_counts, stop, rng.random()),
                                         daemon=True, name=f"hostile-{kind}-{i}")
                        for kind, count in hostiles.items() for i in range(count)]
            chaos_thread = threading.Thread(target=chaos.run, args=(stop, interval), daemon=True, name="chaos")
            for thread in threads + [chaos_thread]:
                thread.start()
            stop.wait(duration)
            stop.set()
            chaos_thread.join(120)   # an upgrade in progress finishes its recipe
            for thread in threads:
                thread.join(REQUEST_TIMEOUT + 10)
            elapsed = time.monotonic() - t0
            # Let retiring workers go and the count settle before the last measurement.
            wait_until(lambda: len(server.worker_pids()) == chaos.count, 30)
            time.sleep(1.0)
            end = snapshot(server)
            answered_at_end = answers(server)
            error_log = server.error_log()
        finally:
            strays = server.stop()
    for failure in stats.failures:
        # In flight on a killed worker: cut off (not timed out or answered wrongly) while a kill happened.
        failure.allowed = failure.reset and any(failure.started - 0.1 <= k <= failure.at + 0.1 for k in chaos.kills)
    disallowed = [f for f in stats.failures if not f.allowed]
    return {
        "worker_class": worker_class, "workers": workers, "duration": round(elapsed, 1), "tls": tls, "seed": seed,
        "served": dict(stats.served), "served_total": sum(stats.served.values()),
        "failed": len(stats.failures), "allowed": len(stats.failures) - len(disallowed),
        "disallowed": len(disallowed), "disallowed_failures": [asdict(f) for f in disallowed[:20]],
        "stale_retried": stats.stale,
        "chaos": dict(Counter(e.action for e in chaos.events)), "events": [asdict(e) for e in chaos.events],
        "hostile": dict(hostile_counts), "start": start, "end": end, "answered_at_end": answered_at_end,
        "strays_after_stop": strays,
        "tracebacks_in_error_log": error_log.count("Traceback"),
    }


def _range(values: list[int]) -> str:
    return f"{min(values)}–{max(values)}" if values else "—"


def report(result: dict[str, Any]) -> str:
    def side(snap: dict[str, Any]) -> tuple[str, str, str]:
        master = snap["master"]["usage"] or (0, 0)
        workers = list(snap["workers"].values())
        return (f"{master[0] / 1024:.1f} MiB / {master[1]} fds",
                f"{len(workers)}: {_range([round(w[0] / 1024) for w in workers])} MiB",
                _range([w[1] for w in workers]))
    s, e = side(result["start"]), side(result["end"])
    served = ", ".join(f"{k} {v:,}" for k, v in sorted(result["served"].items()))
    chaos = ", ".join(f"{k} {v}" for k, v in sorted(result["chaos"].items())) or "none"
    hostile = ", ".join(f"{k} {v}" for k, v in sorted(result["hostile"].items())) or "none"
    lines = [
        f"## Chaos soak: {result['worker_class']}, {result['workers']} workers, {result['duration']} s"
        f"{', TLS' if result['tls'] else ''}, seed {result['seed']}",
        "",
        "| | |",
        "|---|---|",
        f"| requests served | {result['served_total']:,} ({served}) |",
        f"| failed | {result['failed']} (allowed, in flight on a killed worker: {result['allowed']}; "
        f"disallowed: {result['disallowed']}) |",
        f"| stale keep-alive connections retried | {result['stale_retried']} |",
        f"| chaos | {chaos} |",
        f"| hostile clients | {hostile} |",
        f"| master RSS / fds, start → end | {s[0]} → {e[0]} |",
        f"| workers and their RSS, start → end | {s[1]} → {e[1]} |",
        f"| worker descriptors, start → end | {s[2]} → {e[2]} |",
        f"| answers after the soak | {'yes' if result['answered_at_end'] else 'NO'} |",
        f"| processes left after stop | {result['strays_after_stop']} |",
        f"| tracebacks in the error log | {result['tracebacks_in_error_log']} |",
    ]
    for failure in result["disallowed_failures"]:
        lines.append(f"\n- disallowed: {failure['kind']} at {failure['at']:.1f} s: {failure['error']}")
    return "\n".join(lines) + "\n"


def _counts(text: str, known: dict) -> dict[str, int]:
    counts = {}
    for item in text.split(","):
        name, _, number = item.partition("=")
        if name not in known or not number.isdigit():
            raise argparse.ArgumentTypeError(f"expected NAME=COUNT pairs of {', '.join(known)}, got {item!r}")
        counts[name] = int(number)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load and chaos (default 180)")
    parser.add_argument("--worker-class", choices=("sync", "eventlet"), default="sync")
    parser.add_argument("--workers", type=int, default=3, help="workers in the INI (default 3)")
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between chaos actions (default 2)")
    parser.add_argument("--tls", action="store_true", help="serve https (a self-signed certificate from openssl)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--clients", type=lambda t: _counts(t, CLIENTS),
                        default={"keepalive": 4, "close": 2, "upload": 2, "stream": 2},
                        help="load threads per kind, e.g. keepalive=4,close=2,upload=2,stream=2")
    parser.add_argument("--hostile", type=lambda t: _counts(t, HOSTILE),
                        default={"garbage": 1, "reset": 1, "trickle": 2, "idle": 1, "partial-tls": 1},
                        help="hostile threads per kind, e.g. garbage=1,reset=1,trickle=2,idle=1,partial-tls=1")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    result = soak(args.duration, args.worker_class, args.workers, args.interval, args.tls, seed,
                  args.clients, args.hostile)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    ok = not result["disallowed"] and result["answered_at_end"] and not result["strays_after_stop"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
