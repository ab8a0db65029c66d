"""The client hello: modern Handshake (+ Login Start) or 1.6 legacy ping, sans-I/O (spec §2.3-§2.6).

`HandshakeReader` has the h11 shape: `feed()` bytes, then `next_event()` returns an event,
`NEED_DATA` or, once the hello is complete, `PAUSED` for ever after. The rules, in order:

1. First byte `FE` and then `01 FA`: a 1.6 legacy ping (§2.5) -> `LegacyPing`, then `PAUSED`.
   `FE` followed by anything else is a modern frame length whose VarInt starts with `FE`
   (254, 382, ...), parsed as modern (quirk Q5, fixed). `FE` / `FE 01` alone stay undecided
   (`awaiting_legacy`), as pre-1.6 pings do: the session's deadline ends them (Q6).
2. Otherwise the first frame must be a Handshake (packet id 0) -> `Handshake`. Another id
   raises `UnexpectedPacket` (counted as `unexpected_content`, §2.4).
3. If next_state is 2 (Login), the next frame must be Login Start (id 0) -> `LoginStart`,
   then `PAUSED`. Any other next_state -> `PAUSED` right after the Handshake.

Invariants: `received` is every byte fed, exactly, for replay to the backend (§4.10);
`trailing_data` is what follows the parsed hello; `handshake_size` is the exact wire size of
the Handshake frame (quirk Q2, fixed). Size caps are checked against declared lengths, before
the bytes arrive. Any defect raises `RemoteProtocolError`; once raised, it is raised again.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Final

from mc_router.errors import RemoteProtocolError
from mc_router.protocol.types import (
    NEED_DATA,
    Incomplete,
    NeedData,
    _decode_varint,
    decode_frame_header,
    decode_string,
)

__all__ = [
    "MAX_HANDSHAKE_FRAME",
    "MAX_LOGIN_START_FRAME",
    "PAUSED",
    "Handshake",
    "HandshakeEvent",
    "HandshakeReader",
    "LegacyPing",
    "LoginStart",
    "NextState",
    "Paused",
    "Player",
    "UnexpectedPacket",
    "decode_login_start",
]

# Cap on the Handshake frame. Vanilla servers accept a 255-character address, but the address
# also carries Forge markers, TCPShield `///` data, BungeeCord IP forwarding (host, IP, UUID and
# the signed skin properties as JSON) and Floodgate data: a few KB at most. 32 KiB is ~10x the
# largest seen, yet stops a client from making us buffer up to MAX_FRAME_LENGTH (2 MiB) before
# routing. It also bounds the 1.6 legacy ping (whose own u16 lengths would allow ~64 KiB).
MAX_HANDSHAKE_FRAME: Final = 32 * 1024

# Cap on the Login Start frame. Vanilla's largest (1.19/1.19.2) is a 16-char name (<= 64 bytes),
# an 8-byte expiry, a public key (vanilla cap 512 bytes), a signature (vanilla cap 4096 bytes)
# and a 16-byte UUID: under 4.8 KB. 16 KiB leaves room for modded clients.
MAX_LOGIN_START_FRAME: Final = 16 * 1024

_LEGACY_PREFIX: Final = b"\xfe\x01\xfa"  # packet FE, payload 01, plugin message FA (§2.5)
_LEGACY_CHANNEL: Final = "MC|PingHost".encode("utf-16-be")
_LEGACY_CHANNEL_UNITS: Final = 11
# Offsets inside a legacy ping: FE 01 FA | u16 11 | 22 bytes channel | u16 rest | ...
_LEGACY_CHANNEL_AT: Final = 5
_LEGACY_REST_AT: Final = _LEGACY_CHANNEL_AT + len(_LEGACY_CHANNEL)  # 27
_LEGACY_BODY_AT: Final = _LEGACY_REST_AT + 2  # 29: protocol byte, u16 n, 2n bytes, u32 port
_LEGACY_HOST_AT: Final = _LEGACY_BODY_AT + 3  # 32

_LOGIN_NEXT_STATE: Final = 2
# Protocol versions that change the Login Start layout (§2.6).
_PV_1_19: Final = 759
_PV_1_19_1: Final = 760
_PV_1_20_2: Final = 764

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")


class Paused(enum.Enum):
    """Type of the `PAUSED` sentinel: the client hello is complete, nothing more to parse."""

    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


PAUSED: Final = Paused.PAUSED


class UnexpectedPacket(RemoteProtocolError):
    """The first packet is neither a Handshake nor a legacy ping (error type unexpected_content)."""


class NextState(enum.IntEnum):
    """Handshake next_state values (§2.4). Unknown values are kept as plain ints."""

    STATUS = 1
    LOGIN = 2
    TRANSFER = 3


@dataclass(frozen=True, slots=True)
class Handshake:
    """The modern Handshake packet; the address is already cut at its first NUL (§2.4)."""

    protocol_version: int
    server_address: str
    server_port: int
    next_state: int


@dataclass(frozen=True, slots=True)
class LegacyPing:
    """A 1.6 legacy server list ping (§2.5). The address is not trimmed."""

    protocol_version: int
    server_address: str
    server_port: int


@dataclass(frozen=True, slots=True)
class Player:
    """The player from Login Start; `uuid` is the nil UUID when the client sent none."""

    name: str
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class LoginStart:
    """Login Start; `player` is None when the packet ended early at a field boundary (Q38)."""

    player: Player | None


HandshakeEvent = Handshake | LegacyPing | LoginStart | NeedData | Paused

_NIL_UUID: Final = uuid.UUID(int=0)


class _State(enum.Enum):
    HELLO = enum.auto()  # nothing decided yet
    HANDSHAKE = enum.auto()  # modern: waiting for the Handshake frame
    LEGACY = enum.auto()  # FE 01 FA seen: waiting for the rest of the legacy ping
    LOGIN = enum.auto()  # Handshake with next_state 2 done: waiting for Login Start
    DONE = enum.auto()  # hello complete: PAUSED for ever


class HandshakeReader:
    """Incremental parser of the client hello; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf consumed by events already returned
        self._state = _State.HELLO
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._handshake_size = 0
        self._protocol_version = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client. Empty data is a no-op (see `feed_eof`)."""
        if self._eof and data:
            raise RuntimeError("feed() after feed_eof()")
        self._buf += data

    def feed_eof(self) -> None:
        """Record that the client closed its side. Pending parses then end, not wait:
        a Login Start that never started becomes `LoginStart(None)` (§2.6); anything else
        incomplete raises `RemoteProtocolError` from `next_event()`."""
        self._eof = True

    @property
    def received(self) -> bytes:
        """Every byte fed so far, exactly, including read-ahead after the hello (§4.10)."""
        return bytes(self._buf)

    @property
    def trailing_data(self) -> bytes:
        """Bytes fed after what has been parsed (after the hello once `PAUSED`)."""
        return bytes(self._buf[self._pos :])

    @property
    def handshake_size(self) -> int:
        """Wire size of the Handshake frame, length prefix included; 0 for legacy pings."""
        return self._handshake_size

    @property
    def awaiting_legacy(self) -> bool:
        """True while the first byte is FE and the legacy ping is not yet complete or ruled out."""
        if self._state is _State.LEGACY:
            return True
        if self._state is not _State.HELLO:
            return False
        head = bytes(self._buf[:3])
        return bool(head) and _LEGACY_PREFIX.startswith(head)

    def next_event(self) -> HandshakeEvent:
        """Return the next event, `NEED_DATA` or `PAUSED`; raise `RemoteProtocolError`."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_event(self) -> HandshakeEvent:
        if self._state is _State.HELLO:
            head = bytes(self._buf[:3])
            if not head or (len(head) < 3 and _LEGACY_PREFIX.startswith(head)):
                return self._need("connection closed before the handshake")
            self._state = _State.LEGACY if head == _LEGACY_PREFIX else _State.HANDSHAKE
        if self._state is _State.HANDSHAKE:
            return self._next_handshake()
        if self._state is _State.LEGACY:
            return self._next_legacy()
        if self._state is _State.LOGIN:
            return self._next_login_start()
        return PAUSED

    def _need(self, what: str) -> NeedData:
        if self._eof:
            raise RemoteProtocolError(what)
        return NEED_DATA

    def _frame_bounds(self, max_length: int) -> tuple[int, int, int] | None:
        """Locate the frame at _pos: (packet id, body start, frame end), or None if incomplete.

        The packet id is returned as soon as it has arrived, so a wrong id is rejected without
        waiting for the rest of the frame. Raises `Incomplete` if the frame (complete on the
        wire) ends inside its packet id.
        """
        buf = self._buf
        try:
            length, start = decode_frame_header(buf, self._pos, max_length)
        except Incomplete:
            return None
        end = start + length
        try:
            packet_id, body = _decode_varint(buf, start, min(end, len(buf)))
        except Incomplete:
            if len(buf) >= end:
                raise
            return None
        return packet_id, body, end

    def _next_handshake(self) -> HandshakeEvent:
        try:
            bounds = self._frame_bounds(MAX_HANDSHAKE_FRAME)
        except Incomplete:
            raise RemoteProtocolError("handshake frame ends inside its packet id") from None
        if bounds is None:
            return self._need("connection closed inside the handshake")
        packet_id, body, end = bounds
        if packet_id != 0:
            # §2.4: "Unexpected packetID, expected handshake".
            raise UnexpectedPacket(f"unexpected packet id {packet_id:#x}, expected handshake")
        if len(self._buf) < end:
            return self._need("connection closed inside the handshake")
        event = _decode_handshake(bytes(self._buf[body:end]))
        self._pos = self._handshake_size = end
        self._protocol_version = event.protocol_version
        self._state = _State.LOGIN if event.next_state == _LOGIN_NEXT_STATE else _State.DONE
        return event

    def _next_login_start(self) -> HandshakeEvent:
        if self._eof and self._pos == len(self._buf):
            # §2.6: a clean close before any Login Start byte continues without a player.
            self._state = _State.DONE
            return LoginStart(None)
        try:
            bounds = self._frame_bounds(MAX_LOGIN_START_FRAME)
        except Incomplete:
            # The complete frame ran out inside its packet id VarInt: plain EOF (§2.6, Q38).
            length, start = decode_frame_header(self._buf, self._pos, MAX_LOGIN_START_FRAME)
            self._pos, self._state = start + length, _State.DONE
            return LoginStart(None)
        if bounds is None:
            return self._need("connection closed inside the Login Start frame")
        packet_id, body, end = bounds
        if packet_id != 0:
            raise RemoteProtocolError(f"expected login packet, got {packet_id}")
        if len(self._buf) < end:
            return self._need("connection closed inside the Login Start frame")
        player = decode_login_start(bytes(self._buf[body:end]), self._protocol_version)
        self._pos, self._state = end, _State.DONE
        return LoginStart(player)

    def _next_legacy(self) -> HandshakeEvent:
        buf = self._buf
        need = "connection closed inside the legacy ping"
        if len(buf) < _LEGACY_CHANNEL_AT:
            return self._need(need)
        (units,) = _U16.unpack_from(buf, 3)
        if units != _LEGACY_CHANNEL_UNITS:
            raise RemoteProtocolError(f"legacy ping channel length {units}, expected 11")
        channel = bytes(buf[_LEGACY_CHANNEL_AT:_LEGACY_REST_AT])
        if not _LEGACY_CHANNEL.startswith(channel):
            raise RemoteProtocolError("legacy ping channel is not MC|PingHost")
        if len(buf) < _LEGACY_BODY_AT:
            return self._need(need)
        (rest,) = _U16.unpack_from(buf, _LEGACY_REST_AT)
        # §2.5: the fields after `rest` are read through a reader limited to `rest` bytes, so
        # a `rest` too small for them is an error as soon as it is known.
        if rest < 3:  # protocol byte + u16 hostname length
            raise RemoteProtocolError(f"legacy ping data length {rest} is too small")
        if len(buf) < _LEGACY_HOST_AT:
            return self._need(need)
        protocol_version = buf[_LEGACY_BODY_AT]
        (host_units,) = _U16.unpack_from(buf, _LEGACY_BODY_AT + 1)
        host_end = _LEGACY_HOST_AT + 2 * host_units
        end = host_end + 4
        if 7 + 2 * host_units > rest:
            raise RemoteProtocolError(f"legacy ping data length {rest} is too small")
        if end > MAX_HANDSHAKE_FRAME:
            raise RemoteProtocolError(f"legacy ping of {end} bytes exceeds {MAX_HANDSHAKE_FRAME}")
        if len(buf) < end:
            return self._need(need)
        server_address = _decode_utf16(bytes(buf[_LEGACY_HOST_AT:host_end]))
        (port,) = _U32.unpack_from(buf, host_end)
        self._pos = end
        self._state = _State.DONE
        # §2.5: the u32 port is truncated to 16 bits.
        return LegacyPing(protocol_version, server_address, port & 0xFFFF)


