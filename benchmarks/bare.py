"""The ceiling: the least a pre-fork Python server can do per request, for the benchmark only.

    python benchmarks/bare.py -w 2 -b 127.0.0.1:8000 benchmarks.apps:hello

One selector per process, non-blocking sockets, ``recv``, find the end of the head, call the app
with a minimal environ, ``send``. No validation, no limits, no bodies, no timeouts: a real server
must do all of those, so this row shows how much of its time goes to being a server rather than
to Python itself. Never serve anything real with it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable


def load(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def respond(app: Callable, head: bytes) -> tuple[bytes, bool]:
    """The response bytes for one request head, and whether to keep the connection."""
    line, _, _ = head.partition(b"\r\n")
    method, target, version = line.decode("latin-1").split(" ", 2)
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "0", "SERVER_PROTOCOL": version,
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status_headers: list = []

    def start_response(status: str, headers: list, exc_info=None) -> None:
        status_headers[:] = [status, headers]

    body = b"".join(app(environ, start_response))
    status, headers = status_headers
    keep = b"connection: close" not in head.lower()
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    if not keep:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body, keep


def serve(listener: socket.socket, app: Callable) -> None:
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue   # a sibling took it
                conn.setblocking(False)
                buffers[conn] = b""
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            keep = bool(data)
            buffer = buffers[sock] + data
            while keep and (end := buffer.find(b"\r\n\r\n")) >= 0:
                head, buffer = buffer[:end], buffer[end + 4:]
                out, keep = respond(app, head)
                try:
                    sock.send(out)
                except OSError:
                    keep = False
            if keep:
                buffers[sock] = buffer
            else:
                sel.unregister(sock)
                del buffers[sock]
                sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workers", type=int, default=1)
    parser.add_argument("-b", "--bind", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("app", help="MODULE:CALLABLE")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    app = load(args.app)
    listener = socket.create_server((host, int(port)), backlog=2048)
    listener.setblocking(False)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(listener, app)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: None)   # wake from pause, then stop the workers
    signal.pause()
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
