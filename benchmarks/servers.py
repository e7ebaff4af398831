"""The servers under test: how to start each one, wait for it, and stop it."""

import functools
import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Gunicorn 23.0.0 is the last release with an eventlet worker: it lives in a venv of its own
# (benchmarks/setup.sh makes it), so the main venv can keep a current Gunicorn.
GUNICORN23_VENV = ".venv-gunicorn23"
BARE_LOOP = REPO / "benchmarks" / "bare.py"
GTHREAD_THREADS = 4
PASTESERVE_THREADS = 4
WAITRESS_THREADS = 4


class NotRunnable(Exception):
    """The server cannot run here at all: skip it for the rest of the run."""


class ProbeFailed(Exception):
    """The server runs but answered the readiness request wrongly for this app."""


@dataclass(frozen=True)
class Server:
    name: str
    executable: str
    # (port, "benchmarks.apps:NAME", workers) -> arguments after the executable
    arguments: Callable[[int, str, int], list[str]]
    # workers -> how the server runs, shown in the results table
    shape: Callable[[int], str]
    venv: str = ".venv"

    @property
    def path(self) -> Path:
        return REPO / self.venv / "bin" / self.executable


def _pasteserve(worker_class: str, *extra: str) -> Callable[[int, str, int], list[str]]:
    def arguments(port: int, app: str, workers: int) -> list[str]:
        return ["-w", str(workers), "-b", f"127.0.0.1:{port}", "--worker-class", worker_class, *extra, app]

    return arguments


def _gunicorn(*extra: str, venv: str = ".venv") -> Callable[[int, str, int], list[str]]:
    def arguments(port: int, app: str, workers: int) -> list[str]:
        return ["-w", str(workers), "-b", f"127.0.0.1:{port}", *extra, *_gunicorn_quiet(venv), app]

    return arguments


def _gunicorn_quiet(venv: str) -> list[str]:
    # Recent Gunicorn opens a control socket under ~/.gunicorn by default: a
    # side effect the benchmark does not want (older versions lack the flag).
    return ["--no-control-socket"] if _gunicorn_has_control_socket(venv) else []


@functools.cache
def _gunicorn_has_control_socket(venv: str) -> bool:
    try:
        usage = subprocess.run(
            [str(REPO / venv / "bin" / "gunicorn"), "--help"], capture_output=True, text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--no-control-socket" in usage


def _bare(port: int, app: str, workers: int) -> list[str]:
    return [str(BARE_LOOP), "-w", str(workers), "-b", f"127.0.0.1:{port}", app]


def _waitress(port: int, app: str, workers: int) -> list[str]:
    return [f"--listen=127.0.0.1:{port}", f"--threads={WAITRESS_THREADS}", app]


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server("pasteserve-sync", "pasteserve", _pasteserve("sync"), lambda w: f"{w} proc"),
        Server(
            "pasteserve-eventlet", "pasteserve", _pasteserve("eventlet"),
            lambda w: f"{w} proc, green",
        ),
        Server(
            "pasteserve-threads", "pasteserve", _pasteserve("sync", "--threads", str(PASTESERVE_THREADS)),
            lambda w: f"{w} proc × {PASTESERVE_THREADS} thr",
        ),
        Server("gunicorn-sync", "gunicorn", _gunicorn(), lambda w: f"{w} proc, closes conns"),
        Server(
            "gunicorn-gthread", "gunicorn",
            _gunicorn("-k", "gthread", "--threads", str(GTHREAD_THREADS)),
            lambda w: f"{w} proc × {GTHREAD_THREADS} thr",
        ),
        Server(
            "gunicorn23-eventlet", "gunicorn", _gunicorn("-k", "eventlet", venv=GUNICORN23_VENV),
            lambda w: f"{w} proc, green", venv=GUNICORN23_VENV,
        ),
        # The ceiling for a pure-Python server: benchmarks/bare.py.
        Server("bare-loop", "python", _bare, lambda w: f"{w} proc, no checks"),
        # waitress has no worker processes: it ignores the worker count.
        Server(
            "waitress", "waitress-serve", _waitress, lambda w: f"1 proc × {WAITRESS_THREADS} thr"
        ),
    )
}


