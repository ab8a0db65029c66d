"""VarInt, String and frame primitives (spec §2.1-§2.3, Appendix A, upstream read_test.go)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mc_router.protocol import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    Incomplete,
    NeedData,
    decode_frame_header,
    decode_string,
    decode_varint,
    encode_frame,
    encode_string,
    encode_varint,
)

from .golden import HYPOTHESIS

INVALID_UTF8 = bytes.fromhex("01d92034c358dc0b85fe6bfd3b730711b4394b432d")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (255, "ff01"),
        (25565, "ddc701"),
        (2097151, "ffff7f"),
        (2147483647, "ffffffff07"),
        (-1, "ffffffff0f"),
        (-(2**31), "8080808008"),
        (2**32 - 1, "ffffffff0f"),
    ],
)
def test_encode_varint_appendix_a(value: int, wire: str) -> None:
    assert encode_varint(value).hex() == wire


@pytest.mark.parametrize("value", [-(2**31) - 1, 2**32, 2**40])
def test_encode_varint_out_of_range(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_varint(value)


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        ("fa00", 0x7A),  # read_test.go TestReadVarInt/Single byte (zero continuation)
        ("8104", 0x201),  # read_test.go TestReadVarInt/Two byte
        ("ffffffff0f", 4294967295),  # Q1: no sign extension
        ("808080808001", 1 << 35),  # Q1: a 6th byte is accepted
        ("ffffffffff7f", 2**42 - 1),
    ],
)
def test_decode_varint_upstream(wire: str, value: int) -> None:
    data = bytes.fromhex(wire)
    assert decode_varint(data) == (value, len(data))
    assert decode_varint(bytearray(data)) == (value, len(data))
    assert decode_varint(memoryview(data)) == (value, len(data))


def test_decode_varint_at_offset_leaves_the_rest() -> None:
    assert decode_varint(b"\xaa\xdd\xc7\x01\x05", 1) == (25565, 4)


def test_decode_varint_too_big() -> None:
    with pytest.raises(RemoteProtocolError, match="VarInt is too big"):
        decode_varint(b"\xff" * 6 + b"\x01")
    with pytest.raises(RemoteProtocolError, match="VarInt is too big"):
        decode_varint(b"\x80" * 6)


@pytest.mark.parametrize("wire", ["", "80", "ffffff", "8080808080"])
def test_decode_varint_incomplete(wire: str) -> None:
    with pytest.raises(Incomplete):
        decode_varint(bytes.fromhex(wire))


def test_incomplete_is_not_a_protocol_error() -> None:
    assert not issubclass(Incomplete, ProtocolError)


def test_need_data_is_a_singleton_with_a_nice_repr() -> None:
    assert NEED_DATA is NeedData.NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"


@HYPOTHESIS
@given(st.integers(min_value=-(2**31), max_value=2**32 - 1))
def test_varint_round_trip(value: int) -> None:
    wire = encode_varint(value)
    assert 1 <= len(wire) <= 5
    assert decode_varint(wire + b"\x99") == (value & 0xFFFF_FFFF, len(wire))


def test_read_string_valid_utf8() -> None:  # read_test.go TestReadString/Valid UTF-8
    wire = encode_string("mc.example.com")
    assert wire[0] == 14
    assert decode_string(wire, 0, 255) == ("mc.example.com", len(wire))


def test_read_string_invalid_utf8() -> None:  # read_test.go TestReadString/Invalid UTF-8
    assert len(INVALID_UTF8) == 21
    with pytest.raises(RemoteProtocolError, match="not valid UTF-8"):
        decode_string(encode_varint(21) + INVALID_UTF8, 0, 255)


def test_string_length_counts_utf8_bytes() -> None:
    wire = encode_string("§é😀")
    assert wire[0] == 2 + 2 + 4
    assert decode_string(wire) == ("§é😀", len(wire))


def test_string_over_max_bytes_rejected_before_the_bytes_arrive() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_string(encode_varint(40_000), 0, 255)


def test_string_incomplete() -> None:
    with pytest.raises(Incomplete):
        decode_string(b"\x05abc")
    with pytest.raises(Incomplete):
        decode_string(b"")


def test_encode_string_rejects_lone_surrogates() -> None:
    with pytest.raises(LocalProtocolError):
        encode_string("\udcff")


@HYPOTHESIS
@given(st.text(), st.binary(max_size=4))
def test_string_round_trip(text: str, tail: bytes) -> None:
    try:
        wire = encode_string(text)
    except LocalProtocolError:
        return  # lone surrogates cannot be UTF-8 encoded
    assert decode_string(wire + tail) == (text, len(wire))


def test_encode_frame() -> None:
    assert encode_frame(0, b"").hex() == "0100"
    assert encode_frame(1, bytes(range(1, 9))).hex() == "09010102030405060708"
    big = encode_frame(0, b"x" * 200)
    assert big[:3] == bytes.fromhex("c90100")


def test_encode_frame_too_large() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(0, b"\0" * MAX_FRAME_LENGTH)


def test_max_frame_length_is_upstreams() -> None:
    assert MAX_FRAME_LENGTH == 2**21 - 1


def test_decode_frame_header() -> None:
    assert decode_frame_header(b"\x10\x00", 0, 100) == (16, 1)
    assert decode_frame_header(encode_varint(MAX_FRAME_LENGTH), 0, MAX_FRAME_LENGTH) == (
        MAX_FRAME_LENGTH,
        3,
    )
    with pytest.raises(RemoteProtocolError, match="too large"):
        decode_frame_header(encode_varint(MAX_FRAME_LENGTH + 1), 0, 2**40)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        decode_frame_header(encode_varint(101), 0, 100)
    with pytest.raises(Incomplete):
        decode_frame_header(b"\x80", 0, 100)
