"""The Gunicorn request corpus against the parser, one test per case.

Each case is fed whole, one byte at a time, and in seeded random cuts. The
driver acts like a connection: it tries ``whole_head`` before feeding each
piece, stops after a request that does not keep the connection alive, and
sends EOF once the bytes run out. The whole case is also fed without
``whole_head``, so both ways of reading a head meet every case.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from pasteserve.http.errors import ProtocolError
from pasteserve.http.parser import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Limits,
    Request,
    RequestParser,
)
from pasteserve.http.proxy_protocol import parse_proxy_header
from tests.conformance.corpus import Case, ExpectedRequest, load_cases, skip_reason

CASES = load_cases()


def _splits(case: Case) -> Iterator[tuple[str, list[bytes]]]:
    raw = case.raw
    yield "whole", [raw]
    yield "whole-fed", [raw]
    yield "bytewise", [raw[i : i + 1] for i in range(len(raw))]
    rng = random.Random(case.id)
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, 12)))
    yield "random", [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


def _drive(pieces: list[bytes], limits: Limits, send_eof: bool, proxy: str = "off",
           whole_head: bool = True) -> list[ExpectedRequest]:
    """Requests the parser reports, as a connection would consume them (a PROXY header first)."""
    parser = RequestParser(limits)
    seen: list[list] = []  # [request, body, trailers]
    header = b"" if proxy != "off" else None
    for piece in [*pieces, b""] if send_eof else pieces:
        if header is not None:
            header += piece
            found = parse_proxy_header(header, proxy)
            if found is None:
                continue
            piece, header = header[found[1]:], None
            if not piece:
                continue   # the header ended with this piece; b"" would tell the parser EOF
        head = parser.whole_head(piece) if whole_head else None
        if head is None:
            parser.feed(piece)
        else:
            seen.append([head, bytearray(), ()])
        while (event := parser.next_event()) is not NEED_DATA:
            if event is CLOSED:
                return _as_expected(seen)
            if isinstance(event, Request):
                seen.append([event, bytearray(), ()])
            elif isinstance(event, Data):
                seen[-1][1] += event.data
            else:
                assert isinstance(event, EndOfMessage)
                seen[-1][2] = tuple(event.trailers)
                if not seen[-1][0].keep_alive:
                    return _as_expected(seen)
    return _as_expected(seen)


def _as_expected(seen: list[list]) -> list[ExpectedRequest]:
    # The WSGI layer drops names containing "_"; the corpus lists what apps see.
    return [
        ExpectedRequest(
            method=request.method,
            target=request.target,
            version=request.version,
            headers=tuple((n, v) for n, v in request.headers if "_" not in n),
            body=bytes(body),
            trailers=trailers,
        )
        for request, body, trailers in seen
    ]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case) -> None:
    reason = skip_reason(case)
    if reason:
        pytest.skip(reason)
    accepted = case.accepted_statuses()
    for how, pieces in _splits(case):
        try:
            requests = _drive(pieces, case.limits(), send_eof=not case.truncated, proxy=case.proxy_protocol,
                              whole_head=how != "whole-fed")
        except ProtocolError as exc:
            assert exc.status in accepted, f"{how}: {type(exc).__name__}({exc.detail!r})"
            continue
        assert case.valid, f"{how}: accepted an invalid request: {requests}"
        assert requests == list(case.expect), how
