"""The gthread worker's pure helpers (the worker itself is tested against real servers in
tests/integration/test_threads.py)."""

import os
import socket

from pasteserve.workers.threaded import AppThread, handoffs_pending


def test_handoffs_pending_while_a_passed_descriptor_waits_for_any_taker():
    send, recv = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    r, w = os.pipe()
    # Every worker holds its own copy of the sending end: each sees what any of them sent.
    other = socket.socket(fileno=os.dup(send.fileno()))
    try:
        assert not handoffs_pending(send)
        socket.send_fds(send, [b"c"], [r])
        assert handoffs_pending(send) and handoffs_pending(other)
        _, fds, _, _ = socket.recv_fds(recv, 16, 4)
        for fd in fds:
            os.close(fd)
        assert not handoffs_pending(send) and not handoffs_pending(other)
    finally:
        for s in (send, recv, other):
            s.close()
        os.close(r)
        os.close(w)


def test_app_thread_describes_its_request_for_the_abort_log():
    me = AppThread("pasteserve-app-1")
    assert me.describe() == "a request"
    me.environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/upload?x=1", "REMOTE_ADDR": "10.0.0.7"}
    assert me.describe() == "POST /upload?x=1 from 10.0.0.7"
