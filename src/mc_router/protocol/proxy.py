"""PROXY protocol v1/v2: detect and parse a received header (spec §4.2), build a v2 one (§4.9).

`parse_proxy_header` is pure: hand it the bytes buffered so far; it answers None ("no header,
pass the stream through untouched"), `NEED_DATA`, or a `ProxyHeader` whose `size` says how many
bytes to strip (header bytes are never forwarded, §4.10). A buffer that starts with a valid
signature but is malformed raises `RemoteProtocolError`. Both forms are bounded by named caps
checked before the bytes arrive, so re-parsing a growing buffer stays cheap.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from mc_router.errors import LocalProtocolError, RemoteProtocolError
from mc_router.protocol.types import NEED_DATA, NeedData

__all__ = [
    "MAX_PROXY_V1_LENGTH",
    "MAX_PROXY_V2_LENGTH",
    "PROXY_V2_SIGNATURE",
    "ProxyHeader",
    "build_proxy_v2",
    "parse_proxy_header",
]

# The PROXY protocol spec's own bound for a v1 line, CRLF included (TCP6 with maximal fields).
MAX_PROXY_V1_LENGTH: Final = 107

# Cap on the v2 address+TLV block (the u16 would allow 64 KiB). Addresses take at most 216 bytes
# (AF_UNIX); the TLVs load balancers add (AWS VPC endpoint id, Azure link id, haproxy SSL and
# unique-id) are tens to a few hundred bytes. 4 KiB is ample and bounds pre-handshake buffering.
MAX_PROXY_V2_LENGTH: Final = 4096

PROXY_V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX: Final = b"PROXY "
_V2_HEADER_SIZE: Final = 16  # signature, ver/cmd, family, u16 length

_V2_VERSION: Final = 0x2
_CMD_LOCAL: Final = 0x0
_CMD_PROXY: Final = 0x1
_FAMILY_TCP4: Final = 0x11
_FAMILY_TCP6: Final = 0x21
_TCP4_BLOCK: Final = struct.Struct(">4s4sHH")  # src ip, dst ip, src port, dst port
_TCP6_BLOCK: Final = struct.Struct(">16s16sHH")
_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY header. Addresses are None for LOCAL and for address-less families
    (v1 UNKNOWN; v2 UNSPEC, UDP, UNIX): the socket's own addresses then apply (§4.2)."""

    command: str  # "PROXY" or "LOCAL"
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    size: int  # header bytes on the wire, to strip before the Minecraft stream


def parse_proxy_header(data: bytes) -> ProxyHeader | NeedData | None:
    """Detect and parse a PROXY v1/v2 header at the start of `data` (§4.2)."""
    if not data:
        return NEED_DATA
    if data[0] == _V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == PROXY_V2_SIGNATURE[0]:
        return _parse_v2(data)
    return None


def _matches_prefix(data: bytes, signature: bytes) -> bool | None:
    """True if data starts with signature, None if it is a shorter prefix of it, else False."""
    head = data[: len(signature)]
    if not signature.startswith(head):
        return False
    return True if len(head) == len(signature) else None


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 0xFFFF:
        raise RemoteProtocolError(f"PROXY v1 header has an invalid port: {text!r}")
    return int(text)


def _parse_v1(data: bytes) -> ProxyHeader | NeedData | None:
    matched = _matches_prefix(data, _V1_PREFIX)
    if matched is None:
        return NEED_DATA
    if not matched:
        return None
    newline = data.find(b"\n", 0, MAX_PROXY_V1_LENGTH)
    if newline < 0:
        if len(data) >= MAX_PROXY_V1_LENGTH:
            raise RemoteProtocolError("PROXY v1 header is too long")
        return NEED_DATA
    if data[newline - 1] != ord("\r"):
        raise RemoteProtocolError("PROXY v1 header does not end with CRLF")
    try:
        line = data[: newline - 1].decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("PROXY v1 header is not ASCII") from None
    size = newline + 1
    parts = line.split(" ")
    if parts[1] == "UNKNOWN":
        # The spec says receivers must ignore whatever follows UNKNOWN.
        return ProxyHeader("PROXY", None, None, size)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise RemoteProtocolError(f"malformed PROXY v1 header: {line!r}")
    version = 4 if parts[1] == "TCP4" else 6
    try:
        src_ip = ipaddress.ip_address(parts[2])
        dst_ip = ipaddress.ip_address(parts[3])
    except ValueError:
        raise RemoteProtocolError(f"PROXY v1 header has an invalid address: {line!r}") from None
    if src_ip.version != version or dst_ip.version != version:
        raise RemoteProtocolError(f"PROXY v1 address family mismatch: {line!r}")
    source = (str(src_ip), _parse_port(parts[4]))
    destination = (str(dst_ip), _parse_port(parts[5]))
    return ProxyHeader("PROXY", source, destination, size)


