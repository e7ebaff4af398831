"""pasteserve.takeover: the environ keys and the "already handled" conventions, read from
eventlet.wsgi itself (imported here as an app using eventlet.websocket would)."""

from __future__ import annotations

import io
import socket

import pytest

from pasteserve import takeover

wsgi = pytest.importorskip("eventlet.wsgi")


@pytest.mark.parametrize("headers,expected", [
    ({"HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade"}, True),
    ({"HTTP_UPGRADE": "WebSocket"}, True),
    ({"HTTP_UPGRADE": "h2c"}, False),
    ({}, False),
])
def test_is_websocket_upgrade(headers, expected):
    assert takeover.is_websocket_upgrade(headers) is expected


def test_offer_puts_the_socket_where_eventlet_and_gunicorn_apps_look():
    no_body = io.BytesIO(b"")
    a, b = socket.socketpair()
    with a, b:
        base = {"SERVER_SOFTWARE": "pasteserve"}
        takeover.prepare(base, a, no_body)   # per connection
        assert base.keys() == {"SERVER_SOFTWARE", "gunicorn.socket", "eventlet.input"}
        for body in (b"body", None):   # per request: one with a body, one without
            environ = base.copy()
            environ["wsgi.input"] = io.BytesIO(body) if body else no_body
            takeover.offer(environ, a)
            assert environ["gunicorn.socket"] is a
            assert environ["eventlet.input"].get_socket() is a
            assert environ["eventlet.input"].read() == (body or b"")   # the request's own body
        assert environ["eventlet.input"] is base["eventlet.input"]   # made once for those without


def test_already_handled_flag_of_eventlet_wsgi():
    takeover.reset()
    assert not takeover.handled_by_app([])
    wsgi.WSGI_LOCAL.already_handled = True
    assert takeover.handled_by_app([])
    takeover.reset()
    assert not takeover.handled_by_app([])


def test_already_handled_marker_of_older_eventlet(monkeypatch):
    marker = object()
    monkeypatch.setattr(wsgi, "ALREADY_HANDLED", marker, raising=False)
    takeover.reset()
    assert takeover.handled_by_app(marker)
    assert not takeover.handled_by_app([])


def test_already_handled_flag_is_each_green_threads_own():
    # The flag is read from each green thread's own attributes of WSGI_LOCAL, kept once found.
    import eventlet

    def serve(handles: bool) -> list[bool]:
        seen = []
        for _ in range(2):   # two requests on one green thread
            takeover.reset()
            if handles:
                wsgi.WSGI_LOCAL.already_handled = True
            eventlet.sleep(0)   # the other green thread runs its request meanwhile
            seen.append(takeover.handled_by_app([]))
        return seen

    handling, plain = eventlet.spawn(serve, True), eventlet.spawn(serve, False)
    assert handling.wait() == [True, True]
    assert plain.wait() == [False, False]
    takeover.reset()
    assert not takeover.handled_by_app([])
