"""The StatsD client: address parsing, line format, log counters, failures counted not raised."""

from __future__ import annotations

import logging
import socket

import pytest

from pasteserve.metrics import LogCounter, Metrics, parse_address


@pytest.mark.parametrize("text, expected", [
    ("localhost:8125", ("udp", ("localhost", 8125))),
    ("statsd.internal", ("udp", ("statsd.internal", 8125))),
    ("[::1]:9125", ("udp", ("::1", 9125))),
    ("[::1]", ("udp", ("::1", 8125))),
    ("unix:/run/statsd.sock", ("unix", "/run/statsd.sock")),
    ("unix:///run/statsd.sock", ("unix", "/run/statsd.sock")),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text, message", [
    ("localhost:http", "port must be a number"),
    ("localhost:0", "port must be a number"),
    ("::1:8125", "brackets"),
    ("unix:", "empty unix socket path"),
    (":8125", "expected HOST:PORT"),
    ("[::1", "expected [IPV6]:PORT"),
])
def test_parse_address_refuses(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parse_address(text)


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.mark.parametrize("prefix, namespace, tags, line", [
    ("", "gunicorn", "", "gunicorn.requests:1|c"),
    ("myapp", "gunicorn", "", "myapp.gunicorn.requests:1|c"),
    ("myapp.", "gunicorn", "", "myapp.gunicorn.requests:1|c"),
    ("myapp", "", "", "myapp.requests:1|c"),
    ("", "", "env:prod,role:web", "requests:1|c|#env:prod,role:web"),
])
def test_line_format(receiver, prefix, namespace, tags, line):
    metrics = Metrics(f"127.0.0.1:{receiver.getsockname()[1]}", prefix, namespace, tags)
    metrics.increment("requests")
    assert receiver.recv(1000).decode() == line
    metrics.close()


def test_request_sends_gunicorns_three_metrics_in_one_datagram(receiver):
    metrics = Metrics(f"127.0.0.1:{receiver.getsockname()[1]}", "app")
    metrics.request(404, 0.0125)
    assert receiver.recv(1000).decode().split("\n") == [
        "app.gunicorn.request.duration:12.500|ms", "app.gunicorn.requests:1|c", "app.gunicorn.request.status.404:1|c"]
    metrics.gauge("workers", 3)
    assert receiver.recv(1000) == b"app.gunicorn.workers:3|g"
    metrics.close()


def test_failures_are_counted_not_raised(tmp_path):
    metrics = Metrics(f"unix:{tmp_path / 'nobody-listens.sock'}")
    metrics.increment("requests")
    metrics.request(200, 0.1)
    assert metrics.dropped == 2
    metrics.close()


@pytest.mark.parametrize("level, exc_info, name", [
    (logging.WARNING, False, "log.warning"),
    (logging.ERROR, False, "log.error"),
    (logging.ERROR, True, "log.exception"),
    (logging.CRITICAL, False, "log.critical"),
])
def test_log_counter(receiver, level, exc_info, name):
    metrics = Metrics(f"127.0.0.1:{receiver.getsockname()[1]}")
    logger = logging.getLogger(f"test_metrics.{name}")
    logger.propagate = False
    handler = LogCounter(metrics)
    logger.addHandler(handler)
    try:
        logger.info("not counted")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.log(level, "counted", exc_info=exc_info)
        assert receiver.recv(1000).decode() == f"gunicorn.{name}:1|c"
    finally:
        logger.removeHandler(handler)
        metrics.close()
