"""Sans-I/O reader of the PROXY protocol header (HAProxy's spec, versions 1 and 2).

A proxy that speaks it (HAProxy ``send-proxy``/``send-proxy-v2``, AWS NLB, ...) sends one header
before the first byte of the client's request, naming the client's address.
`parse_proxy_header` is a pure function of the bytes received so far: it returns None while more
are needed, or the header and how many bytes it took; anything else raises `BadProxyHeader`
(answered 400, then closed).

The spec forbids guessing: a receiver configured for the protocol requires the header on every
connection from the proxy, and one not configured for it treats such bytes as a bad request.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .errors import BadRequest

__all__ = ["BadProxyHeader", "ProxyHeader", "parse_proxy_header", "MODES", "V1_MAX", "V2_SIGNATURE"]

#: What ``proxy_protocol`` may be set to: which versions a connection may start with.
MODES = ("off", "v1", "v2", "auto")

V1_PREFIX = b"PROXY "
V1_MAX = 107   # the longest v1 line, CRLF included (spec section 2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16

# v2 address families (high nibble of byte 14) and the size of their address block.
_INET, _INET6, _UNIX = 0x1, 0x2, 0x3
_ADDRESS_SIZE = {_INET: 12, _INET6: 36, _UNIX: 216}
# TLV types we read (spec section 2.2.7); the others are skipped.
PP2_TYPE_SSL = 0x20
PP2_CLIENT_SSL = 0x01


class BadProxyHeader(BadRequest):
    """The bytes before the request are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """What the proxy told us about the connection it relays."""

    version: int
    #: The client's (address, port), or None when the proxy speaks for itself (v2 ``LOCAL``,
    #: health checks) or does not know (v1 ``UNKNOWN``, unix sockets): keep the socket's peer.
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    #: v2 only: the client spoke TLS to the proxy (PP2_TYPE_SSL with PP2_CLIENT_SSL).
    tls: bool = False


def parse_proxy_header(data: bytes, mode: str = "auto") -> tuple[ProxyHeader, int] | None:
    """The header at the start of `data` and its length, or None if more bytes are needed."""
    if mode in ("v1", "auto") and data[:len(V1_PREFIX)] == V1_PREFIX[:len(data)]:
        return _parse_v1(data)
    if mode in ("v2", "auto") and data[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(data)]:
        return _parse_v2(data)
    wanted = {"v1": "a v1", "v2": "a v2"}.get(mode, "a")
    raise BadProxyHeader(f"expected {wanted} PROXY protocol header from this peer")


# --- version 1: one text line ---------------------------------------------------------------

def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise BadProxyHeader("PROXY v1 line too long or not ended by CRLF")
        return None
    words = data[:end].split(b" ")
    family = words[1] if len(words) > 1 else b""
    if family == b"UNKNOWN":
        # The proxy cannot tell (spec: the rest of the line is ignored); keep the socket's peer.
        return ProxyHeader(1), end + 2
    if len(words) != 6 or family not in (b"TCP4", b"TCP6"):
        raise BadProxyHeader("PROXY v1 line must be: PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    version = 4 if family == b"TCP4" else 6
    source = (_v1_address(words[2], version), _v1_port(words[4]))
    destination = (_v1_address(words[3], version), _v1_port(words[5]))
    return ProxyHeader(1, source, destination), end + 2


def _v1_address(word: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(word.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadProxyHeader("PROXY v1 line has an invalid address") from None
    if address.version != version:
        raise BadProxyHeader(f"PROXY v1 line: address is not IPv{version}")
    return str(address)


def _v1_port(word: bytes) -> int:
    # Decimal without a leading zero (spec section 2.1), 0..65535.
    if not word.isdigit() or len(word) > 5 or (word[:1] == b"0" and len(word) > 1) or int(word) > 65535:
        raise BadProxyHeader("PROXY v1 line has an invalid port")
    return int(word)


# --- version 2: binary ----------------------------------------------------------------------

def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) < _V2_FIXED:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise BadProxyHeader("PROXY v2 header has an unknown version")
    command = ver_cmd & 0xF
    if command > 1:
        raise BadProxyHeader("PROXY v2 header has an unknown command")
    total = _V2_FIXED + length
    if len(data) < total:
        return None
    body = data[_V2_FIXED:total]
    if command == 0:
        # LOCAL: the proxy's own connection (a health check); the address block is ignored.
        return ProxyHeader(2), total
    family, transport = fam >> 4, fam & 0xF
    if family > _UNIX or transport > 2:
        raise BadProxyHeader("PROXY v2 header has an unknown address family or transport")
    size = _ADDRESS_SIZE.get(family, 0)
    if len(body) < size:
        raise BadProxyHeader("PROXY v2 address block is shorter than its family needs")
    source = destination = None
    if family == _INET:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        source = (str(ipaddress.IPv4Address(src)), sport)
        destination = (str(ipaddress.IPv4Address(dst)), dport)
    elif family == _INET6:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        source = (str(ipaddress.IPv6Address(src)), sport)
        destination = (str(ipaddress.IPv6Address(dst)), dport)
    # UNSPEC and UNIX carry no address a WSGI environ can use: keep the socket's peer.
    return ProxyHeader(2, source, destination, _client_tls(body[size:])), total


def _client_tls(tlvs: bytes) -> bool:
    tls = False
    pos = 0
    while pos < len(tlvs):
        if len(tlvs) - pos < 3:
            raise BadProxyHeader("PROXY v2 header has a truncated TLV")
        kind, length = struct.unpack_from("!BH", tlvs, pos)
        value = tlvs[pos + 3:pos + 3 + length]
        if len(value) != length:
            raise BadProxyHeader("PROXY v2 TLV runs past the header")
        if kind == PP2_TYPE_SSL:
            if length < 5:
                raise BadProxyHeader("PROXY v2 SSL TLV is too short")
            tls = bool(value[0] & PP2_CLIENT_SSL)
        pos += 3 + length
    return tls
