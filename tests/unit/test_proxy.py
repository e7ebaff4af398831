"""Trusted peers and waitress-style forwarding headers (pasteserve.proxy), as pure functions."""

from __future__ import annotations

import pytest

from pasteserve.http.errors import BadRequest
from pasteserve.proxy import ProxyHeaders, check_trusted_headers, trusted_peer


@pytest.mark.parametrize("address, allow, expected", [
    ("127.0.0.1", ["127.0.0.1", "::1"], True),
    ("127.0.0.5", ["127.0.0.1", "::1"], False),
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("11.1.2.3", ["10.0.0.0/8"], False),
    ("fd12::1", ["fd00::/8"], True),
    ("fe80::1%eth0", ["fe80::/10"], True),
    ("::ffff:10.0.0.7", ["10.0.0.0/8"], True),
    ("192.0.2.1", ["*"], True),
    ("not an address", ["10.0.0.0/8"], False),
    ("10.0.0.1", [], False),
])
def test_trusted_peer(address, allow, expected):
    assert trusted_peer(address, allow) is expected


def test_check_trusted_headers():
    assert check_trusted_headers(["X-Forwarded-Proto", "x-forwarded-for", ""]) == ["x-forwarded-for", "x-forwarded-proto"]
    with pytest.raises(ValueError, match="unknown proxy header x-real-ip"):
        check_trusted_headers(["x-real-ip"])
    with pytest.raises(ValueError, match="exclude each other"):
        check_trusted_headers(["forwarded", "x-forwarded-for"])


def environ(**headers: str) -> dict:
    env = {"REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "5555", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
           "HTTP_HOST": "internal:8000", "wsgi.url_scheme": "http"}
    env.update({"HTTP_" + k.upper(): v for k, v in headers.items()})
    return env


X_ALL = frozenset({"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"})


def test_x_forwarded_headers_from_a_trusted_peer():
    env = environ(x_forwarded_for="192.0.2.9, 198.51.100.7", x_forwarded_host="example.com",
                  x_forwarded_proto="https", x_forwarded_port="443")
    ProxyHeaders(X_ALL).apply(env, True)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["REMOTE_HOST"]) == ("198.51.100.7", "5555", "198.51.100.7")
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "example.com", "443")
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.7"   # cut to the hops believed


def test_trusted_proxy_count_takes_the_oldest_of_the_last_hops():
    env = environ(x_forwarded_for="6.6.6.6, 192.0.2.9, 198.51.100.7")
    ProxyHeaders(frozenset({"x-forwarded-for"}), count=2).apply(env, True)
    assert env["REMOTE_ADDR"] == "192.0.2.9"
    assert env["HTTP_X_FORWARDED_FOR"] == "192.0.2.9, 198.51.100.7"


def test_non_default_port_goes_into_the_host():
    env = environ(x_forwarded_host="example.com", x_forwarded_proto="https", x_forwarded_port="8443")
    ProxyHeaders(X_ALL).apply(env, True)
    assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("example.com:8443", "8443")
    env = environ(x_forwarded_host="example.com:9000", x_forwarded_port="8443")
    ProxyHeaders(X_ALL).apply(env, True)
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com:9000", "example.com", "9000")


def test_ipv6_client_with_and_without_port():
    env = environ(x_forwarded_for="2001:db8::1")
    ProxyHeaders(frozenset({"x-forwarded-for"})).apply(env, True)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "5555")
    env = environ(forwarded='for="[2001:db8::1]:4711";proto=https;host=example.com')
    ProxyHeaders(frozenset({"forwarded"})).apply(env, True)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::1", "4711")
    assert (env["wsgi.url_scheme"], env["HTTP_HOST"], env["SERVER_PORT"]) == ("https", "example.com", "443")


def test_forwarded_oldest_believed_element_wins():
    env = environ(forwarded='for=6.6.6.6;host=evil, for=192.0.2.9;host="example.com:8443";proto=https, '
                            'for=10.0.0.2;host=internal')
    ProxyHeaders(frozenset({"forwarded"}), count=2).apply(env, True)
    assert env["REMOTE_ADDR"] == "192.0.2.9"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com:8443", "example.com", "8443")
    assert env["HTTP_FORWARDED"] == 'for=192.0.2.9;host="example.com:8443";proto=https, for=10.0.0.2;host=internal'


