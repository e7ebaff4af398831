"""Trusted proxies: which peers they are, and what their forwarding headers change in the environ.

A peer is trusted when its address is in ``forwarded_allow_ips`` (addresses, networks, ``*``);
unix socket peers always are (only local processes can connect). From trusted peers only:

* Gunicorn's ``secure_scheme_headers`` mark a request https (applied in :mod:`pasteserve.wsgi`);
* waitress's ``trusted_proxy_headers`` (here, :class:`ProxyHeaders`) set ``REMOTE_ADDR`` /
  ``REMOTE_PORT``, ``HTTP_HOST`` / ``SERVER_NAME`` / ``SERVER_PORT`` and ``wsgi.url_scheme``
  with waitress's meaning: of a header listing several hops, the last ``trusted_proxy_count``
  are believed and the oldest of those wins. With ``clear_untrusted_proxy_headers`` the
  forwarding headers not believed are removed from the environ, so the app cannot be fooled
  by reading them itself.

Pure functions over the environ: no sockets here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from pasteserve.allowlist import AllowList
from pasteserve.http.errors import BadRequest
from pasteserve.logs import ERROR_LOGGER

__all__ = ["KNOWN_HEADERS", "ProxyHeaders", "check_trusted_headers", "trusted_peer"]

# waitress's names for trusted_proxy_headers -> the environ key of each.
KNOWN_HEADERS = {
    "x-forwarded-for": "HTTP_X_FORWARDED_FOR",
    "x-forwarded-host": "HTTP_X_FORWARDED_HOST",
    "x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    "x-forwarded-port": "HTTP_X_FORWARDED_PORT",
    "x-forwarded-by": "HTTP_X_FORWARDED_BY",
    "forwarded": "HTTP_FORWARDED",
}
_ALL_KEYS = frozenset(KNOWN_HEADERS.values())

log = logging.getLogger(ERROR_LOGGER)

# What a host name, an IP address or an obfuscated node ("_hidden", RFC 7239 6.3) may hold:
# an app builds URLs from these, so nothing that would change their meaning gets through.
_HOST_CHARS = re.compile(r"[A-Za-z0-9._~!$&'()*+;=%:-]+")
_QUOTED = re.compile(r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"')
_QUOTED_PAIR = re.compile(r"\\([\t -~\x80-\xff])")


# --- who is trusted ---------------------------------------------------------------------------

@lru_cache(maxsize=16)
def _allow_list(allow: frozenset[str]) -> AllowList:
    return AllowList(allow)


def trusted_peer(address: str, allow: Iterable[str]) -> bool:
    """Is ``address`` (a peer IP) one of ``allow``: addresses, networks (``10.0.0.0/8``) or ``*``?"""
    return _allow_list(frozenset(allow)).contains(address)


def check_trusted_headers(names: Iterable[str]) -> list[str]:
    """Validate ``trusted_proxy_headers``; ValueError says what is allowed."""
    wanted = sorted({name.strip().lower() for name in names if name.strip()})
    unknown = [name for name in wanted if name not in KNOWN_HEADERS]
    if unknown:
        raise ValueError(f"unknown proxy header {', '.join(unknown)}; expected some of: " + ", ".join(KNOWN_HEADERS))
    if "forwarded" in wanted and len(wanted) > 1:
        # As waitress: the two families can disagree, and nothing says which one the proxy wrote.
        raise ValueError("forwarded and the x-forwarded-* headers exclude each other: trust one family")
    return wanted


# --- what trusted headers change --------------------------------------------------------------

def _undquote(value: str) -> str:
    """A token or a quoted-string (RFC 9110 5.6.4) without its quotes; ValueError otherwise."""
    if value.startswith('"'):
        if not _QUOTED.fullmatch(value):
            raise ValueError("invalid quoting")
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    if value.endswith('"'):
        raise ValueError("invalid quoting")
    return value


def _host_and_port(value: str, header: str) -> tuple[str, str]:
    """Split ``host[:port]``, ``[v6][:port]`` or a bare IPv6 address; the port may be ""."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and rest[:1] != ":"):
            raise _malformed(header, "bad bracketed address")
        port = rest[1:]
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""   # a name, an IPv4 address, or IPv6 without brackets (so without a port)
    if not host or not _HOST_CHARS.fullmatch(host) or (port and not port.isdigit()):
        raise _malformed(header, "not a host[:port]")
    return host, port


def _malformed(header: str, why: str) -> BadRequest:
    return BadRequest(f"malformed {header} header from a trusted proxy: {why}")


