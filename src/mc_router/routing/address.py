"""Server-address normalisation (spec §3.3) and the `host:port` backend value type.

`normalize_server_address` is applied to every lookup, in exactly upstream's order, so the
same handshake reaches the same route as with itzg/mc-router, quirks Q7/Q8 included.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

# Hostnames are at most 253 characters (RFC 1035); a backend string longer than this is not a
# `host:port` anyone typed, so reject it before it reaches a resolver.
MAX_BACKEND_LENGTH = 260


def normalize_server_address(raw: str, *, simplify_srv: bool = False) -> str:
    """Normalise a handshake address for lookup, in the order of spec §3.3."""
    # 1. Forge marker (`\0FML2\0`): the handshake decoder already cut it; other callers may not.
    address = raw.split("\x00", 1)[0]
    # 2. Backslash suffix (BungeeGuard / infinity-filter style `host\\GUID\\IP`).
    address = address.split("\\", 1)[0]
    # 3. Exactly one trailing dot, the root-zone indicator (`a.com..` keeps one dot; Q8).
    if address.endswith("."):
        address = address[:-1]
    # 4. Lower case.
    address = address.lower()
    # 5. SRV-style prefix: keep only the labels after the first `_tcp` label.
    if simplify_srv:
        labels = address.split(".")
        if "_tcp" in labels:
            address = ".".join(labels[labels.index("_tcp") + 1 :])
    # 6. TCPShield suffix: drop the first `///` and everything after it (after step 3: Q8).
    cut = address.find("///")
    if cut >= 0:
        # The regex `///.*` upstream does not cross a newline; keep what follows one.
        newline = address.find("\n", cut)
        address = address[:cut] + (address[newline:] if newline >= 0 else "")
    return address


@dataclass(frozen=True, slots=True)
class Backend:
    """A parsed `host:port` backend address (`[v6]:port` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Backend:
        """Parse `host:port`; raise ValueError with a reason a user can act on."""
        if not text:
            raise ValueError("backend address is empty")
        if len(text) > MAX_BACKEND_LENGTH:
            raise ValueError("backend address is too long")
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"backend {text!r} is not [ipv6]:port")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host.split("%", 1)[0])
            except ValueError:
                raise ValueError(f"backend {text!r} has an invalid IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"backend {text!r} is missing a port (expected host:port)")
            if ":" in host:
                raise ValueError(f"backend {text!r}: write IPv6 addresses as [addr]:port")
        if not host or any(c.isspace() or c in "/?#@" for c in host):
            raise ValueError(f"backend {text!r} has an invalid host")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"backend {text!r} has an invalid port (expected 1-65535)")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def parse_backend(text: str) -> Backend:
    """`Backend.parse`, cached: sessions parse the same few backends on every connection."""
    return Backend.parse(text)
