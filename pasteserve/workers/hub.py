"""The eventlet worker's hub: eventlet's epoll hub, keeping connections in epoll between waits.

eventlet's hub adds a descriptor to epoll when a green thread starts waiting on it and removes
it when the wait ends: two ``epoll_ctl`` calls around every wait, so two per keep-alive request
beside its ``recv`` and ``send``. A connection's green thread waits on its socket again and
again; a socket marked with :func:`keep` stays registered for reading between its waits, so
waiting again costs no system call.

A registration left in epoll must go before its descriptor closes: epoll forgets a descriptor
only when every copy of it is closed (a sibling given it in a hand-off holds one), and the number
may be reused at once. :func:`keep` makes the socket's ``close`` release it first, which also
wakes the green threads still waiting on it: eventlet tells them only once the number is reused,
so a websocket's reader whose writer closed the socket waited for the next connection, or for
ever. :func:`wake_on_close` does the same for a socket that is not kept (TLS).

Only imported by the eventlet worker (it imports eventlet).
"""

from __future__ import annotations

import errno
import sys
import weakref
from functools import partial
from typing import Any, Callable

from eventlet.greenio import GreenSocket
from eventlet.hubs import epolls, notify_opened, trampoline
from greenlet import getcurrent

from ..green import original

__all__ = ["DirectSocket", "Hub", "keep", "Kept", "is_available", "reader", "wake_on_close"]

_time = original("time")
is_available = epolls.is_available   # what eventlet's use_hub asks a hub module