def _decode_utf16(raw: bytes) -> str:
    """UTF-16BE as Go decodes it: no BOM handling, unpaired surrogates become U+FFFD (§2.5)."""
    text = raw.decode("utf-16-be", "surrogatepass")
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


class _Cursor:
    """Reads fields from one complete packet body; running out raises `Incomplete`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self) -> int:
        value, self.pos = _decode_varint(self.data, self.pos, len(self.data))
        return value

    def string(self) -> str:
        text, self.pos = decode_string(self.data, self.pos)
        return text

    def fixed(self, size: int, what: str) -> bytes:
        """Read exactly `size` bytes. None left is plain EOF (`Incomplete`); some but not
        enough is an "unexpected EOF" error (§2.6: io.ReadFull semantics)."""
        left = len(self.data) - self.pos
        if left < size:
            if left == 0:
                raise Incomplete
            raise RemoteProtocolError(f"unexpected end of packet inside the {what}")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def u16(self) -> int:
        if len(self.data) - self.pos < 2:
            raise Incomplete
        (value,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(value)

    def boolean(self) -> bool:
        if self.pos >= len(self.data):
            raise Incomplete
        byte = self.data[self.pos]
        self.pos += 1
        if byte > 1:
            raise RemoteProtocolError(f"expected 0x00 or 0x01 for boolean, got {byte:#04x}")
        return byte == 1


def _decode_handshake(body: bytes) -> Handshake:
    """Decode the Handshake fields after the packet id (§2.4); trailing bytes are ignored."""
    cursor = _Cursor(body)
    try:
        protocol_version = cursor.varint()
        address = cursor.string()
        port = cursor.u16()
        next_state = cursor.varint()
    except Incomplete:
        raise RemoteProtocolError("handshake packet is truncated") from None
    # §2.4: cut at the first NUL, dropping Forge's \0FML\0 / \0FML2\0 / \0FML3\0 markers.
    address = address.partition("\0")[0]
    state = NextState(next_state) if next_state in NextState._value2member_map_ else next_state
    return Handshake(protocol_version, address, port, state)


def decode_login_start(payload: bytes, protocol_version: int) -> Player | None:
    """Decode a Login Start body (after the packet id) for the handshake's protocol (§2.6).

    Returns None when the payload ends at a field boundary or inside a VarInt, the name or a
    bool (upstream's plain EOF: continue without a player, Q38). Raises `RemoteProtocolError`
    when it ends partway through the UUID, expiry, key or signature, on a bad bool byte, or on
    invalid UTF-8. Trailing bytes are ignored.
    """
    cursor = _Cursor(payload)
    try:
        name = cursor.string()
        player_uuid = _NIL_UUID
        if protocol_version >= _PV_1_20_2:
            player_uuid = uuid.UUID(bytes=cursor.fixed(16, "player UUID"))
        elif protocol_version >= _PV_1_19:
            if protocol_version <= _PV_1_19_1 and cursor.boolean():
                cursor.fixed(8, "key expiry")
                cursor.fixed(cursor.varint(), "public key")
                cursor.fixed(cursor.varint(), "key signature")
            if protocol_version >= _PV_1_19_1 and cursor.boolean():
                player_uuid = uuid.UUID(bytes=cursor.fixed(16, "player UUID"))
    except Incomplete:
        return None
    return Player(name, player_uuid)