def _parse_v2(data: bytes) -> ProxyHeader | NeedData | None:
    matched = _matches_prefix(data, PROXY_V2_SIGNATURE)
    if matched is None:
        return NEED_DATA
    if not matched:
        return None
    if len(data) < _V2_HEADER_SIZE:
        return NEED_DATA
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != _V2_VERSION:
        raise RemoteProtocolError(f"unsupported PROXY v2 version {version}")
    if command not in (_CMD_LOCAL, _CMD_PROXY):
        raise RemoteProtocolError(f"unsupported PROXY v2 command {command}")
    family = data[13]
    if family >> 4 > 3 or family & 0x0F > 2:  # AF_UNSPEC/INET/INET6/UNIX x UNSPEC/STREAM/DGRAM
        raise RemoteProtocolError(f"invalid PROXY v2 address family {family:#04x}")
    (length,) = _U16.unpack_from(data, 14)
    if length > MAX_PROXY_V2_LENGTH:
        raise RemoteProtocolError(f"PROXY v2 block of {length} bytes exceeds the limit")
    size = _V2_HEADER_SIZE + length
    if len(data) < size:
        return NEED_DATA
    if command == _CMD_LOCAL:
        return ProxyHeader("LOCAL", None, None, size)
    if family == _FAMILY_TCP4:
        block = _TCP4_BLOCK
    elif family == _FAMILY_TCP6:
        block = _TCP6_BLOCK
    else:
        return ProxyHeader("PROXY", None, None, size)
    if length < block.size:
        raise RemoteProtocolError(f"PROXY v2 address block of {length} bytes is too short")
    src, dst, sport, dport = block.unpack_from(data, _V2_HEADER_SIZE)  # TLVs after it: skipped
    source = (str(ipaddress.ip_address(src)), sport)
    destination = (str(ipaddress.ip_address(dst)), dport)
    return ProxyHeader("PROXY", source, destination, size)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Zones (`fe80::1%eth0`) cannot be carried and are dropped; `[v6]` brackets are tolerated.
    host = host.strip("[]").partition("%")[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise LocalProtocolError(f"not an IP address: {host!r}") from None


def _as_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    return ip.ipv4_mapped


def _as_ipv6(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address):
        return ip
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {port}")
    return port


def build_proxy_v2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A PROXY v2 header (§4.9): `source` is the client, `destination` the local address.

    IPv4 form (0x11) when the destination is IPv4 or IPv4-mapped, else IPv6 form (0x21) with
    IPv4 addresses mapped. Raises `LocalProtocolError` if the source cannot be written in the
    chosen family (an IPv6 client reaching an IPv4 local address) or an address is invalid.
    """
    src_ip, dst_ip = _parse_ip(source[0]), _parse_ip(destination[0])
    ports = _check_port(source[1]), _check_port(destination[1])
    dst4 = _as_ipv4(dst_ip)
    if dst4 is not None:
        src4 = _as_ipv4(src_ip)
        if src4 is None:
            raise LocalProtocolError(f"cannot write IPv6 source {src_ip} in an IPv4 PROXY header")
        family, block = _FAMILY_TCP4, _TCP4_BLOCK.pack(src4.packed, dst4.packed, *ports)
    else:
        src6, dst6 = _as_ipv6(src_ip), _as_ipv6(dst_ip)
        family, block = _FAMILY_TCP6, _TCP6_BLOCK.pack(src6.packed, dst6.packed, *ports)
    ver_cmd = _V2_VERSION << 4 | _CMD_PROXY
    return PROXY_V2_SIGNATURE + bytes([ver_cmd, family]) + _U16.pack(len(block)) + block
