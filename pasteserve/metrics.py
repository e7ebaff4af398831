"""StatsD metrics with Gunicorn's names and types, so existing dashboards keep working.

With ``statsd_prefix = myapp`` (and the default ``statsd_namespace = gunicorn``) a request sends
``myapp.gunicorn.requests:1|c``, ``myapp.gunicorn.request.status.200:1|c`` and
``myapp.gunicorn.request.duration:<ms>|ms``; the master sends ``myapp.gunicorn.workers:<n>|g``
when the count changes, and with ``enable_backlog_metric`` ``myapp.gunicorn.backlog:<n>|h``;
warnings and errors on the ``pasteserve.error`` logger count as ``log.warning``, ``log.error``,
``log.exception`` (an error with a traceback) and ``log.critical``. ``dogstatsd_tags`` are
appended to each metric as ``|#tags``.

Sending never waits and never fails a request: one non-blocking datagram per event (a request's
three metrics travel together, newline-separated, as StatsD and DogStatsD allow), and a datagram
that cannot leave is dropped and counted in :attr:`Metrics.dropped`.
"""

from __future__ import annotations

import logging
from typing import Any

from .green import original
from .logs import ERROR_LOGGER

socket = original("socket")

DEFAULT_PORT = 8125


def parse_address(value: str) -> tuple[str, Any]:
    """``host:port``, ``[v6]:port``, ``host`` (port 8125), ``unix:PATH`` or ``unix://PATH``.

    Returns ("unix", path) or ("udp", (host, port)); ValueError says what is wrong.
    """
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix://"):] if text.startswith("unix://") else text[len("unix:"):]
        if not path:
            raise ValueError(f"{value!r}: empty unix socket path")
        return "unix", path
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: expected [IPV6]:PORT")
        port = rest[1:]
    elif text.count(":") > 1:
        raise ValueError(f"{value!r}: write IPv6 addresses in brackets, like [::1]:8125")
    else:
        host, _, port = text.partition(":")
    if not host or any(c.isspace() or c == "/" for c in host):
        raise ValueError(f"{value!r}: expected HOST:PORT or unix:PATH")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: port must be a number from 1 to 65535")
    return "udp", (host, int(port) if port else DEFAULT_PORT)


class Metrics:
    """A StatsD client: non-blocking datagrams to one address, failures counted, never raised."""

    def __init__(self, address: str, prefix: str = "", namespace: str = "gunicorn", tags: str = "") -> None:
        kind, where = parse_address(address)
        if kind == "unix":
            family, self.address = socket.AF_UNIX, where
        else:
            try:
                infos = socket.getaddrinfo(where[0], where[1], 0, socket.SOCK_DGRAM)
            except socket.gaierror as exc:
                raise ValueError(f"statsd_host {address!r}: {exc.strerror}") from None
            family, _, _, _, self.address = infos[0]
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        # Gunicorn adds the dot after the prefix; namespace "" drops the segment entirely.
        self.prefix = "".join(part.strip(".") + "." for part in (prefix, namespace) if part.strip("."))
        self.tags = f"|#{tags}" if tags else ""
        self.dropped = 0

    def _line(self, name: str, value: Any, kind: str) -> str:
        return f"{self.prefix}{name}:{value}|{kind}{self.tags}"

    def send(self, *lines: str) -> None:
        try:
            self.sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError:
            # No listener, full buffer, unreachable: metrics are best effort.
            self.dropped += 1

    def increment(self, name: str, value: int = 1) -> None:
        self.send(self._line(name, value, "c"))

    def gauge(self, name: str, value: float) -> None:
        self.send(self._line(name, value, "g"))

    def histogram(self, name: str, value: float) -> None:
        self.send(self._line(name, value, "h"))

    def timer(self, name: str, milliseconds: float) -> None:
        self.send(self._line(name, f"{milliseconds:.3f}", "ms"))

    def request(self, status_code: int, seconds: float) -> None:
        """One served request: duration, count and status, in one datagram."""
        self.send(self._line("request.duration", f"{seconds * 1000:.3f}", "ms"),
                  self._line("requests", 1, "c"),
                  self._line(f"request.status.{status_code}", 1, "c"))

    def close(self) -> None:
        self.sock.close()


class LogCounter(logging.Handler):
    """Counts warnings and errors of the error logger as ``log.*`` metrics, as Gunicorn does."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.WARNING)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.CRITICAL:
            name = "critical"
        elif record.levelno >= logging.ERROR:
            name = "exception" if record.exc_info else "error"
        else:
            name = "warning"
        self.metrics.increment("log." + name)


def create(settings: Any) -> Metrics | None:
    """The client the settings ask for (None without ``statsd_host``); ValueError if unusable."""
    if not settings.statsd_host:
        return None
    return Metrics(settings.statsd_host, settings.statsd_prefix or "", settings.statsd_namespace or "",
                   settings.dogstatsd_tags or "")


def install(metrics: Metrics | None) -> None:
    """Make ``metrics`` the process's client (found by :func:`installed`) in place of any other.

    It lives as a handler on the error logger, which also makes it count log.* metrics; forked
    workers inherit it with the logging configuration. Closing a replaced client is the caller's.
    """
    logger = logging.getLogger(ERROR_LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, LogCounter):
            logger.removeHandler(handler)
    if metrics is not None:
        logger.addHandler(LogCounter(metrics))


def installed() -> Metrics | None:
    for handler in logging.getLogger(ERROR_LOGGER).handlers:
        if isinstance(handler, LogCounter):
            return handler.metrics
    return None
