"""The Gunicorn request corpus against a live pasteserve, over real sockets, one test per case.

Every case's exact bytes go to a running ``pasteserve`` (sync worker) serving
``tests.integration.echo_app``, which answers with what the application saw. Valid cases:
each request the corpus lists must reach the app as listed (method, target, version,
headers, body), in order, and the connection must then close or stay usable as the request
asked. Invalid cases: one error response with an accepted status, ``Connection: close``,
then EOF: no hang, no second response, nothing dispatched after the error.

One server runs per limit configuration the corpus uses, started on first need and stopped
when the module ends.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Callable, Iterator

import pytest

from pasteserve.http.parser import Limits
from tests.conformance.corpus import Case, ExpectedRequest, load_cases, skip_reason
from tests.server import BIN, Client, Server

CASES = load_cases()
TIMEOUT = 5.0

# Gunicorn errors meaning "the client's bytes stopped early": only the end of the stream
# makes such a request wrong, so the client half-closes to tell the server it is done.
ENDS_EARLY = frozenset({"NoMoreData", "ChunkMissingTerminator"})

AFTER = b"GET /after-the-case HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def server_for(tmp_path_factory) -> Iterator[Callable[[Limits, str | None, str], Server]]:
    """server_for(limits, forwarded_allow_ips, proxy_protocol) -> a running server with those settings (one per distinct set)."""
    cwd = tmp_path_factory.mktemp("corpus-live")
    servers: dict[tuple[Limits, str | None, str], Server] = {}

    def get(limits: Limits, allow: str | None, proxy_protocol: str) -> Server:
        key = (limits, allow, proxy_protocol)
        if key not in servers:
            argv = [str(BIN / "pasteserve"), "-w", "1", "-k", "sync", "-b", "127.0.0.1:0",
                    "--limit-request-line", str(limits.limit_request_line),
                    "--limit-request-fields", str(limits.limit_request_fields),
                    "--limit-request-field_size", str(limits.limit_request_field_size),
                    *(["--forwarded-allow-ips", allow] if allow is not None else []),
                    "--proxy-protocol", proxy_protocol,
                    "tests.integration.echo_app:app"]
            servers[key] = Server(argv, cwd)
            servers[key].start()
        return servers[key]

    try:
        yield get
    finally:
        for server in servers.values():
            server.stop()


def _environ_headers(request: ExpectedRequest) -> dict[str, str]:
    """The CGI variables a WSGI app must see for the corpus's header list.

    Names with "_" are already dropped by the corpus; repeated fields reach the app as one
    variable, values joined in order (RFC 9110 section 5.3).
    """
    seen: dict[str, str] = {}
    for name, value in request.headers:
        key = name.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key in seen:
            seen[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            seen[key] = value
    return seen


def _keeps_alive(request: ExpectedRequest) -> bool:
    """RFC 9112 section 9.3: whether the client asked for a persistent connection."""
    members = {member.strip(" \t").lower()
               for name, value in request.headers if name == "CONNECTION"
               for member in value.split(",")}
    if "close" in members:
        return False
    return request.version == (1, 1) or "keep-alive" in members


def _missing_body(case: Case) -> bytes:
    """Bytes that complete a truncated case's declared Content-Length."""
    head_end = case.raw.index(b"\r\n\r\n") + 4
    declared = int(re.search(rb"(?im)^content-length:[ \t]*(\d+)", case.raw[:head_end]).group(1))
    return b"x" * (declared - (len(case.raw) - head_end))


def _check_valid(case: Case, port: int) -> None:
    refusals = case.accepted_statuses()
    padding = _missing_body(case) if case.truncated else b""
    with Client(port, TIMEOUT) as client:
        client.send(case.raw + padding)
        for number, expected in enumerate(case.expect, 1):
            status, headers, body = client.response()
            if status in refusals:
                assert client.closed_by_peer(TIMEOUT), f"request {number}: {status}, then no close"
                return
            assert status == 200, f"request {number}: {status} {body[:200]!r}"
            seen = json.loads(body)
            what = f"request {number}"
            assert seen["method"] == expected.method, what
            assert seen["RAW_URI"] == expected.target, what
            assert seen["SERVER_PROTOCOL"] == "HTTP/%d.%d" % expected.version, what
            assert seen["headers"] == _environ_headers(expected), what
            want_body = expected.body + (padding if number == len(case.expect) else b"")
            assert base64.b64decode(seen["body_b64"]) == want_body, what
        if _keeps_alive(case.expect[-1]):
            # The framing ended exactly where the corpus says: the connection serves more.
            client.send(AFTER)
            status, _, body = client.response()
            assert status == 200 and json.loads(body)["RAW_URI"] == "/after-the-case"
        else:
            assert headers.get("connection") == "close"
        assert client.closed_by_peer(TIMEOUT), "no close after the last response"


def _check_invalid(case: Case, port: int) -> None:
    with Client(port, TIMEOUT) as client:
        client.send(case.raw)
        if case.error in ENDS_EARLY:
            client.sock.shutdown(socket.SHUT_WR)
        status, headers, body = client.response()
        assert status in case.accepted_statuses(), f"{status} {body[:200]!r}"
        assert headers.get("connection") == "close"
        client.sock.settimeout(TIMEOUT)
        # EOF within the timeout, with nothing after the error: no second response.
        assert client.rfile.read() == b""


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case_live(case: Case, server_for: Callable[[Limits, str | None, str], Server]) -> None:
    reason = skip_reason(case, live=True)
    if reason:
        pytest.skip(reason)
    port = server_for(case.limits(), case.forwarded_allow_ips(), case.proxy_protocol).port
    if case.valid:
        _check_valid(case, port)
    else:
        _check_invalid(case, port)
