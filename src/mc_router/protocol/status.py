"""Builders for the packets mc-router writes, and parsers for the status it reads (spec §2.7-§2.8).

Covers the predefined status (JSON, response, pong), the Login Disconnect, the legacy 0xFF
kick, and the client side of a status exchange (Handshake, legacy ping, Status Request, Ping,
Status Response) for probing backends. Invariants: defaults are byte-exact with upstream
(Appendix A); values the wire cannot carry raise `LocalProtocolError`; bad peer data raises
`RemoteProtocolError`.
"""

from __future__ import annotations

import json
import struct
from typing import Final

from mc_router.errors import LocalProtocolError, RemoteProtocolError
from mc_router.protocol.gojson import go_json, replace_surrogates
from mc_router.protocol.types import (
    Incomplete,
    decode_string,
    encode_frame,
    encode_string,
    encode_u16,
    encode_varint,
)

__all__ = [
    "decode_status_response",
    "encode_handshake",
    "encode_legacy_ping",
    "legacy_kick",
    "login_disconnect",
    "ping",
    "pong",
    "status_json",
    "status_request",
    "status_response",
]

_STATUS_REQUEST_ID: Final = 0x00
_STATUS_RESPONSE_ID: Final = 0x00
_PING_ID: Final = 0x01
_LOGIN_DISCONNECT_ID: Final = 0x00
_HANDSHAKE_ID: Final = 0x00
_PING_PAYLOAD_SIZE: Final = 8  # a Java long (§2.7)


_LEGACY_KICK_ID: Final = b"\xff"
_LEGACY_PING_PREFIX: Final = b"\xfe\x01\xfa"
_LEGACY_CHANNEL: Final = "MC|PingHost"
_U32: Final = struct.Struct(">I")


def status_json(
    motd: str,
    protocol: int,
    *,
    version_name: str = "1.7+",
    max_players: int = 1,
    online: int = 0,
    favicon: str | None = None,
    description: object | None = None,
) -> str:
    """The Status Response JSON (§2.7, §5.3), by default byte-exact with upstream.

    `description` (e.g. a remembered real description) replaces `{"text": motd}`; `favicon`
    is added after it when given. Member order: version, players, description, favicon.
    """
    doc: dict[str, object] = {
        "version": {"name": version_name, "protocol": protocol},
        "players": {"max": max_players, "online": online},
        "description": {"text": motd} if description is None else description,
    }
    if favicon is not None:
        doc["favicon"] = favicon
    return go_json(doc)


def status_response(json_text: str) -> bytes:
    """Status Response frame: packet id 0x00 and the JSON as a String (§2.7)."""
    return encode_frame(_STATUS_RESPONSE_ID, encode_string(json_text))


def _ping_frame(payload: bytes) -> bytes:
    if len(payload) != _PING_PAYLOAD_SIZE:
        raise LocalProtocolError(f"ping payload must be 8 bytes, got {len(payload)}")
    return encode_frame(_PING_ID, bytes(payload))


def pong(payload: bytes) -> bytes:
    """Pong frame echoing the client's 8-byte ping payload (§2.7): `09 01` + payload."""
    return _ping_frame(payload)


def ping(payload: bytes) -> bytes:
    """Ping frame (client side) with an 8-byte payload: `09 01` + payload."""
    return _ping_frame(payload)


def status_request() -> bytes:
    """Status Request frame (client side): `01 00`."""
    return encode_frame(_STATUS_REQUEST_ID, b"")


def login_disconnect(reason: str) -> bytes:
    """Login-state Disconnect frame: id 0x00 and a String holding `{"text": reason}`."""
    return encode_frame(
        _LOGIN_DISCONNECT_ID, encode_string(json.dumps({"text": reason}, ensure_ascii=False))
    )


def _utf16_units(text: str) -> tuple[int, bytes]:
    """(UTF-16 code unit count, UTF-16BE bytes), lone surrogates replaced by U+FFFD."""
    raw = replace_surrogates(text).encode("utf-16-be")
    units = len(raw) // 2
    if units > 0xFFFF:
        raise LocalProtocolError(f"string of {units} UTF-16 code units is too long")
    return units, raw


def legacy_kick(
    motd: str,
    *,
    protocol: int = 127,
    version_name: str = "1.7+",
    online: int = 0,
    max_players: int = 1,
) -> bytes:
    """Legacy status response (§2.8): `FF`, u16 code-unit count, UTF-16BE of
    `§1\\0<protocol>\\0<version>\\0<motd>\\0<online>\\0<max>`."""
    text = "\0".join(["\u00a71", str(protocol), version_name, motd, str(online), str(max_players)])
    units, raw = _utf16_units(text)
    return _LEGACY_KICK_ID + encode_u16(units) + raw


def encode_handshake(
    protocol_version: int, server_address: str, server_port: int, next_state: int
) -> bytes:
    """A complete Handshake frame (§2.4)."""
    payload = (
        encode_varint(protocol_version)
        + encode_string(server_address)
        + encode_u16(server_port)
        + encode_varint(next_state)
    )
    return encode_frame(_HANDSHAKE_ID, payload)


def encode_legacy_ping(server_address: str, server_port: int, protocol_version: int = 74) -> bytes:
    """A 1.6 legacy server list ping (§2.5); 74 is the 1.6.4 client's protocol."""
    if not 0 <= protocol_version <= 0xFF:
        raise LocalProtocolError(f"legacy protocol version must fit in a byte: {protocol_version}")
    if not 0 <= server_port <= 0xFFFF:
        raise LocalProtocolError(f"port out of range: {server_port}")
    channel_units, channel = _utf16_units(_LEGACY_CHANNEL)
    host_units, host = _utf16_units(server_address)
    rest = 7 + len(host)  # protocol byte + u16 length + hostname + u32 port
    return b"".join(
        [
            _LEGACY_PING_PREFIX,
            encode_u16(channel_units),
            channel,
            encode_u16(rest),
            bytes([protocol_version]),
            encode_u16(host_units),
            host,
            _U32.pack(server_port),
        ]
    )


def decode_status_response(payload: bytes) -> dict[str, object]:
    """Parse a Status Response body (after the packet id): a String holding a JSON object."""
    try:
        text, _ = decode_string(payload, 0, len(payload))
    except Incomplete:
        raise RemoteProtocolError("status response is truncated") from None
    return decode_status_json(text)


def decode_status_json(text: str) -> dict[str, object]:
    """Parse Status Response JSON text; RemoteProtocolError unless it is a JSON object."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError("status response is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise RemoteProtocolError("status response JSON is not an object")
    return doc