@dataclass(frozen=True)
class ProxyHeaders:
    """``trusted_proxy_headers``, ``trusted_proxy_count``, ``clear_untrusted_proxy_headers`` and
    ``log_untrusted_proxy_headers``."""

    trusted: frozenset[str] = frozenset()   # lower-case names from KNOWN_HEADERS
    count: int = 1
    clear_untrusted: bool = False
    log_untrusted: bool = False   # warn when clearing removed something: the proxy should have

    def active(self, peer_trusted: bool) -> bool:
        """Whether :meth:`apply` can change anything for requests from such a peer."""
        return self.clear_untrusted or (peer_trusted and bool(self.trusted))

    def apply(self, env: dict[str, Any], peer_trusted: bool) -> None:
        """Rewrite ``env`` from the headers believed; BadRequest for a malformed one."""
        peer = env.get("REMOTE_ADDR") or "a unix socket peer"   # before x-forwarded-for replaces it
        untrusted = _ALL_KEYS
        if peer_trusted and self.trusted:
            untrusted = self._translate(env)
        if self.clear_untrusted:
            removed = [key for key in untrusted if env.pop(key, None) is not None]
            if removed and self.log_untrusted:
                names = ", ".join(sorted(key[5:].replace("_", "-").title() for key in removed))
                log.warning("Removed untrusted forwarding headers from %s: %s (better removed by the proxy)",
                            peer, names)

    def _last_hops(self, env: dict[str, Any], key: str, header: str) -> tuple[list[str], str]:
        """The last ``count`` comma-separated hops of a header, and the header cut to them."""
        raw = env[key].split(",")[-self.count:]
        try:
            hops = [_undquote(hop.strip()) for hop in raw]
        except ValueError as exc:
            raise _malformed(header, str(exc)) from None
        if not all(hops):
            raise _malformed(header, "empty element")
        return hops, ",".join(raw).strip()

    def _single(self, env: dict[str, Any], key: str, header: str) -> str:
        try:
            value = _undquote(env.get(key, "").strip())
        except ValueError as exc:
            raise _malformed(header, str(exc)) from None
        if "," in value:
            raise _malformed(header, "several values")
        return value

    def _translate(self, env: dict[str, Any]) -> frozenset[str]:
        """Apply the trusted headers; return the environ keys of the untrusted ones."""
        trusted = self.trusted
        client = host = proto = port = ""
        if "forwarded" in trusted:
            if env.get("HTTP_FORWARDED"):
                client, host, proto = self._forwarded(env)
        else:
            if "x-forwarded-for" in trusted and env.get("HTTP_X_FORWARDED_FOR", "").strip():
                hops, env["HTTP_X_FORWARDED_FOR"] = self._last_hops(env, "HTTP_X_FORWARDED_FOR", "X-Forwarded-For")
                client = hops[0]
            if "x-forwarded-host" in trusted and env.get("HTTP_X_FORWARDED_HOST", "").strip():
                hops, env["HTTP_X_FORWARDED_HOST"] = self._last_hops(env, "HTTP_X_FORWARDED_HOST", "X-Forwarded-Host")
                host = hops[0]
            if "x-forwarded-proto" in trusted:
                proto = self._single(env, "HTTP_X_FORWARDED_PROTO", "X-Forwarded-Proto")
            if "x-forwarded-port" in trusted:
                port = self._single(env, "HTTP_X_FORWARDED_PORT", "X-Forwarded-Port")
                if port and not port.isdigit():
                    raise _malformed("X-Forwarded-Port", "not a port number")
        if proto:
            proto = proto.lower()
            if proto not in ("http", "https"):
                raise _malformed("Forwarded" if "forwarded" in trusted else "X-Forwarded-Proto",
                                 "proto must be http or https")
            env["wsgi.url_scheme"] = proto
            port = port or ("443" if proto == "https" else "80")
        if host:
            header = "Forwarded" if "forwarded" in trusted else "X-Forwarded-Host"
            name, host_port = _host_and_port(host, header)
            env["SERVER_NAME"] = name
            if host_port:
                # A port in the host wins over X-Forwarded-Port and the scheme's default.
                env["HTTP_HOST"], port = host, host_port
            else:
                default = "443" if env["wsgi.url_scheme"] == "https" else "80"
                env["HTTP_HOST"] = f"{host}:{port}" if port and port != default else host
        if port:
            env["SERVER_PORT"] = port
        if client:
            address, client_port = _host_and_port(client, "Forwarded" if "forwarded" in trusted else "X-Forwarded-For")
            env["REMOTE_ADDR"] = env["REMOTE_HOST"] = address
            if client_port:
                env["REMOTE_PORT"] = client_port
        if "forwarded" in trusted:
            return _ALL_KEYS - {"HTTP_FORWARDED"}
        return _ALL_KEYS - {KNOWN_HEADERS[name] for name in trusted}

    def _forwarded(self, env: dict[str, Any]) -> tuple[str, str, str]:
        """RFC 7239 ``Forwarded``: (for, host, proto) from the oldest believed element having each."""
        raw = env["HTTP_FORWARDED"].split(",")[-self.count:]
        client = host = proto = ""
        try:
            elements = []
            for element in raw:
                values = {}
                for pair in element.strip().split(";"):
                    if not pair:
                        continue
                    token, equals, value = pair.partition("=")
                    if not equals:
                        raise ValueError('a forwarded-pair without "="')
                    if token.strip() != token or value.strip() != value:
                        raise ValueError("whitespace around a forwarded-pair")
                    values[token.lower()] = _undquote(value)
                elements.append(values)
        except ValueError as exc:
            raise _malformed("Forwarded", str(exc)) from None
        for values in reversed(elements):
            client = values.get("for") or client
            host = values.get("host") or host
            proto = values.get("proto") or proto
        env["HTTP_FORWARDED"] = ",".join(raw).strip()
        return client, host, proto
