"""Blocking-style reads and writes on a non-blocking socket, waiting only when the kernel says so.

A socket in timeout mode makes CPython poll before every ``send`` and ``recv``, and switching a
non-blocking socket into timeout mode and back costs an ``ioctl`` each way: three system calls per
request that the answer does not need. The selector-driven workers keep their sockets
non-blocking for good; these functions try the call first and wait (``poll``, up to ``timeout``
each time, as a socket timeout would) only when it would block.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Callable

from pasteserve.green import original

__all__ = ["WOULD_BLOCK", "poll_readable", "poll_writable", "recv", "sendall", "sendfile"]

# What a call on a non-blocking socket raises when it would have to wait.
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _poll(fd: Any, events: int, seconds: float | None) -> bool:
    select = original("select")
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if seconds is None else seconds * 1000))


def poll_readable(sock: Any, seconds: float | None) -> bool:
    """Wait up to ``seconds`` (None: for ever) for ``sock`` to have bytes to read (or to be closed).

    The unpatched poll: under eventlet this waits the process, so there it is only for a check
    with ``seconds = 0`` (the eventlet worker waits in its hub instead).
    """
    return _poll(sock, original("select").POLLIN, seconds)


def poll_writable(sock: Any, seconds: float | None) -> bool:
    """Wait up to ``seconds`` (None: for ever) for room in ``sock``'s send buffer (or for it to be
    closed)."""
    return _poll(sock, original("select").POLLOUT, seconds)


def recv(sock: Any, size: int, timeout: float | None) -> bytes:
    """``sock.recv(size)``, waiting up to ``timeout`` seconds (None: for ever) for bytes."""
    while True:
        try:
            return sock.recv(size)
        except ssl.SSLWantWriteError:
            if not poll_writable(sock, timeout):
                raise TimeoutError("timed out") from None
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            if not poll_readable(sock, timeout):
                raise TimeoutError("timed out") from None


def sendall(sock: Any, data: bytes, timeout: float | None) -> None:
    """``sock.sendall(data)``, waiting up to ``timeout`` seconds (None: for ever) each time the
    send buffer is full; TimeoutError if it stays full that long."""
    try:
        sent = sock.send(data)
    except WOULD_BLOCK:
        sent = 0
    if sent == len(data):
        return   # the usual case: one system call
    view = memoryview(data)[sent:]
    while view:
        try:
            view = view[sock.send(view):]
            continue
        except ssl.SSLWantReadError:
            ready = poll_readable(sock, timeout)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            # TLS: the same bytes are offered again, as OpenSSL requires after a want-write.
            ready = poll_writable(sock, timeout)
        if not ready:
            raise TimeoutError("timed out")


def sendfile(sock: Any, file: Any, offset: int, count: int, timeout: float | None,
             wait_writable: Callable[[int, float | None], bool] = poll_writable) -> int:
    """os.sendfile(2) of ``count`` bytes from ``offset``; returns the bytes sent (fewer if the
    file is shorter than it was). ``wait_writable(fd, seconds)`` waits for room (the eventlet
    worker's waits in its hub)."""
    out, src = sock.fileno(), file.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out, src, offset + sent, count - sent)
        except (BlockingIOError, InterruptedError):
            if not wait_writable(out, timeout):
                raise TimeoutError("timed out sending a file") from None
            continue
        if not n:
            break
        sent += n
    return sent
