"""The eventlet worker's hub (pasteserve.workers.hub): connections kept in epoll between waits,
released before they close (waking whoever waits on them), never reported while nobody reads them.

Each test runs in a thread of its own, whose eventlet hub is ours (hubs are per thread), with
real sockets and a real epoll; ``Counting`` only counts the calls that reach it.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from typing import Any, Callable

import pytest

eventlet = pytest.importorskip("eventlet")

from eventlet import hubs  # noqa: E402
from eventlet.greenio import GreenSocket  # noqa: E402

from pasteserve.workers import hub as kept_hub  # noqa: E402


class Counting:
    """The hub's epoll, counting the epoll_ctl calls and the waits that reach it (and keeping
    how long each wait may block)."""

    def __init__(self, epoll: Any) -> None:
        self.epoll = epoll
        self.calls: dict[str, int] = {"register": 0, "modify": 0, "unregister": 0, "poll": 0}
        self.timeouts: list[float | None] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.epoll, name)
        if name not in self.calls:
            return method

        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            if name == "poll":
                self.timeouts.append(args[0] if args else None)
            return method(*args)
        return counted


def in_hub_thread(test: Callable[[kept_hub.Hub, Counting], None]) -> None:
    """Run ``test(hub, counting)`` in a new thread whose hub is ours; re-raise what it raised."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            hubs.use_hub(kept_hub)
            hub = hubs.get_hub()
            counting = hub.poll = Counting(hub.poll)
            with eventlet.Timeout(10):
                test(hub, counting)
        except BaseException as exc:   # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the hub thread hangs"
    if errors:
        raise errors[0]


def green_pair() -> tuple[GreenSocket, socket.socket]:
    ours, peer = socket.socketpair()
    return GreenSocket(ours), peer


class TLSLike(socket.socket):
    """As ssl.SSLSocket is: not green (keep() does not take it), and with a __dict__."""


def tls_like_pair() -> tuple[TLSLike, socket.socket]:
    ours, peer = socket.socketpair()
    return TLSLike(fileno=ours.detach()), peer


def read_once(hub: kept_hub.Hub, sock: GreenSocket) -> bytes:
    """In a green thread of its own: wait for ``sock`` to be readable, then read it."""
    def read() -> bytes:
        kept_hub.reader(hub, sock)()
        return sock.recv(100)
    return eventlet.spawn(read)


def test_kept_socket_waits_again_and_again_without_epoll_ctl():
    def test(hub, counting):
        sock, peer = green_pair()
        assert kept_hub.keep(hub, sock) is not None
        got = []

        def serve():
            wait = kept_hub.reader(hub, sock)   # the waiting green thread's own
            for _ in range(5):
                wait()
                got.append(sock.recv(100))

        server = eventlet.spawn(serve)
        for i in range(5):
            eventlet.sleep(0.01)
            peer.send(b"%d" % i)
        server.wait()
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        # Registered once for five waits; taken out of epoll when it closes, before the descriptor goes.
        assert counting.calls["register"] == 1 and counting.calls["unregister"] == 0, counting.calls
        fileno = sock.fileno()
        sock.close()
        assert counting.calls["unregister"] == 1
        assert fileno not in hub.masks and fileno not in hub.kept
        peer.close()

    in_hub_thread(test)


