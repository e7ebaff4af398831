"""Which peers a trust setting (``proxy_allow_ips``) names: addresses, networks or ``*``."""

from __future__ import annotations

import ipaddress
from typing import Iterable


class AllowList:
    """Built once per worker from a validated setting; asked once per connection."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.everyone = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def allows(self, peer: tuple | str | bytes) -> bool:
        """True for a peer address in the list; unix socket peers (only local processes can
        connect, typically the front proxy) are allowed, as for forwarded headers."""
        if not isinstance(peer, tuple):
            return True
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(peer[0].partition("%")[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped   # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
        return any(address in network for network in self.networks)
