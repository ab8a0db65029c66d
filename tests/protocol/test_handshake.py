"""HandshakeReader: golden vectors, legacy pings, caps, garbage (spec §2.3-§2.6, §2.9)."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.errors import LocalProtocolError, RemoteProtocolError
from mc_router.protocol import (
    MAX_HANDSHAKE_FRAME,
    MAX_LOGIN_START_FRAME,
    NEED_DATA,
    PAUSED,
    Handshake,
    HandshakeReader,
    LegacyPing,
    LoginStart,
    NextState,
    Paused,
    Player,
    UnexpectedPacket,
    encode_frame,
    encode_handshake,
    encode_legacy_ping,
    encode_string,
    encode_varint,
)

from .golden import HYPOTHESIS, Feeder, drain, feed_bytewise, feed_whole, load_vector

NIL = uuid.UUID(int=0)
ITZG_UUID = uuid.UUID("5cddfd26-fc86-4981-b52e-c42bb10bfdef")
INVALID_UTF8 = bytes.fromhex("01d92034c358dc0b85fe6bfd3b730711b4394b432d")
LEGACY_LOCALHOST = bytes.fromhex(
    "fe01fa000b004d0043007c00500069006e00670048006f0073007400194a0009"
    "006c006f00630061006c0068006f00730074000063dd"
)

# The conformance table at the end of shared/vectors/README.md.
VECTORS = [
    ("handshake-status.hex", 770, 1, None, "0100"),
    ("handshake-login-start-1.18.2.hex", 758, 2, Player("itzg", NIL), ""),
    ("handshake-login-start-1.19.2-min-info.hex", 760, 2, Player("itzg", NIL), ""),
    ("handshake-login-start-1.19.2-all-info.hex", 760, 2, Player("itzg", ITZG_UUID), ""),
    ("handshake-login-start-1.21.5.hex", 770, 2, Player("itzg", ITZG_UUID), ""),
]


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
@pytest.mark.parametrize("case", VECTORS, ids=[case[0] for case in VECTORS])
def test_golden_vectors(feed: Feeder, case: tuple[str, int, int, Player | None, str]) -> None:
    name, protocol, next_state, player, trailing = case
    data = load_vector(name)
    reader, events = feed(data)
    handshake = Handshake(protocol, "localhost", 25565, next_state)
    if player is None:
        assert events == [handshake, PAUSED]
    else:
        assert events == [handshake, LoginStart(player), PAUSED]
    assert reader.received == data
    assert reader.trailing_data.hex() == trailing
    assert reader.handshake_size == 17  # frame length 16 + its 1-byte prefix
    assert not reader.awaiting_legacy
    assert reader.next_event() is PAUSED


def test_next_state_is_an_int_enum() -> None:
    _, events = feed_whole(load_vector("handshake-status.hex"))
    first = events[0]
    assert isinstance(first, Handshake)
    assert first.next_state is NextState.STATUS
    assert int(first.next_state) == 1


def test_paused_forever_and_received_keeps_growing() -> None:
    data = load_vector("handshake-status.hex")
    reader, _ = feed_whole(data)
    ping = bytes.fromhex("09010102030405060708")
    reader.feed(ping)
    assert reader.next_event() is PAUSED
    assert reader.received == data + ping
    assert reader.trailing_data == b"\x01\x00" + ping
    assert repr(PAUSED) == "PAUSED"
    assert PAUSED is Paused.PAUSED


def test_status_read_ahead_in_the_same_segment_is_trailing() -> None:
    hello = encode_handshake(770, "mc.example.com", 25565, 1)
    rest = bytes.fromhex("010009010102030405060708")
    reader, events = feed_whole(hello + rest)
    assert events == [Handshake(770, "mc.example.com", 25565, NextState.STATUS), PAUSED]
    assert reader.trailing_data == rest
    assert reader.handshake_size == len(hello)


def test_login_read_ahead_after_login_start_is_trailing() -> None:
    hello = encode_handshake(770, "mc.example.com", 25565, 2)
    login = encode_frame(0, encode_string("Steve") + ITZG_UUID.bytes)
    extra = b"\x02\x03\x04"
    reader, events = feed_whole(hello + login + extra)
    assert events[1] == LoginStart(Player("Steve", ITZG_UUID))
    assert reader.trailing_data == extra
    assert reader.received == hello + login + extra


@pytest.mark.parametrize("state", [1, 3, 0, 7, 300])
def test_next_states_other_than_login_pause_right_away(state: int) -> None:
    hello = encode_handshake(765, "a", 1, state)
    reader, events = feed_whole(hello + b"\x06\x00junk")
    assert events == [Handshake(765, "a", 1, state), PAUSED]
    assert reader.trailing_data == b"\x06\x00junk"


def test_handshake_size_is_exact_for_two_byte_length_prefix() -> None:
    # Quirk Q2: upstream assumes frameLength + 1; a >= 128-byte frame has a 2-byte prefix.
    hello = encode_handshake(770, "x" * 200, 25565, 1)
    reader, _ = feed_whole(hello + b"\x01\x00")
    assert reader.handshake_size == len(hello) == 1 + 1 + 2 + 2 + 200 + 2 + 1 + 1
    assert reader.trailing_data == b"\x01\x00"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("mc.example.com\0FML\0", "mc.example.com"),
        ("mc.example.com\0FML3\0", "mc.example.com"),
        ("\0anything", ""),
        ("Host.Example.com.///1.2.3.4:5///9", "Host.Example.com.///1.2.3.4:5///9"),
    ],
)
def test_address_cut_at_first_nul(address: str, expected: str) -> None:
    _, events = feed_whole(encode_handshake(763, address, 25565, 1))
    assert events[0] == Handshake(763, expected, 25565, 1)


def test_bytes_after_next_state_inside_the_frame_are_ignored() -> None:
    payload = encode_varint(770) + encode_string("a") + b"\x63\xdd" + b"\x01" + b"extra"
    reader, events = feed_whole(encode_frame(0, payload) + b"\x01\x00")
    assert events[0] == Handshake(770, "a", 25565, 1)
    assert reader.trailing_data == b"\x01\x00"


def test_modern_frame_of_length_254_is_not_legacy() -> None:
    # Quirk Q5: frame length 254 encodes as FE 01, then packet id 00.
    payload = encode_varint(770) + encode_string("h" * 246) + b"\x63\xdd\x01"
    hello = encode_frame(0, payload)
    assert hello[:3] == b"\xfe\x01\x00"
    for feed in (feed_whole, feed_bytewise):
        reader, events = feed(hello)
        assert events == [Handshake(770, "h" * 246, 25565, 1), PAUSED]
        assert reader.handshake_size == len(hello)
        assert not reader.awaiting_legacy


def test_modern_frame_of_length_382_is_not_legacy() -> None:
    payload = encode_varint(770) + encode_string("h" * 374) + b"\x63\xdd\x02"
    hello = encode_frame(0, payload)
    assert hello[:2] == b"\xfe\x02"
    reader = HandshakeReader()
    reader.feed(hello[:1])
    assert reader.next_event() is NEED_DATA
    assert reader.awaiting_legacy
    reader.feed(hello[1:2])
    assert reader.next_event() is NEED_DATA
    assert not reader.awaiting_legacy
    reader.feed(hello[2:])
    assert reader.next_event() == Handshake(770, "h" * 374, 25565, 2)


@pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
def test_legacy_ping_appendix_a(feed: Feeder) -> None:
    reader, events = feed(LEGACY_LOCALHOST)
    assert events == [LegacyPing(74, "localhost", 25565), PAUSED]
    assert reader.handshake_size == 0
    assert reader.received == LEGACY_LOCALHOST
    assert reader.trailing_data == b""
    assert not reader.awaiting_legacy


def test_awaiting_legacy_while_the_legacy_ping_is_incomplete() -> None:
    reader = HandshakeReader()
    assert not reader.awaiting_legacy
    for i, byte in enumerate(LEGACY_LOCALHOST[:-1]):
        reader.feed(bytes([byte]))
        assert reader.next_event() is NEED_DATA
        assert reader.awaiting_legacy, i
    reader.feed(LEGACY_LOCALHOST[-1:])
    assert reader.next_event() == LegacyPing(74, "localhost", 25565)
    assert not reader.awaiting_legacy


@pytest.mark.parametrize("wire", ["fe", "fe01"])
def test_pre_1_6_pings_wait_with_awaiting_legacy(wire: str) -> None:
    # Quirk Q6: the beta (FE) and 1.4/1.5 (FE 01) forms wait for the session's deadline.
    reader = HandshakeReader()
    reader.feed(bytes.fromhex(wire))
    assert reader.next_event() is NEED_DATA
    assert reader.next_event() is NEED_DATA
    assert reader.awaiting_legacy
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


def test_legacy_ping_hostname_with_surrogates_bom_and_big_port() -> None:
    host = "\ufeffa\U0001f600b".encode("utf-16-be") + b"\xd8\x00" + "c".encode("utf-16-be")
    units = len(host) // 2
    body = b"\x4a" + units.to_bytes(2, "big") + host + (0x1_63DD).to_bytes(4, "big")
    wire = LEGACY_LOCALHOST[:27] + len(body).to_bytes(2, "big") + body + b"tail"
    reader, events = feed_whole(wire)
    # No BOM handling, unpaired surrogate -> U+FFFD, u32 port truncated to 16 bits (§2.5).
    assert events == [LegacyPing(74, "\ufeffa\U0001f600b\ufffdc", 25565), PAUSED]
    assert reader.trailing_data == b"tail"


def test_legacy_rest_larger_than_needed_is_accepted() -> None:
    wire = bytearray(LEGACY_LOCALHOST)
    wire[27:29] = (0x400).to_bytes(2, "big")  # reads are only *limited* by rest
    _, events = feed_whole(bytes(wire))
    assert events[0] == LegacyPing(74, "localhost", 25565)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (3, b"\x00\x0c", "channel length"),
        (5, b"\x00N", "MC|PingHost"),
        (25, b"\x00s", "MC|PingHost"),
        (27, b"\x00\x02", "too small"),
        (27, b"\x00\x18", "too small"),  # rest one byte short of the port
    ],
)
def test_legacy_ping_mismatch_is_an_error(offset: int, value: bytes, match: str) -> None:
    wire = bytearray(LEGACY_LOCALHOST)
    wire[offset : offset + len(value)] = value
    with pytest.raises(RemoteProtocolError, match=match):
        feed_whole(bytes(wire))
    # Rejected as soon as the bad field arrives, not after the whole ping.
    reader = HandshakeReader()
    reader.feed(bytes(wire[: offset + len(value) + 3]))
    with pytest.raises(RemoteProtocolError, match=match):
        reader.next_event()


def test_legacy_ping_cut_short_then_eof() -> None:
    reader = HandshakeReader()
    reader.feed(LEGACY_LOCALHOST[:40])
    assert reader.next_event() is NEED_DATA
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


@pytest.mark.parametrize(
    "first", [b"\x02\x01\x00", b"\x05\x7a\x01\x02\x03\x04", b"\x03\x80\x01\x00"]
)
def test_first_packet_not_handshake_is_unexpected(first: bytes) -> None:
    reader = HandshakeReader()
    reader.feed(first)
    with pytest.raises(UnexpectedPacket):
        reader.next_event()


def test_unexpected_packet_rejected_before_the_frame_completes() -> None:
    reader = HandshakeReader()
    reader.feed(encode_varint(20_000) + b"\x05")
    with pytest.raises(UnexpectedPacket):
        reader.next_event()


def test_unexpected_packet_is_a_remote_protocol_error() -> None:
    assert issubclass(UnexpectedPacket, RemoteProtocolError)


def test_error_is_raised_again() -> None:
    reader = HandshakeReader()
    reader.feed(b"\x02\x01\x00")
    with pytest.raises(UnexpectedPacket) as first:
        reader.next_event()
    with pytest.raises(UnexpectedPacket) as second:
        reader.next_event()
    assert first.value is second.value


@pytest.mark.parametrize(
    "wire",
    [
        "00",  # zero-length frame: the packet id read fails (§2.3)
        "0180",  # frame ends inside the packet id
        "0200ff",  # protocol version VarInt runs off the frame
        "0400000500",  # address longer than the frame
        "050000016100",  # port cut short
        "0600000161 63dd",  # no next_state
    ],
)
def test_truncated_handshake_frames(wire: str) -> None:
    with pytest.raises(RemoteProtocolError):
        feed_whole(bytes.fromhex(wire))


def test_invalid_utf8_address() -> None:  # connector_test.go TestConnectorNonUTF8Handshake
    payload = encode_varint(770) + encode_varint(21) + INVALID_UTF8 + b"\x63\xdd\x01"
    with pytest.raises(RemoteProtocolError, match="not valid UTF-8"):
        feed_whole(encode_frame(0, payload))


def test_frame_length_above_upstream_cap() -> None:
    reader = HandshakeReader()
    reader.feed(encode_varint(2_097_152))
    with pytest.raises(RemoteProtocolError, match="too large"):
        reader.next_event()


def test_over_long_varint_frame_length() -> None:
    reader = HandshakeReader()
    reader.feed(b"\x80" * 6)
    with pytest.raises(RemoteProtocolError, match="VarInt is too big"):
        reader.next_event()


def test_40kb_hostname_rejected_from_its_declared_length() -> None:
    hello = encode_handshake(770, "a" * 40_000, 25565, 2)
    assert len(encode_varint(len(hello) - 3)) == 3
    reader = HandshakeReader()
    for i in range(2):
        reader.feed(hello[i : i + 1])
        assert reader.next_event() is NEED_DATA
    reader.feed(hello[2:3])  # the length prefix alone decides it
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        reader.next_event()


def test_handshake_at_the_cap_is_accepted() -> None:
    address_len = MAX_HANDSHAKE_FRAME - 1 - 2 - 3 - 2 - 1  # id, version, str len, port, state
    hello = encode_handshake(770, "a" * address_len, 25565, 1)
    assert len(hello) == MAX_HANDSHAKE_FRAME + 3
    _, events = feed_whole(hello)
    assert isinstance(events[0], Handshake)
    with pytest.raises(RemoteProtocolError):
        feed_whole(encode_handshake(770, "a" * (address_len + 1), 25565, 1))


def test_byte_at_a_time_large_input_is_linear() -> None:
    hello = encode_handshake(770, "a" * (MAX_HANDSHAKE_FRAME - 20), 25565, 2)
    login = encode_frame(0, encode_string("Steve") + ITZG_UUID.bytes)
    data = hello + login + b"z" * 8000  # ~40 KB in all
    start = time.perf_counter()
    reader, events = feed_bytewise(data)
    elapsed = time.perf_counter() - start
    assert events[1:] == [LoginStart(Player("Steve", ITZG_UUID)), PAUSED]
    assert reader.received == data
    assert elapsed < 2.0, elapsed  # quadratic re-scanning would take far longer


def test_login_start_wrong_packet_id() -> None:
    hello = encode_handshake(770, "a", 25565, 2)
    reader = HandshakeReader()
    reader.feed(hello + b"\x20\x02")  # rejected before the rest of the frame arrives
    assert isinstance(reader.next_event(), Handshake)
    with pytest.raises(RemoteProtocolError, match="expected login packet, got 2"):
        reader.next_event()


def test_login_start_over_cap() -> None:
    hello = encode_handshake(770, "a", 25565, 2)
    reader = HandshakeReader()
    reader.feed(hello + encode_varint(MAX_LOGIN_START_FRAME + 1))
    assert isinstance(reader.next_event(), Handshake)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        reader.next_event()


def test_login_start_waits_for_its_frame() -> None:
    data = load_vector("handshake-login-start-1.21.5.hex")
    reader = HandshakeReader()
    reader.feed(data[:-1])
    assert isinstance(reader.next_event(), Handshake)
    assert reader.next_event() is NEED_DATA
    assert reader.trailing_data == data[17:-1]
    reader.feed(data[-1:])
    assert reader.next_event() == LoginStart(Player("itzg", ITZG_UUID))


def test_clean_eof_before_login_start_continues_without_player() -> None:
    reader = HandshakeReader()
    reader.feed(encode_handshake(770, "a", 25565, 2))
    assert isinstance(reader.next_event(), Handshake)
    assert reader.next_event() is NEED_DATA
    reader.feed_eof()
    assert reader.next_event() == LoginStart(None)
    assert reader.next_event() is PAUSED


def test_eof_inside_login_start_frame_is_an_error() -> None:
    reader = HandshakeReader()
    reader.feed(encode_handshake(770, "a", 25565, 2) + b"\x16\x00\x04itzg")
    assert isinstance(reader.next_event(), Handshake)
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


def test_eof_before_any_byte_is_an_error() -> None:
    reader = HandshakeReader()
    assert reader.next_event() is NEED_DATA
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


def test_feed_after_eof_is_a_bug() -> None:
    reader = HandshakeReader()
    reader.feed_eof()
    with pytest.raises(RuntimeError):
        reader.feed(b"\x01")


@pytest.mark.parametrize("frame", ["00", "0180"])
def test_login_start_frame_ending_in_its_packet_id_means_no_player(frame: str) -> None:
    hello = encode_handshake(770, "a", 25565, 2)
    reader, events = feed_whole(hello + bytes.fromhex(frame) + b"\x01\x00")
    assert events[1:] == [LoginStart(None), PAUSED]
    assert reader.trailing_data == b"\x01\x00"


def test_login_start_truncated_at_uuid_boundary_in_stream() -> None:
    # 1.20.2+ without any UUID bytes: plain EOF at a field boundary -> no player (Q38).
    hello = encode_handshake(770, "a", 25565, 2)
    _, events = feed_whole(hello + encode_frame(0, encode_string("itzg")))
    assert events[1] == LoginStart(None)
    with pytest.raises(RemoteProtocolError):
        feed_whole(hello + encode_frame(0, encode_string("itzg") + b"\x5c\xdd"))


@HYPOTHESIS
@given(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.text(max_size=300).filter(lambda s: "\0" not in s),
    st.integers(min_value=0, max_value=0xFFFF),
    st.integers(min_value=0, max_value=2**31 - 1),
    st.binary(max_size=20),
)
def test_handshake_round_trip(
    version: int, address: str, port: int, state: int, tail: bytes
) -> None:
    try:
        hello = encode_handshake(version, address, port, state)
    except LocalProtocolError:  # lone surrogates cannot be UTF-8 encoded
        return
    reader, events = feed_whole(hello + tail)
    assert events[0] == Handshake(version, address, port, state)
    assert reader.handshake_size == len(hello)
    assert reader.received == hello + tail


@HYPOTHESIS
@given(st.text(max_size=200), st.integers(min_value=0, max_value=0xFFFF), st.integers(0, 255))
def test_legacy_ping_round_trip(address: str, port: int, version: int) -> None:
    wire = encode_legacy_ping(address, port, version)
    reader, events = feed_whole(wire)
    expected = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in address)
    assert events == [LegacyPing(version, expected, port), PAUSED]
    assert reader.received == wire


@HYPOTHESIS
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_random_bytes_only_raise_remote_protocol_errors(data: bytes, chunk: int) -> None:
    for prefix in (b"", b"\xfe", b"\xfe\x01", b"\xfe\x01\xfa", b"\x10\x00\x82\x06"):
        reader = HandshakeReader()
        stream = prefix + data
        fed = b""
        try:
            for i in range(0, len(stream), chunk):
                fed += stream[i : i + chunk]
                reader.feed(stream[i : i + chunk])
                drain(reader)
            reader.feed_eof()
            drain(reader)
        except RemoteProtocolError:
            pass
        assert reader.received == fed


@HYPOTHESIS
@given(st.binary(max_size=300), st.integers(0, 2))
def test_random_login_start_only_raises_remote_protocol_errors(body: bytes, which: int) -> None:
    version = (758, 760, 770)[which]
    hello = encode_handshake(version, "a", 25565, 2)
    reader = HandshakeReader()
    reader.feed(hello + encode_frame(0, body))
    assert isinstance(reader.next_event(), Handshake)
    try:
        event = reader.next_event()
    except RemoteProtocolError:
        return
    assert isinstance(event, LoginStart)