@pytest.mark.parametrize("wait", ["recv", "sendall", "reader"])
def test_closing_a_kept_socket_wakes_the_green_thread_waiting_on_it(wait):
    # An engineio websocket's end: its writer closes the socket while its reader waits on it (or
    # the worker's own reader, or a writer, waits). eventlet tells a waiter only once the number
    # is reused: with no new descriptor here, it would wait for ever.
    def test(hub, counting):
        sock, peer = green_pair()
        kept_hub.keep(hub, sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def waiter() -> None:
            if wait == "recv":
                sock.recv(100)
            elif wait == "sendall":
                sock.sendall(b"z" * 1_000_000)   # more than the buffers hold; the peer reads nothing
            else:
                kept_hub.reader(hub, sock)()

        waiting = eventlet.spawn(waiter)
        other, other_peer = green_pair()
        busy = read_once(hub, other)   # as in a worker, someone else waits too: the hub polls
        eventlet.sleep(0.05)
        assert not waiting.dead, "it did not wait"
        fileno = sock.fileno()
        hub.schedule_call_global(2.0, lambda: None)   # the hub's next timer
        polls = len(counting.timeouts)
        sock.close()
        with eventlet.Timeout(5, AssertionError("the waiter was not woken")):
            with pytest.raises((OSError, EOFError)):   # IOClosed; eventlet's recv makes it EOFError
                waiting.wait()
        # ... at the hub's next turn: it did not wait for its next timer (nor for any event) first.
        assert not any(counting.timeouts[polls:]), counting.timeouts[polls:]
        assert fileno not in hub.masks and fileno not in hub.kept
        assert counting.calls["unregister"] == 1, counting.calls
        other_peer.send(b"done")
        busy.wait()
        for s in (peer, other, other_peer):
            s.close()

    in_hub_thread(test)


def test_closing_a_socket_that_is_not_kept_wakes_the_green_thread_waiting_on_it():
    # A TLS connection's socket is not a green socket that keep() takes: wake_on_close covers it.
    def test(hub, counting):
        sock, peer = tls_like_pair()
        assert kept_hub.keep(hub, sock) is None
        kept_hub.wake_on_close(hub, sock)
        waiting = eventlet.spawn(hubs.trampoline, sock.fileno(), read=True)
        eventlet.sleep(0.05)
        assert not waiting.dead, "it did not wait"
        sock.close()
        with eventlet.Timeout(5, AssertionError("the waiter was not woken")):
            with pytest.raises(hubs.IOClosed):
                waiting.wait()
        # Its close refers to the socket weakly: dropped, it is freed at once, not by the cyclic GC.
        closed = weakref.ref(sock)
        del sock
        assert closed() is None
        peer.close()

    in_hub_thread(test)


def test_shutdown_after_close_does_nothing_kept_or_not():
    # eventlet.websocket's close() (which python-engineio calls twice) shuts the socket down before
    # closing it, and logged the EBADF of the second shutdown at ERROR on every disconnect.
    def test(hub, counting):
        kept, kept_peer = green_pair()
        assert kept_hub.keep(hub, kept) is not None
        other, other_peer = tls_like_pair()
        kept_hub.wake_on_close(hub, other)
        for sock, peer in ((kept, kept_peer), (other, other_peer)):
            sock.shutdown(socket.SHUT_WR)   # open: shut down as ever, the peer reads the end
            assert peer.recv(10) == b""
            sock.close()
            sock.shutdown(socket.SHUT_WR)   # closed: nothing to shut down
            sock.close()
            peer.close()

    in_hub_thread(test)


def test_kept_socket_whose_descriptor_lives_on_elsewhere_wakes_nobody_after_close():
    # A hand-off: a sibling holds a copy of the descriptor, so epoll would keep reporting it under
    # a number this process reuses, had its close not taken it out of epoll first.
    def test(hub, counting):
        sock, peer = green_pair()
        kept_hub.keep(hub, sock)
        server = read_once(hub, sock)
        peer.send(b"x")
        server.wait()
        fileno = sock.fileno()
        copy = os.dup(fileno)   # the sibling's
        sock.close()
        again, again_peer = socket.socketpair()
        try:
            assert again.fileno() == fileno, "the number was not reused; the test proves nothing"
            green = GreenSocket(again)
            peer.send(b"for the sibling")   # readable under the old registration, if it lived on
            woke = []

            def read() -> bytes:
                kept_hub.reader(hub, green)()
                woke.append(True)
                return green.recv(10)

            waiter = eventlet.spawn(read)
            eventlet.sleep(0.2)
            assert not woke, "woken by the closed socket's registration"
            again_peer.send(b"y")
            assert waiter.wait() == b"y"
        finally:
            os.close(copy)
            for s in (again, again_peer, peer):
                s.close()

    in_hub_thread(test)


def test_kept_socket_readable_while_nobody_waits_is_not_reported_on_every_turn():
    def test(hub, counting):
        sock, peer = green_pair()
        kept_hub.keep(hub, sock)
        server = read_once(hub, sock)
        peer.send(b"x")
        server.wait()
        fileno = sock.fileno()
        assert hub.masks[fileno] == hub.keep_mask   # still registered: nobody waits now
        other, other_peer = green_pair()
        busy = read_once(hub, other)                # the hub polls only while someone waits
        peer.send(b"pipelined")                     # level-triggered: reported until read
        eventlet.sleep(0.01)
        # Reported once, then taken out of epoll until the next wait; still kept.
        assert fileno not in hub.masks and fileno in hub.kept
        polls = counting.calls["poll"]
        eventlet.sleep(0.05)
        assert counting.calls["poll"] - polls < 5, "the hub spins on an unread descriptor"
        assert read_once(hub, sock).wait() == b"pipelined"
        assert hub.masks[fileno] == hub.keep_mask   # watched again from its next wait
        other_peer.send(b"done")
        busy.wait()
        for s in (sock, peer, other, other_peer):
            s.close()

    in_hub_thread(test)


def test_writing_to_a_kept_socket_watches_what_the_writer_needs():
    def test(hub, counting):
        sock, peer = green_pair()
        kept_hub.keep(hub, sock)
        server = read_once(hub, sock)
        peer.send(b"x")
        server.wait()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = b"z" * 1_000_000
        writer = eventlet.spawn(sock.sendall, big)   # fills the buffer: waits to write
        received = bytearray()
        while len(received) < len(big):
            eventlet.sleep(0.001)
            try:
                received += peer.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        writer.wait()
        assert bytes(received) == big
        sock.close()
        peer.close()

    in_hub_thread(test)


def test_plain_eventlet_sockets_and_other_hubs_are_not_kept():
    def test(hub, counting):
        sock, peer = green_pair()
        server = read_once(hub, sock)   # not kept: eventlet's trampoline, epoll_ctl each wait
        peer.send(b"x")
        assert server.wait() == b"x"
        assert sock.fileno() not in hub.masks
        assert kept_hub.keep(object(), sock) is None
        sock.close()
        peer.close()

    in_hub_thread(test)


def test_direct_socket_reads_and_writes_as_eventlets_green_socket_does():
    def test(hub, counting):
        ours, peer = socket.socketpair()
        sock = kept_hub.DirectSocket(ours)
        reader = eventlet.spawn(sock.recv, 100)   # nothing there: waits in the hub
        eventlet.sleep(0.05)
        assert not reader.dead
        peer.send(b"hello")
        assert reader.wait() == b"hello"
        big = b"z" * 1_000_000                    # more than the buffers hold: waits to write
        writer = eventlet.spawn(sock.sendall, big)
        received = bytearray()
        while len(received) < len(big):
            eventlet.sleep(0.001)
            try:
                received += peer.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        writer.wait()
        assert bytes(received) == big
        # Closed by the peer: b"" as from eventlet's recv, an OSError (EPIPE) from sendall.
        peer.close()
        assert sock.recv(100) == b""
        with pytest.raises(OSError):
            sock.sendall(b"x" * 100_000)
        sock.close()

    in_hub_thread(test)


def test_listening_direct_socket_accepts_direct_sockets():
    def test(hub, counting):
        listener = kept_hub.DirectSocket(socket.create_server(("127.0.0.1", 0)))
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        assert type(conn) is kept_hub.DirectSocket
        for s in (conn, client, listener):
            s.close()

    in_hub_thread(test)


def test_reader_switches_as_eventlets_hub_does_when_its_thread_has_a_switch_out_hook():
    # The reader switches to the hub itself (no eventlet hub.switch call) only for a plain green
    # thread: one with eventlet's switch_out hook still has it called before each wait.
    def test(hub, counting):
        sock, peer = green_pair()
        kept_hub.keep(hub, sock)
        switched_out = []

        def serve():
            eventlet.getcurrent().switch_out = lambda: switched_out.append(1)
            wait = kept_hub.reader(hub, sock)
            for _ in range(2):
                wait()
                sock.recv(100)

        server = eventlet.spawn(serve)
        for _ in range(2):
            eventlet.sleep(0.01)
            peer.send(b"x")
        server.wait()
        assert len(switched_out) == 2
        sock.close()
        peer.close()

    in_hub_thread(test)
