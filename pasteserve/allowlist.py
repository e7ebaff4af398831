"""Which peers a trust setting (``forwarded_allow_ips``, ``proxy_allow_ips``) names: addresses,
networks or ``*``."""

from __future__ import annotations

import ipaddress
from typing import Iterable


class AllowList:
    """Built once per worker from a validated setting; asked once per connection."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.everyone = "*" in entries
        self.networks = []
        for entry in entries:
            if entry != "*":
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    pass   # settings refuse these; a programmatic caller's typo trusts nobody

    def allows(self, peer: tuple | str | bytes) -> bool:
        """True for a peer address in the list; unix socket peers (only local processes can
        connect, typically the front proxy) are allowed, as for forwarded headers."""
        return not isinstance(peer, tuple) or self.contains(peer[0])

    def contains(self, address: str) -> bool:
        """Is the IP ``address`` in the list?"""
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])   # drop an IPv6 zone ("fe80::1%eth0")
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped   # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)
