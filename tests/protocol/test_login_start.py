"""decode_login_start: layouts by protocol version and upstream's EOF rules (§2.6, Q38)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.errors import RemoteProtocolError
from mc_router.protocol import Player, decode_login_start, encode_string, encode_varint

from .golden import HYPOTHESIS, load_vector

NIL = uuid.UUID(int=0)
ID = uuid.UUID("5cddfd26-fc86-4981-b52e-c42bb10bfdef")
NAME = encode_string("itzg")
SIG_BLOCK = bytes.fromhex("01 00fefdfc01020304 02 fbfa 03 f9f8f7")


def body_of(vector: str) -> bytes:
    """The Login Start payload after its packet id (the vectors' frames are 1-byte prefixed)."""
    data = load_vector(vector)
    return data[17 + 2 :]


@pytest.mark.parametrize(
    ("vector", "version", "expected"),
    [
        ("handshake-login-start-1.18.2.hex", 758, Player("itzg", NIL)),
        ("handshake-login-start-1.19.2-min-info.hex", 760, Player("itzg", NIL)),
        ("handshake-login-start-1.19.2-all-info.hex", 760, Player("itzg", ID)),
        ("handshake-login-start-1.21.5.hex", 770, Player("itzg", ID)),
    ],
)
def test_vectors(vector: str, version: int, expected: Player) -> None:
    assert decode_login_start(body_of(vector), version) == expected


@pytest.mark.parametrize(
    ("version", "body", "expected"),
    [
        (47, NAME, Player("itzg", NIL)),
        (758, NAME + b"trailing ignored", Player("itzg", NIL)),
        (759, NAME + b"\x00", Player("itzg", NIL)),
        (759, NAME + SIG_BLOCK, Player("itzg", NIL)),  # 1.19 has no UUID
        (759, NAME + SIG_BLOCK + b"\x01" + ID.bytes, Player("itzg", NIL)),
        (760, NAME + SIG_BLOCK + b"\x01" + ID.bytes, Player("itzg", ID)),
        (760, NAME + b"\x00\x01" + ID.bytes, Player("itzg", ID)),
        (761, NAME + b"\x01" + ID.bytes, Player("itzg", ID)),
        (763, NAME + b"\x00", Player("itzg", NIL)),
        (764, NAME + ID.bytes, Player("itzg", ID)),
        (770, NAME + ID.bytes + b"more", Player("itzg", ID)),
        (760, NAME + bytes.fromhex("01 0000000000000000 00 00 00"), Player("itzg", NIL)),
    ],
)
def test_layouts(version: int, body: bytes, expected: Player) -> None:
    assert decode_login_start(body, version) == expected


@pytest.mark.parametrize(
    ("version", "body"),
    [
        (770, b""),  # nothing at all
        (770, b"\x84"),  # inside the name's length VarInt
        (770, b"\x04it"),  # inside the name
        (770, encode_varint(10_000) + b"itzg"),  # name length far beyond the payload
        (770, NAME),  # 1.20.2+ with no UUID bytes at all (field boundary)
        (760, NAME),  # missing hasSigData bool
        (760, NAME + b"\x00"),  # missing hasUUID bool
        (760, NAME + b"\x01"),  # boundary before the expiry
        (760, NAME + b"\x01" + bytes(8)),  # boundary before the key length
        (760, NAME + b"\x01" + bytes(8) + b"\x02"),  # key length given, no key bytes
        (760, NAME + b"\x01" + bytes(8) + b"\x00\x03"),  # signature length, no bytes
        (760, NAME + SIG_BLOCK + b"\x01"),  # hasUUID true, no UUID bytes
        (761, NAME + b"\x01"),
        (759, NAME + b"\x01" + bytes(8) + b"\x80"),  # inside the key length VarInt
    ],
)
def test_plain_eof_means_no_player(version: int, body: bytes) -> None:
    assert decode_login_start(body, version) is None


@pytest.mark.parametrize(
    ("version", "body", "match"),
    [
        (770, NAME + ID.bytes[:15], "player UUID"),
        (770, NAME + b"\x5c", "player UUID"),
        (761, NAME + b"\x01" + ID.bytes[:8], "player UUID"),
        (760, NAME + b"\x01\x00\xfe\xfd", "key expiry"),
        (760, NAME + b"\x01" + bytes(8) + b"\x02\xfb", "public key"),
        (760, NAME + b"\x01" + bytes(8) + b"\x00\x03\xf9", "key signature"),
        (760, NAME + b"\x02", "expected 0x00 or 0x01 for boolean, got 0x02"),
        (763, NAME + b"\xff", "boolean"),
        (
            770,
            encode_varint(21) + bytes.fromhex("01d92034c358dc0b85fe6bfd3b730711b4394b432d"),
            "UTF-8",
        ),
        (770, b"\xff" * 7, "VarInt is too big"),
    ],
)
def test_errors(version: int, body: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_login_start(body, version)


@HYPOTHESIS
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=1000))
def test_random_payloads_never_leak_other_errors(body: bytes, version: int) -> None:
    try:
        result = decode_login_start(body, version)
    except RemoteProtocolError:
        return
    assert result is None or isinstance(result, Player)
