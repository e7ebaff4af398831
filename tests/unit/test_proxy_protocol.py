"""The PROXY protocol reader, fed whole, byte by byte and in random cuts, with trailing data."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from pasteserve.http.proxy_protocol import V2_SIGNATURE, BadProxyHeader, ProxyHeader
from pasteserve.http.proxy_protocol import parse_proxy_header as parse

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, address: bytes = b"", tlvs: bytes = b"") -> bytes:
    body = address + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!HH", sport, dport))


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def splits(raw: bytes, seed: int = 0):
    yield "whole", [raw]
    yield "bytewise", [raw[i:i + 1] for i in range(len(raw))]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, 5)))
    yield "random", [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


def feed(pieces: list[bytes], mode: str = "auto"):
    """Feed like a connection does; the header and the bytes after it, or the error raised."""
    buf = b""
    for piece in pieces:
        buf += piece
        result = parse(buf, mode)
        if result is not None:
            header, used = result
            return header, buf[used:]
    return None, buf


VALID = [
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
     ProxyHeader(1, ("192.168.0.1", 56324), ("192.168.0.11", 443))),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
     ProxyHeader(1, ("2001:db8::1", 65535), ("2001:db8::2", 0))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1)),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", ProxyHeader(1)),
    (v2(address=inet4("10.1.2.3", "10.0.0.1", 40000, 80)),
     ProxyHeader(2, ("10.1.2.3", 40000), ("10.0.0.1", 80))),
    (v2(family=0x21, address=inet6("2001:db8::1", "::1", 1, 2)),
     ProxyHeader(2, ("2001:db8::1", 1), ("::1", 2))),
    # LOCAL (a health check by the proxy itself): the address block is ignored.
    (v2(command=0, family=0x00), ProxyHeader(2)),
    (v2(command=0, family=0x11, address=inet4("1.2.3.4", "5.6.7.8", 1, 2)), ProxyHeader(2)),
    # UNSPEC and UNIX families carry no usable address.
    (v2(family=0x00), ProxyHeader(2)),
    (v2(family=0x31, address=b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0")), ProxyHeader(2)),
    # TLVs: SSL with the client bit set means https; other TLVs are skipped.
    (v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 443),
        tlvs=tlv(0x01, b"h2") + tlv(0x20, b"\x01" + b"\0\0\0\0" + tlv(0x21, b"TLSv1.3"))),
     ProxyHeader(2, ("1.2.3.4", 1), ("5.6.7.8", 443), tls=True)),
    (v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 443), tlvs=tlv(0x20, b"\x00\0\0\0\0")),
     ProxyHeader(2, ("1.2.3.4", 1), ("5.6.7.8", 443), tls=False)),
    # A longer address block than the family needs (padding) is allowed.
    (v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, b"\0" * 10)),
     ProxyHeader(2, ("1.2.3.4", 1), ("5.6.7.8", 2))),
]


@pytest.mark.parametrize("raw,expected", VALID, ids=range(len(VALID)))
def test_valid_in_every_split(raw: bytes, expected: ProxyHeader) -> None:
    for how, pieces in splits(raw + REQUEST):
        header, rest = feed(pieces)
        assert header == expected, how
        assert REQUEST.startswith(rest), how   # nothing of the request was eaten
    # Nothing is decided before the last byte of the header.
    for end in range(len(raw)):
        assert parse(raw[:end]) is None, end
    assert parse(raw + REQUEST)[1] == len(raw)


INVALID = [
    b"PROXY TCP4 192.168.0.1 192.16...\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n",
    b"PROXY TCP4 not-an-ip 192.168.0.11 56324 443\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
    b"PROXY TCP4 2001:db8::1 192.168.0.11 1 2\r\n",
    b"PROXY TCP6 192.168.0.1 2001:db8::1 1 2\r\n",
    b"PROXY TCP4  192.168.0.1 192.168.0.11 1 2\r\n",
    b"PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
    b"PROXY TCP4 192.168.0.1 192.168.0.11 1 2\n",
    b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + inet4("1.2.3.4", "5.6.7.8", 1, 2),  # version 1 in v2 form
    v2(command=2, address=inet4("1.2.3.4", "5.6.7.8", 1, 2)),
    v2(family=0x41, address=inet4("1.2.3.4", "5.6.7.8", 1, 2)),
    v2(family=0x13, address=inet4("1.2.3.4", "5.6.7.8", 1, 2)),
    v2(family=0x21, address=inet4("1.2.3.4", "5.6.7.8", 1, 2)),    # IPv6 family, IPv4-sized block
    v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x20\x00"),   # truncated TLV
    v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 2) + b"\x20\x00\x09\x01"),  # TLV longer than the header
    v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 2), tlvs=tlv(0x20, b"\x01")),  # SSL TLV too short
]


@pytest.mark.parametrize("raw", INVALID, ids=range(len(INVALID)))
def test_invalid_in_every_split(raw: bytes) -> None:
    for how, pieces in splits(raw + REQUEST):
        with pytest.raises(BadProxyHeader) as info:
            feed(pieces)
        assert info.value.status == 400, how


def test_modes_accept_only_their_version() -> None:
    one = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    two = v2(address=inet4("1.2.3.4", "5.6.7.8", 1, 2))
    assert parse(one, "v1")[0].version == 1
    assert parse(two, "v2")[0].version == 2
    with pytest.raises(BadProxyHeader, match="v2"):
        parse(one, "v2")
    with pytest.raises(BadProxyHeader, match="v1"):
        parse(two, "v1")


def test_decides_on_the_first_wrong_byte() -> None:
    # A client that is not a proxy is refused without waiting for 107 bytes.
    with pytest.raises(BadProxyHeader):
        parse(b"G")
    with pytest.raises(BadProxyHeader):
        parse(b"PROXX")
    assert parse(b"PROX") is None
    assert parse(b"") is None


def test_v1_without_crlf_within_the_limit() -> None:
    assert parse(b"PROXY TCP4 " + b"1" * 90) is None
    with pytest.raises(BadProxyHeader, match="too long"):
        parse(b"PROXY TCP4 " + b"1" * 96)


@pytest.mark.parametrize("value,mode", [("true", "auto"), ("yes", "auto"), (True, "auto"), ("off", "off"),
                                        ("false", "off"), ("0", "off"), ("V1", "v1"), ("v2", "v2"), ("auto", "auto")])
def test_setting_values(value, mode):
    from pasteserve.settings import check_proxy_protocol

    assert check_proxy_protocol(value) == mode


def test_setting_refuses_other_values_saying_what_is_allowed():
    from pasteserve.settings import CheckError, check_proxy_protocol

    with pytest.raises(CheckError, match="off, v1, v2, auto"):
        check_proxy_protocol("v3")