class Hub(epolls.Hub):
    """eventlet's epoll hub; see the module docstring for what it does differently."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.masks: dict[int, int] = {}   # what epoll watches now, per descriptor
        self.kept: set[int] = set()       # descriptors that stay registered for reading between waits
        self.keep_mask = self.READ_MASK | self.EXC_MASK

    def register(self, fileno: int, new: bool = False) -> None:
        """Make epoll watch what the listeners of ``fileno`` wait for (``new`` is ignored: the
        hub knows what epoll holds)."""
        listeners = self.listeners
        mask = 0
        if listeners[self.READ].get(fileno):
            mask = self.READ_MASK | self.EXC_MASK
        if listeners[self.WRITE].get(fileno):
            mask |= self.WRITE_MASK | self.EXC_MASK
        old = self.masks.get(fileno, 0)
        if mask == old or (not mask and old == self.keep_mask and fileno in self.kept):
            return
        self._watch(fileno, mask, old)

    def _watch(self, fileno: int, mask: int, old: int) -> None:
        poll = self.poll
        try:
            if not mask:
                del self.masks[fileno]
                try:
                    poll.unregister(fileno)
                except OSError:
                    pass   # closed already (or never registered)
                return
            try:
                if old:
                    poll.modify(fileno, mask)
                else:
                    poll.register(fileno, mask)
            except FileNotFoundError:      # epoll dropped it when it closed: the number was reused
                poll.register(fileno, mask)
            except FileExistsError:        # registered without our knowing (ours is the newer word)
                poll.modify(fileno, mask)
            self.masks[fileno] = mask
        except ValueError:
            # A closed socket's fileno (-1): eventlet's poll hub does the same (its issue 74).
            self.remove_descriptor(fileno)
            raise

    def release(self, fileno: int) -> None:
        """``fileno`` closes now: stop keeping it, take it out of epoll, and wake the green threads
        still waiting on it (IOClosed, at the hub's next turn), as eventlet does only once the
        number is reused (:meth:`mark_as_reopened`). Else a green thread waiting on a socket that
        another one closed (an engineio websocket's reader, when its writer closes it) held its
        connection's slot and the worker's graceful stop until then."""
        self.mark_as_reopened(fileno)

    def remove_descriptor(self, fileno: int) -> None:
        self.masks.pop(fileno, None)
        self.kept.discard(fileno)
        super().remove_descriptor(fileno)

    def mark_as_reopened(self, fileno: int) -> None:
        # The number was closed behind our back and is reused (or closes now: release), so
        # whatever we knew of it is stale, and whoever waits on it is told so.
        super().mark_as_reopened(fileno)
        self.kept.discard(fileno)
        if self.masks.pop(fileno, 0):
            try:
                self.poll.unregister(fileno)   # the new descriptor's, if epoll still had the number
            except OSError:
                pass

    def wait(self, seconds: float | None = None) -> None:
        """One epoll_wait and the callbacks of the listeners it woke (eventlet's poll hub, less its
        per-event set; a kept descriptor readable while nobody reads it stops being kept, else a
        level-triggered epoll would report it on every turn until it is read)."""
        if self.closed:
            seconds = 0   # the waiters of a closed descriptor (release) are told at the next turn: now
        readers = self.listeners[self.READ]
        writers = self.listeners[self.WRITE]
        if not readers and not writers:
            if seconds:
                _time.sleep(seconds)
            return
        try:
            events = self.poll.poll(seconds)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                return
            raise
        if self.debug_blocking:
            self.block_detect_pre()
        # Collected before any is called, as eventlet does: a callback may change the listeners.
        callbacks = []
        add = callbacks.append
        on_read = self.READ_MASK | self.EXC_MASK
        on_write = self.WRITE_MASK | self.EXC_MASK
        for fileno, event in events:
            reader = readers.get(fileno) if event & on_read else None
            if reader is not None:
                add(reader)
            elif fileno in self.kept and self.masks.get(fileno, 0) & self.READ_MASK:
                self._unkeep(fileno)
            if event & on_write:
                writer = writers.get(fileno)
                if writer is not None:
                    add(writer)
        system = self.SYSTEM_EXCEPTIONS
        for listener in callbacks:
            try:
                listener.cb(listener.fileno)
            except system:
                raise
            except:  # noqa: E722 - eventlet's hub reports and drops a failing descriptor
                self.squelch_exception(listener.fileno, sys.exc_info())
        if self.debug_blocking:
            self.block_detect_post()

    def _unkeep(self, fileno: int) -> None:
        """Watch only what waits on a kept descriptor now; it is kept again at its next wait."""
        old = self.masks[fileno]
        mask = self.WRITE_MASK | self.EXC_MASK if self.listeners[self.WRITE].get(fileno) else 0
        if mask != old:
            self._watch(fileno, mask, old)


class Kept:
    """A socket kept registered between waits (see :func:`keep`), and its ``close`` and
    ``shutdown`` as the app sees them."""

    __slots__ = ("_hub", "_fileno", "_raw", "_close")

    def __init__(self, hub: Hub, sock: GreenSocket) -> None:
        self._hub = hub
        self._raw = sock.fd   # not the green socket, whose close refers to us: no reference cycle
        self._fileno = sock.fileno()
        self._close = sock.close
        hub.kept.add(self._fileno)
        sock.close = self.close
        sock.shutdown = self.shutdown

    def close(self) -> None:
        self.release()
        self._close()

    def shutdown(self, how: int) -> None:
        """Nothing once closed, as ``close``: eventlet.websocket's close() shuts the socket down
        before closing it and logs any error but ENOTCONN to wsgi.errors, and python-engineio
        calls it twice as a Socket.IO session ends, so the EBADF of the second shutdown was
        logged at ERROR for every disconnect."""
        if self._raw.fileno() >= 0:
            self._raw.shutdown(how)

    def release(self) -> None:
        """Stop keeping the socket while it is still open (once only: the number may be reused)."""
        fileno, self._fileno = self._fileno, -1
        if fileno >= 0 and self._raw.fileno() == fileno:
            self._hub.release(fileno)


class _WakeOnClose:
    """A socket that is not kept (TLS) whose ``close`` still wakes the green threads waiting on
    it (see :meth:`Hub.release`), and whose ``shutdown`` after it does nothing (see Kept)."""

    __slots__ = ("_hub", "_fileno", "_sock")

    def __init__(self, hub: Hub, sock: Any) -> None:
        self._hub = hub
        self._fileno = sock.fileno()
        self._sock = weakref.ref(sock)   # its close refers to us: no reference cycle
        sock.close = self.close
        sock.shutdown = self.shutdown

    def close(self) -> None:
        sock = self._sock()
        if sock is None:
            return   # dropped already: its finaliser closed it
        fileno, self._fileno = self._fileno, -1
        if fileno >= 0 and sock.fileno() == fileno:   # once only, while open: the number may be reused
            self._hub.release(fileno)
        type(sock).close(sock)

    def shutdown(self, how: int) -> None:
        sock = self._sock()
        if sock is not None and sock.fileno() >= 0:   # nothing once closed: see Kept.shutdown
            type(sock).shutdown(sock, how)


class DirectSocket(GreenSocket):
    """A green socket whose ``recv`` and ``sendall`` try its (non-blocking) descriptor first and
    go through eventlet's loops only when that would block or fails: a request's read and its
    answer cost one call each, not eventlet's two and three (and an exception object per send).

    Listening sockets of this class accept connections of this class."""

    def accept_ready(self) -> tuple[DirectSocket, Any] | None:
        """A connection the backlog holds, None if it holds none: never waits, so that the caller
        decides again, once one is queued, whether to take it (see workers/balance.py)."""
        try:
            client, peer = self.fd.accept()
        except BlockingIOError:
            return None
        notify_opened(client.fileno())   # as eventlet's accept: the hub forgets what it knew of the number
        client.setblocking(False)
        return type(self)(client), peer

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize:   # eventlet waits for readability before a recv of 0 bytes
            try:
                return self.fd.recv(bufsize, flags)
            except OSError:
                pass   # would block (then eventlet waits), or eventlet's answer to the error
        return GreenSocket.recv(self, bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        try:
            sent = self.fd.send(data, flags)
        except OSError:
            sent = 0   # would block (then eventlet waits), or eventlet raises the error again
        if sent < len(data):
            GreenSocket.sendall(self, data[sent:] if sent else data, flags)


class _Reader:
    """``trampoline(fileno, read=True)`` for a kept descriptor, again and again, by the green
    thread that made it: one listener for all its waits, and no epoll_ctl while it stays kept."""

    __slots__ = ("_hub", "_fileno", "_listener", "_greenlet", "_plain", "_readers", "_masks", "_kept",
                 "_keep_mask")

    def __init__(self, hub: Hub, fileno: int) -> None:
        current = getcurrent()
        self._hub = hub
        self._fileno = fileno
        self._listener = hub.lclass(hub.READ, fileno, current.switch, current.throw, None)
        self._greenlet = current
        # No switch_out hook to run (eventlet's hub.switch calls it): we may switch to the hub directly.
        self._plain = getattr(current, "switch_out", None) is None
        # The hub's tables, which it keeps for its life: looked up once, not per wait.
        self._readers = hub.listeners[hub.READ]
        self._masks, self._kept, self._keep_mask = hub.masks, hub.kept, hub.keep_mask

    def __call__(self) -> Any:
        fileno, listener, readers = self._fileno, self._listener, self._readers
        if listener.spent or fileno in readers or getcurrent() is not self._greenlet:
            # Its number was reused (the hub defanged it), another green thread reads it, or one
            # other than its maker waits: eventlet's way, with its errors.
            return trampoline(fileno, read=True)
        readers[fileno] = listener
        masks, keep_mask = self._masks, self._keep_mask
        if masks.get(fileno) != keep_mask:
            self._hub.register(fileno)
        try:
            main = self._hub.greenlet
            if self._plain and self._greenlet.parent is main and not main.dead:
                return main.switch()   # what hub.switch() comes to here, less its checks and calls
            return self._hub.switch()
        finally:
            if readers.get(fileno) is listener:
                del readers[fileno]
                if masks.get(fileno) != keep_mask or fileno not in self._kept:
                    self._hub.register(fileno)   # not kept (any more), or also written: watch what is left


def reader(hub: Any, sock: Any) -> Callable[[], Any]:
    """What the calling green thread calls to wait for ``sock`` to be readable, again and again
    (``sock`` kept by :func:`keep` when that returned it; else eventlet's trampoline)."""
    if isinstance(hub, Hub) and sock.fileno() in hub.kept:
        return _Reader(hub, sock.fileno())
    return partial(trampoline, sock, read=True)


def wake_on_close(hub: Any, sock: Any) -> None:
    """Make closing ``sock`` (one :func:`keep` did not take: TLS) wake whoever waits on it, if
    ``hub`` is ours."""
    if isinstance(hub, Hub) and sock.fileno() >= 0:
        _WakeOnClose(hub, sock)


def keep(hub: Any, sock: Any) -> Kept | None:
    """Keep ``sock`` registered between waits if ``hub`` can and ``sock`` is a plain green socket
    (not TLS, whose reads may find bytes already decrypted); None if not."""
    if isinstance(hub, Hub) and isinstance(sock, GreenSocket) and sock.fileno() >= 0:
        return Kept(hub, sock)
    return None