def compile_bytecode() -> None:
    """Write the bytecode of pasteserve and the benchmark apps, as pip does for installed packages.

    Gunicorn and waitress run from bytecode pip wrote at install time; pasteserve runs from the
    repo (an editable install), where PYTHONDONTWRITEBYTECODE can leave it none. Compiling at
    every start costs the master, and every worker it forks, about 1.5 MiB of resident memory
    (the freed parse trees leave the heap larger), so without this the RSS column compares
    compiling with loading.
    """
    python = REPO / ".venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "pasteserve", "benchmarks"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=120,
    )


def worker_rss_mib(master: int) -> float | None:
    """The largest resident set among ``master``'s children (itself when it has none), in MiB."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return None
    sizes = [size for pid in (children or [str(master)]) if (size := _rss_kib(pid)) is not None]
    return max(sizes) / 1024 if sizes else None


def _rss_kib(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def check_runnable(server: Server) -> None:
    """Raise NotRunnable unless ``server`` is installed and at least prints its help."""
    if not server.path.exists():
        raise NotRunnable(f"{server.path.relative_to(REPO)} does not exist")
    try:
        done = subprocess.run(
            [str(server.path), "--help"], capture_output=True, text=True, timeout=30, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NotRunnable(f"{server.executable} --help: {exc}") from exc
    if done.returncode != 0:
        reason = failure_reason(done.stderr or done.stdout)
        raise NotRunnable(f"{server.executable} --help: {reason}")


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Running:
    server: Server
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@contextmanager
def running(
    server: Server,
    app: str,
    workers: int,
    prefix: tuple[str, ...] = (),
    startup_timeout: float = 20.0,
) -> Iterator[Running]:
    """Start ``server`` serving ``app``, yield once it answers, and always stop it."""
    port = free_port()
    argv = [*prefix, str(server.path), *server.arguments(port, app, workers)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as log:
        # A session of its own, so stopping it reaches workers a dead master left behind.
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )
        try:
            _wait_ready(process, port, log, startup_timeout)
            yield Running(server, port, process.pid)
        finally:
            stop(process)


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL for the whole process group after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty: a clean shutdown
    process.wait()


def settle(live: Running, timeout: float = 30.0) -> None:
    """Wait until a fresh request is answered again.

    A warm-up leaves requests queued in a threaded server after wrk is gone;
    waiting for one new answer keeps that backlog out of the measured run.
    """
    try:
        _get_status(live.port, timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeFailed(f"no answer after the warm-up: {type(exc).__name__}: {exc}") from exc


def _wait_ready(process: subprocess.Popen, port: int, log, timeout: float) -> None:
    """Poll with a real request until it is answered, the process dies, or time is up."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while True:
        if process.poll() is not None:
            raise NotRunnable(f"exited with {process.returncode}: {_log_tail(log)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotRunnable(
                f"no answer on port {port} within {timeout:g}s ({last_error}); "
                f"its log: {_log_tail(log)}"
            )
        try:
            status = _get_status(port, remaining)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
            continue
        if status != 200:
            raise ProbeFailed(f"answered {status} to GET /: {_log_tail(log)}")
        return


def _get_status(port: int, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _log_tail(log) -> str:
    log.flush()
    log.seek(0)
    return failure_reason(log.read().decode("utf-8", "replace")) or "(no output)"


# "ModuleNotFoundError: No module named ...": the line of a traceback that says why.
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b")


def failure_reason(text: str) -> str:
    """The line that best says why a process failed: its last exception, else its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if exceptions:
        return exceptions[-1]
    return lines[-1] if lines else ""
