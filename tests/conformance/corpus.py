"""The Gunicorn request corpus, loaded as plain test data.

``data/gunicorn-requests.json`` holds Gunicorn 27's ``tests/requests`` cases
(MIT, see ``data/LICENSE-gunicorn-corpus``): the exact bytes a client sends and
either the requests a server must see or the status it must answer with.
Nothing here runs a parser or a server, so the parser test and a live-server
test can share it::

    from tests.conformance.corpus import load_cases, skip_reason

    for case in load_cases():
        if skip_reason(case):
            continue
        case.raw                   # bytes to send
        case.limits()              # pasteserve Limits equivalent to the case's settings
        case.expect                # valid: ExpectedRequest tuple, in order
        case.accepted_statuses()   # invalid: any of these; valid: allowed refusals

A case's settings are Gunicorn's; the three limits map onto ``Limits`` with
Gunicorn's defaults for the ones not given (its request line default is 4094,
and ``invalid/006`` depends on it). Cases needing a Gunicorn-only setting, and
the few where pasteserve follows the RFC rather than Gunicorn, are named by
``skip_reason``.
"""

from __future__ import annotations

import ast
import base64
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pasteserve.http.parser import Limits

CORPUS_PATH = Path(__file__).parent / "data" / "gunicorn-requests.json"

#: The limit settings pasteserve shares with Gunicorn, by the same names.
LIMIT_SETTINGS = ("limit_request_line", "limit_request_fields", "limit_request_field_size")

#: Gunicorn's defaults for those limits, the baseline every case assumes.
GUNICORN_LIMITS = {
    "limit_request_line": 4094,
    "limit_request_fields": 100,
    "limit_request_field_size": 8190,
}

#: Gunicorn settings pasteserve has no equivalent for (``permit_*`` too).
GUNICORN_ONLY_SETTINGS = (
    "header_map",
    "casefold_http_method",
    "strip_header_spaces",
)

#: Settings the WSGI layer applies, not the parser: only the live test can honour them.
LIVE_ONLY_SETTINGS = ("forwarded_allow_ips",)

#: Cases where pasteserve deliberately answers differently, and why.
DISAGREEMENTS = {
    "valid/pp_03": (
        "no PROXY header from a peer configured to send one: the PROXY protocol spec forbids "
        "guessing whether the header is there, so pasteserve answers 400 where Gunicorn's "
        "'auto' serves the request"
    ),
    "invalid/003c": (
        "'-bl' is a valid method: RFC 9110 section 9.1 makes a method any token, "
        "case-sensitive; Gunicorn refuses lower-case methods by policy "
        "(permit_unconventional_http_method), pasteserve leaves that to the app (405/501)"
    ),
}

#: Valid cases whose stored bytes end before the declared body does.
TRUNCATED = {
    "valid/099": (
        "Content-Length is 17914 but the source file's newlines were stripped, "
        "leaving 8599 body bytes: a server rightly waits for the rest"
    ),
}


@dataclass(frozen=True)
class ExpectedRequest:
    """One request as the application must see it."""

    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]  # upper-cased names, '_' names already dropped
    body: bytes
    trailers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Case:
    """One corpus entry: a valid case has ``expect``, an invalid one ``status``."""

    id: str
    raw: bytes
    settings: dict[str, Any] = field(hash=False)
    expect: tuple[ExpectedRequest, ...] = ()
    error: str | None = None  # Gunicorn's exception name, for reading only
    status: int | None = None

    @property
    def valid(self) -> bool:
        return self.id.startswith("valid/")

    @property
    def truncated(self) -> bool:
        """The stored bytes end inside the last request's body (see TRUNCATED)."""
        return self.id in TRUNCATED

    def forwarded_allow_ips(self) -> str | None:
        """The case's forwarded_allow_ips for the command line (the corpus stores "['*']")."""
        value = self.settings.get("forwarded_allow_ips")
        if value is None:
            return None
        return " ".join(ast.literal_eval(value)) if value.startswith("[") else value

    @property
    def proxy_protocol(self) -> str:
        """The PROXY protocol mode the case needs (Gunicorn's and pasteserve's names agree)."""
        return str(self.settings.get("proxy_protocol", "off"))

    def limits(self) -> Limits:
        """pasteserve limits equivalent to this case's Gunicorn settings."""
        values = dict(GUNICORN_LIMITS)
        values.update((name, self.settings[name]) for name in LIMIT_SETTINGS if name in self.settings)
        return Limits(**values)

    def accepted_statuses(self) -> frozenset[int]:
        """Error statuses that count as a pass.

        Invalid cases: Gunicorn's status, plus the alternatives the corpus
        README allows (400/505 for a bad version, 400/501 for transfer
        codings). Valid cases: 501 where a coding other than chunked is used.
        """
        if self.valid:
            return frozenset({501}) if any(_uses_other_coding(r) for r in self.expect) else frozenset()
        statuses = {self.status}
        if self.error == "InvalidHTTPVersion":
            statuses |= {400, 505}
        if self.error == "UnsupportedTransferCoding" or b"transfer-encoding" in self.raw.lower():
            statuses |= {400, 501}
        return frozenset(statuses)


def _uses_other_coding(request: ExpectedRequest) -> bool:
    codings = [
        member.strip(" \t").lower()
        for name, value in request.headers
        if name == "TRANSFER-ENCODING"
        for member in value.split(",")
    ]
    return any(coding and coding != "chunked" for coding in codings)


def _expected(entry: dict[str, Any]) -> ExpectedRequest:
    return ExpectedRequest(
        method=entry["method"],
        target=entry["target"],
        version=tuple(entry["version"]),
        headers=tuple((name, value) for name, value in entry["headers"]),
        body=base64.b64decode(entry["body_b64"]),
        trailers=tuple((name, value) for name, value in entry["trailers"]),
    )


@lru_cache(maxsize=1)
def _load(path: Path) -> tuple[Case, ...]:
    with path.open(encoding="utf-8") as stream:
        document = json.load(stream)
    return tuple(
        Case(
            id=entry["id"],
            raw=base64.b64decode(entry["raw_b64"]),
            settings=dict(entry.get("settings", {})),
            expect=tuple(_expected(e) for e in entry.get("expect", ())),
            error=entry.get("error"),
            status=entry.get("status", 400) if "expect" not in entry else None,
        )
        for entry in document["cases"]
    )


def load_cases(path: Path = CORPUS_PATH) -> list[Case]:
    """Every case of the corpus, in file order."""
    return list(_load(path))


def skip_reason(case: Case, live: bool = False) -> str | None:
    """Why pasteserve cannot be held to this case (by a ``live`` server or the parser alone), or None."""
    foreign = sorted(
        name
        for name in case.settings
        if name in GUNICORN_ONLY_SETTINGS or name.startswith("permit_")
    )
    if foreign:
        return "needs Gunicorn-only setting(s): " + ", ".join(foreign)
    if not live and any(name in LIVE_ONLY_SETTINGS for name in case.settings):
        return "applied above the parser (forwarded headers): checked by the live test"
    return DISAGREEMENTS.get(case.id)
