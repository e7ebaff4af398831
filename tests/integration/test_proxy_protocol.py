"""PROXY protocol against real workers, with raw v1 and v2 headers sent over 127.0.0.1.

(tests/integration/test_proxies.py puts real HAProxy with send-proxy/send-proxy-v2 in front.)
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import time

import pytest

from pasteserve.http.proxy_protocol import V2_SIGNATURE
from tests.server import Client

WORKERS = ["sync", "eventlet"]
GET = b"GET /environ HTTP/1.1\r\nHost: localhost\r\n\r\n"


def serve(start_server, worker_class: str, *options: str):
    return start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "1", "-k", worker_class,
                                            *options, "tests.apps:router"])


def v2_header(src: str, sport: int, command: int = 1, tls: bool = False) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", sport, 443)
    if tls:
        ssl_value = b"\x01" + b"\0\0\0\0" + struct.pack("!BH", 0x21, 7) + b"TLSv1.3"
        body += struct.pack("!BH", 0x20, len(ssl_value)) + ssl_value
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x11, len(body)) + body


def environ(client: Client) -> dict:
    status, _, body = client.response()
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("worker_class", WORKERS)
def test_v1_header_names_the_client_for_every_request(start_server, worker_class):
    server = serve(start_server, worker_class, "--proxy-protocol", "v1")
    with Client(server.port) as client:
        client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\n" + GET)
        first = environ(client)
        client.send(GET)   # the header comes once; the next request on the connection keeps it
        second = environ(client)
    for env in (first, second):
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "40123")
        assert env["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("worker_class", WORKERS)
def test_v2_header_in_pieces_with_tls_sets_the_scheme(start_server, worker_class):
    server = serve(start_server, worker_class, "--proxy-protocol", "true")   # either version
    raw = v2_header("198.51.100.9", 5555, tls=True) + GET
    with Client(server.port) as client:
        for i in range(0, len(raw), 7):   # the header arrives split over several reads
            client.send(raw[i:i + 7])
            time.sleep(0.01)
        env = environ(client)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.9", "5555")
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize("worker_class", WORKERS)
def test_v2_local_keeps_the_socket_peer(start_server, worker_class):
    server = serve(start_server, worker_class, "--proxy-protocol", "auto")
    with Client(server.port) as client:
        client.send(v2_header("198.51.100.9", 5555, command=0) + GET)
        env = environ(client)
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("worker_class", WORKERS)
def test_allowed_peer_without_header_is_refused(start_server, worker_class):
    server = serve(start_server, worker_class, "--proxy-protocol", "auto")
    for raw in (GET, b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n" + GET):
        with Client(server.port) as client:
            client.send(raw)
            status, headers, _ = client.response()
            assert status == 400 and headers.get("connection") == "close"
            assert client.closed_by_peer()
    only_v1 = serve(start_server, worker_class, "--proxy-protocol", "v1")
    with Client(only_v1.port) as client:
        client.send(v2_header("1.2.3.4", 1) + GET)
        assert client.response()[0] == 400


@pytest.mark.parametrize("worker_class", WORKERS)
def test_peer_not_allowed_is_never_trusted(start_server, worker_class):
    server = serve(start_server, worker_class, "--proxy-protocol", "auto", "--proxy-allow-from", "10.0.0.0/8")
    with Client(server.port) as client:
        client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\n" + GET)
        assert client.response()[0] == 400
    with Client(server.port) as client:
        client.send(v2_header("203.0.113.7", 1, tls=True) + GET)
        assert client.response()[0] == 400
    with Client(server.port) as client:   # a plain request from such a peer is served as usual
        client.send(GET)
        assert environ(client)["REMOTE_ADDR"] == "127.0.0.1"


def test_allowed_networks(start_server):
    server = serve(start_server, "sync", "--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/8, 127.0.0.0/24")
    with Client(server.port) as client:
        client.send(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n" + GET)
        assert environ(client)["REMOTE_ADDR"] == "2001:db8::7"


def test_bad_mode_is_refused_with_what_to_use(start_server, tmp_path):
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "--proxy-protocol", "v3", "tests.apps:router"],
                          expect_listening=False)
    assert server.wait_exit(20) == 2
    assert "proxy_protocol" in server.log() and "v1, v2, auto" in server.log()


@pytest.mark.parametrize("worker_class", WORKERS)
def test_header_alone_then_the_request(start_server, worker_class):
    # The header's last byte ends a read: the request that follows still gets served.
    server = serve(start_server, worker_class, "--proxy-protocol", "auto")
    with Client(server.port) as client:
        client.send(v2_header("192.0.2.1", 7))
        time.sleep(0.2)
        client.send(GET)
        assert environ(client)["REMOTE_ADDR"] == "192.0.2.1"


PID = b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n"


def served_by(client: Client) -> tuple[int, str]:
    """(pid, REMOTE_ADDR) of the /pid answer."""
    status, _, body = client.response()
    assert status == 200, body
    pid, address = body.decode().split()
    return int(pid), address


@pytest.mark.parametrize("worker_class", WORKERS)
def test_proxied_connection_is_handed_off_with_its_client_on_reload(start_server, worker_class):
    # The retiring worker passes the idle connection to the new one with the client its PROXY
    # header named: the header does not come again, and the client must not change.
    server = serve(start_server, worker_class, "--proxy-protocol", "v1", "--keep-alive", "30")
    (old,) = server.wait_workers(1)
    with Client(server.port) as client:
        client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\n" + PID)
        assert served_by(client) == (old, "203.0.113.7")
        server.signal(signal.SIGHUP)
        (new,) = server.wait_for(lambda: [pid for pid in server.children() if pid != old] or None, 20,
                                 "the new worker")
        server.wait_for(lambda: old not in server.children(), 20, "the old worker to exit")
        client.send(PID)
        assert served_by(client) == (new, "203.0.113.7")


def test_proxied_connection_waiting_behind_a_long_request_is_lent_with_its_client(start_server):
    # Two sync workers; the one holding both connections is inside a long request when the
    # other connection's request comes: its sibling answers it, for the same client.
    server = start_server("pasteserve", args=["-b", "127.0.0.1:0", "-w", "2", "--proxy-protocol", "v1",
                                              "--keep-alive", "30", "tests.apps:router"])
    server.wait_workers(2)
    held: dict[int, list[Client]] = {}
    clients = []
    try:
        deadline = time.monotonic() + 15
        while not any(len(c) >= 2 for c in held.values()) and time.monotonic() < deadline:
            client = Client(server.port)
            clients.append(client)
            client.send(f"PROXY TCP4 203.0.113.{len(clients)} 10.0.0.1 40123 443\r\n".encode() + PID)
            pid, _ = served_by(client)
            held.setdefault(pid, []).append(client)
        busy = next(pid for pid, c in held.items() if len(c) >= 2)
        slow, waiting = held[busy][:2]
        slow.send(b"GET /slow?seconds=3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.3)   # the worker is inside the slow request
        started = time.monotonic()
        waiting.send(PID)
        pid, address = served_by(waiting)
        assert time.monotonic() - started < 1.5, "the request waited for the slow one"
        assert pid != busy and address == f"203.0.113.{clients.index(waiting) + 1}"
        assert slow.response()[0] == 200
    finally:
        for client in clients:
            client.close()


def test_ini_proxy_protocol_true(start_server):
    from tests.conftest import ini_text

    server = start_server("pasteserve_paster", ini=ini_text(
        "bind = 127.0.0.1:0\nproxy_protocol = true\nproxy_allow_ips = 127.0.0.1", "use = call:tests.apps:app_factory"))
    with Client(server.port) as client:
        client.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 40123 443\r\n" + GET)
        assert environ(client)["REMOTE_ADDR"] == "203.0.113.7"
