"""Protocol errors raised while reading a request.

Each class carries the HTTP status and reason phrase to answer with, so the
connection renders any of them the same way (``exc.status``, ``exc.reason``,
``exc.detail``) instead of mapping exception types to codes.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The client broke HTTP/1.1; answer ``status`` and close the connection."""

    status: int = 400
    reason: str = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        #: Human-readable and safe for a log line or a short text/plain body:
        #: it never echoes more than a few bytes of what the client sent.
        self.detail = detail


class BadRequest(ProtocolError):
    status = 400
    reason = "Bad Request"


class IncompleteMessage(BadRequest):
    """The peer closed the connection in the middle of a request."""


class RequestTimeout(ProtocolError):
    """Raised by the connection (never by the parser) when a request stalls."""

    status = 408
    reason = "Request Timeout"


class PayloadTooLarge(ProtocolError):
    status = 413
    reason = "Payload Too Large"


class URITooLong(ProtocolError):
    status = 414
    reason = "URI Too Long"


class ExpectationFailed(ProtocolError):
    status = 417
    reason = "Expectation Failed"


class HeaderFieldsTooLarge(ProtocolError):
    status = 431
    reason = "Request Header Fields Too Large"


class NotImplementedCoding(ProtocolError):
    """A transfer coding other than ``chunked`` (RFC 9112 section 6.1)."""

    status = 501
    reason = "Not Implemented"


class VersionNotSupported(ProtocolError):
    status = 505
    reason = "HTTP Version Not Supported"
