"""Client IP allow/deny lists (spec §4.3).

Allow wins: with a non-empty allow list the deny list is ignored. Entries are single IPs or
CIDR prefixes (host bits allowed, Q31). Unlike upstream (Q30) an IPv4-mapped IPv6 client
(`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4 clients) is unmapped before
*both* kinds of check, so IPv4 CIDR rules match IPv4 clients.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from mc_router.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress:
    """Parse an IP (zone allowed) and unmap IPv4-mapped IPv6."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(entries: Iterable[str], what: str) -> tuple[IPNetwork, ...]:
    """Parse IPs and CIDRs (a single IP becomes a /32 or /128); ConfigError names the entry."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            if "/" in entry:
                networks.append(ipaddress.ip_network(entry, strict=False))
            else:
                networks.append(ipaddress.ip_network(parse_ip(entry)))
        except ValueError as exc:
            raise ConfigError(f"invalid {what} filter: {entry!r}: {exc}") from None
    return tuple(networks)


def contains(networks: tuple[IPNetwork, ...], address: IPAddress) -> bool:
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True, slots=True)
class ClientFilter:
    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_lists(cls, allow: Iterable[str], deny: Iterable[str]) -> ClientFilter:
        return cls(parse_networks(allow, "allow"), parse_networks(deny, "deny"))

    @property
    def active(self) -> bool:
        return bool(self.allow or self.deny)

    def allows(self, host: str) -> bool:
        if not self.active:
            return True
        try:
            address = parse_ip(host)
        except ValueError:
            # Not an IP (cannot happen for TCP peers): upstream skips the filter with a warning.
            return True
        if self.allow:
            return contains(self.allow, address)
        return not contains(self.deny, address)