def test_untrusted_peer_changes_nothing_and_clearing_removes_every_forwarding_header():
    env = environ(x_forwarded_for="6.6.6.6", forwarded="for=6.6.6.6", x_forwarded_proto="https", x_other="kept")
    before = dict(env)
    ProxyHeaders(X_ALL).apply(env, False)
    assert env == before
    ProxyHeaders(X_ALL, clear_untrusted=True).apply(env, False)
    assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_FORWARDED" not in env and "HTTP_X_FORWARDED_PROTO" not in env
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"], env["HTTP_X_OTHER"]) == ("10.0.0.1", "http", "kept")


def test_clearing_keeps_the_trusted_family_only():
    env = environ(x_forwarded_for="192.0.2.9", x_forwarded_host="evil", forwarded="for=6.6.6.6")
    ProxyHeaders(frozenset({"x-forwarded-for"}), clear_untrusted=True).apply(env, True)
    assert env["HTTP_X_FORWARDED_FOR"] == "192.0.2.9"
    assert "HTTP_X_FORWARDED_HOST" not in env and "HTTP_FORWARDED" not in env
    assert env["HTTP_HOST"] == "internal:8000"


@pytest.mark.parametrize("headers, trusted", [
    ({"x_forwarded_proto": "ftp"}, "x-forwarded-proto"),
    ({"x_forwarded_proto": "https, http"}, "x-forwarded-proto"),
    ({"x_forwarded_port": "eighty"}, "x-forwarded-port"),
    ({"x_forwarded_for": '"1.2.3.4'}, "x-forwarded-for"),
    ({"x_forwarded_for": "1.2.3.4,,"}, "x-forwarded-for"),
    ({"forwarded": "for"}, "forwarded"),
    ({"forwarded": "for = 1.2.3.4"}, "forwarded"),
    ({"forwarded": "proto=gopher"}, "forwarded"),
])
def test_malformed_trusted_headers_are_a_bad_request(headers, trusted):
    with pytest.raises(BadRequest):
        ProxyHeaders(frozenset({trusted})).apply(environ(**headers), True)


def test_log_untrusted_names_what_clearing_removed(caplog):
    env = environ(x_forwarded_for="192.0.2.9", x_forwarded_host="evil", forwarded="for=6.6.6.6")
    with caplog.at_level("WARNING", logger="pasteserve.error"):
        ProxyHeaders(frozenset({"x-forwarded-for"}), clear_untrusted=True, log_untrusted=True).apply(env, True)
        ProxyHeaders(frozenset({"x-forwarded-for"}), clear_untrusted=True, log_untrusted=True).apply(environ(), True)
    (record,) = caplog.records
    assert record.getMessage() == ("Removed untrusted forwarding headers from 10.0.0.1: Forwarded, X-Forwarded-Host "
                                   "(better removed by the proxy)")
    assert env["REMOTE_ADDR"] == "192.0.2.9"


@pytest.mark.parametrize("trusted, header, value", [
    ("x-forwarded-host", "x_forwarded_host", "evil.example/path"),
    ("x-forwarded-host", "x_forwarded_host", "shop.example:https"),
    ("x-forwarded-host", "x_forwarded_host", "[::1"),
    ("x-forwarded-for", "x_forwarded_for", "1.2.3.4:port"),
    ("x-forwarded-for", "x_forwarded_for", "<script>"),
    ("forwarded", "forwarded", 'for="1.2.3.4 5"'),
])
def test_forwarded_hosts_and_addresses_are_checked(trusted, header, value):
    with pytest.raises(BadRequest):
        ProxyHeaders(frozenset({trusted})).apply(environ(**{header: value}), True)


@pytest.mark.parametrize("value, addr, port", [
    ("2001:db8::1", "2001:db8::1", "5555"),          # unbracketed IPv6: no port in it
    ("[2001:db8::1]:4711", "2001:db8::1", "4711"),
    ("192.0.2.9:4711", "192.0.2.9", "4711"),
    ("unknown", "unknown", "5555"),
    ("_hidden", "_hidden", "5555"),
])
def test_client_address_forms(value, addr, port):
    env = environ(forwarded=f'for="{value}"')
    ProxyHeaders(frozenset({"forwarded"})).apply(env, True)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (addr, port)


def test_bracketed_ipv6_host():
    env = environ(x_forwarded_host="[2001:db8::1]:8443")
    ProxyHeaders(frozenset({"x-forwarded-host"})).apply(env, True)
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("[2001:db8::1]:8443", "2001:db8::1", "8443")
