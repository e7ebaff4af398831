"""The sync worker's poller, over real socket pairs, with epoll and with poll."""

from __future__ import annotations

import os
import select
import socket

import pytest

from pasteserve.workers.poller import READ, WRITE, Poller

BACKENDS = [pytest.param(True, id="epoll"), pytest.param(False, id="poll")]
if not hasattr(select, "epoll"):
    BACKENDS = BACKENDS[1:]


@pytest.fixture(params=BACKENDS)
def poller(request):
    p = Poller(use_epoll=request.param)
    yield p
    p.close()


@pytest.fixture
def pairs():
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def test_ready_gives_the_tags_of_readable_descriptors(poller, pairs):
    tags = [object() for _ in pairs]
    for (a, _), tag in zip(pairs, tags):
        poller.register(a.fileno(), READ, tag)
    assert poller.ready(0) == []
    pairs[0][1].send(b"x")
    pairs[2][1].send(b"x")
    assert sorted(map(id, poller.ready(1))) == sorted([id(tags[0]), id(tags[2])])


def test_objects_with_fileno_register_too(poller, pairs):
    a, b = pairs[0]
    poller.register(a, READ, "a")
    b.send(b"x")
    assert poller.ready(1) == ["a"]
    poller.unregister(a)
    assert poller.ready(0) == []


def test_a_descriptor_registers_once(poller, pairs):
    a, _ = pairs[0]
    poller.register(a, READ, "a")
    with pytest.raises(KeyError):
        poller.register(a.fileno(), READ, "again")


def test_modify_changes_events_and_tag(poller, pairs):
    a, _ = pairs[0]
    poller.register(a, READ, "reading")
    assert poller.ready(0) == []
    poller.modify(a, WRITE, "writing")   # an empty send buffer is writable at once
    assert poller.ready(1) == ["writing"]


def test_the_timeout_is_in_seconds(poller, pairs):
    poller.register(pairs[0][0], READ, "a")
    pairs[0][1].send(b"x")
    # A fraction of a second must not round to "wait forever" nor to "no wait" on poll's ms.
    assert poller.ready(0.0005) == ["a"]


def test_forget_after_close_and_the_number_reused(poller, pairs):
    a, b = pairs[0]
    fd = a.fileno()
    poller.register(fd, READ, "old")
    b.send(b"x")
    a.close()
    poller.forget(fd)
    assert poller.ready(0) == []
    # A new socket may get the same number: it registers afresh and reports its own tag.
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        poller.register(fd, READ, "new")
        d.send(b"y")
        assert poller.ready(1) == ["new"]
    finally:
        c.close()
        d.close()


def test_a_number_with_no_tag_is_not_reported(poller, pairs):
    # Closing one copy of a descriptor epoll watches leaves the open file in epoll under the
    # closed number; forgetting that number must not make ready() fail on it.
    a, b = pairs[0]
    copy = os.dup(a.fileno())
    try:
        fd = a.fileno()
        poller.register(fd, READ, "a")
        a.close()
        poller.forget(fd)
        b.send(b"x")
        assert poller.ready(0.05) == []
    finally:
        os.close(copy)
