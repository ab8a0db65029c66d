"""Primitive Minecraft wire types: VarInt, String and length-prefixed frames (spec §2.1-§2.3).

Invariants: decoders never read past the data they are given; running out of bytes raises
`Incomplete` (the caller decides whether that means "wait" or "truncated"), and every other
defect raises `RemoteProtocolError`. Encoders raise `LocalProtocolError` for values the wire
cannot carry. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from mc_router.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_FRAME_LENGTH",
    "MAX_VARINT_BYTES",
    "NEED_DATA",
    "Incomplete",
    "NeedData",
    "decode_frame_header",
    "decode_string",
    "decode_varint",
    "encode_frame",
    "encode_string",
    "encode_u16",
    "encode_varint",
]

# Upstream's frame cap (§2.3): the largest length a 3-byte VarInt can hold, 2^21 - 1.
MAX_FRAME_LENGTH: Final = 2_097_151

# Upstream reads up to 6 VarInt bytes, one more than a 32-bit VarInt needs (§2.1, quirk Q1 keep).
MAX_VARINT_BYTES: Final = 6

# encode_varint takes a 32-bit value, signed or unsigned (§2.2).
_VARINT_MIN: Final = -(2**31)
_VARINT_LIMIT: Final = 2**32

_U16: Final = struct.Struct(">H")

Buffer = bytes | bytearray | memoryview


class NeedData(enum.Enum):
    """Type of the `NEED_DATA` sentinel: feed more bytes, then ask again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


NEED_DATA: Final = NeedData.NEED_DATA


class Incomplete(Exception):
    """The data ended before the value did. Not a ProtocolError: more bytes may complete it."""


def encode_varint(value: int) -> bytes:
    """Encode a 32-bit integer as a VarInt of 1-5 bytes; negatives take 5 bytes (§2.2)."""
    if not _VARINT_MIN <= value < _VARINT_LIMIT:
        raise LocalProtocolError(f"VarInt out of 32-bit range: {value}")
    value &= 0xFFFF_FFFF
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varint(data: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode a VarInt from data[pos:end]; see `decode_varint`."""
    value = 0
    for n in range(MAX_VARINT_BYTES):
        if pos + n >= end:
            raise Incomplete
        byte = data[pos + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            return value, pos + n + 1
    raise RemoteProtocolError("VarInt is too big")


def decode_varint(data: Buffer, pos: int = 0) -> tuple[int, int]:
    """Decode a VarInt at `pos`; return (value, position after it).

    Upstream semantics (§2.1, Q1): up to 6 bytes, unsigned, no 32-bit sign extension, so
    `ff ff ff ff 0f` is 4294967295. Raises `Incomplete` if the data ends first and
    `RemoteProtocolError("VarInt is too big")` if a 6th byte still has its continuation bit.
    """
    return _decode_varint(data, pos, len(data))


def encode_u16(value: int) -> bytes:
    """Encode an unsigned 16-bit big-endian integer (ports, UTF-16 lengths)."""
    if not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"value does not fit in an unsigned short: {value}")
    return _U16.pack(value)


def encode_string(s: str) -> bytes:
    """Encode a protocol String: VarInt UTF-8 byte length, then the bytes (§2.2)."""
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError("string cannot be encoded as UTF-8") from exc
    return encode_varint(len(raw)) + raw


def decode_string(data: Buffer, pos: int = 0, max_bytes: int | None = None) -> tuple[str, int]:
    """Decode a protocol String at `pos`; return (text, position after it) (§2.1).

    Raises `Incomplete` if the data ends first, `RemoteProtocolError` if the declared byte
    length exceeds `max_bytes` (checked before waiting for the bytes) or the bytes are not
    valid UTF-8.
    """
    length, start = _decode_varint(data, pos, len(data))
    if max_bytes is not None and length > max_bytes:
        raise RemoteProtocolError(f"string length {length} exceeds the maximum of {max_bytes}")
    end = start + length
    if end > len(data):
        raise Incomplete
    try:
        text = bytes(data[start:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("string is not valid UTF-8") from exc
    return text, end


def encode_frame(packet_id: int, payload: bytes) -> bytes:
    """Frame a packet: VarInt(len(VarInt(id) + payload)) + VarInt(id) + payload (§2.2)."""
    body = encode_varint(packet_id) + payload
    if len(body) > MAX_FRAME_LENGTH:
        raise LocalProtocolError(f"frame length {len(body)} too large")
    return encode_varint(len(body)) + body


def decode_frame_header(data: Buffer, pos: int, max_length: int) -> tuple[int, int]:
    """Read a frame's length prefix at `pos`; return (frame length, payload start).

    Rejects a length above `max_length` (or above `MAX_FRAME_LENGTH`, §2.3) as soon as the
    prefix is complete, without waiting for the payload. Raises `Incomplete` if the prefix
    itself is not complete yet.
    """
    length, start = _decode_varint(data, pos, len(data))
    if length > MAX_FRAME_LENGTH:
        raise RemoteProtocolError(f"frame length {length} too large")
    if length > max_length:
        raise RemoteProtocolError(f"frame length {length} exceeds the limit of {max_length}")
    return length, start
