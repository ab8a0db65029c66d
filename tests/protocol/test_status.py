"""Packet builders and the status parser, byte-exact against Appendix A (§2.7, §2.8)."""

from __future__ import annotations

import json

import pytest

from mc_router.errors import LocalProtocolError, RemoteProtocolError
from mc_router.protocol import (
    decode_status_response,
    decode_string,
    decode_varint,
    encode_handshake,
    encode_legacy_ping,
    encode_string,
    legacy_kick,
    login_disconnect,
    ping,
    pong,
    status_json,
    status_request,
    status_response,
)

ASLEEP_JSON = (
    '{"version":{"name":"1.7+","protocol":770},"players":{"max":1,"online":0},'
    '"description":{"text":"Server is asleep"}}'
)


def test_status_json_is_byte_exact_upstream() -> None:
    assert status_json("Server is asleep", 770) == ASLEEP_JSON
    assert len(ASLEEP_JSON.encode()) == 115


def test_status_response_appendix_a() -> None:
    frame = status_response(status_json("Server is asleep", 770))
    assert frame[:3] == bytes.fromhex("750073")
    assert frame[3:] == ASLEEP_JSON.encode()
    assert len(frame) == 1 + 117


def test_status_json_go_escaping() -> None:
    text = status_json('<b>&§\u2028\u2029"\\é', 5)
    assert '"text":"\\u003cb\\u003e\\u0026§\\u2028\\u2029\\"\\\\é"' in text
    assert json.loads(text)["description"]["text"] == '<b>&§\u2028\u2029"\\é'


def test_status_json_replaces_lone_surrogates() -> None:
    assert json.loads(status_json("a\udcffb", 5))["description"]["text"] == "a\ufffdb"


def test_status_json_description_and_favicon() -> None:
    description = {"text": "", "extra": [{"text": "Hi", "color": "gold"}]}
    text = status_json(
        "ignored",
        763,
        version_name="Paper 1.20.1",
        max_players=20,
        online=3,
        favicon="data:image/png;base64,AAAA",
        description=description,
    )
    assert text == (
        '{"version":{"name":"Paper 1.20.1","protocol":763},"players":{"max":20,"online":3},'
        '"description":{"text":"","extra":[{"text":"Hi","color":"gold"}]},'
        '"favicon":"data:image/png;base64,AAAA"}'
    )
    assert json.loads(status_json("m", 1, description="plain"))["description"] == "plain"


def test_pong_and_ping_appendix_a() -> None:
    payload = bytes.fromhex("0102030405060708")
    assert pong(payload).hex() == "09010102030405060708"
    assert ping(payload).hex() == "09010102030405060708"
    with pytest.raises(LocalProtocolError):
        pong(b"short")


def test_status_request() -> None:
    assert status_request() == b"\x01\x00"


def test_login_disconnect() -> None:
    frame = login_disconnect("Server is starting… <wait>")
    length, pos = decode_varint(frame)
    assert length == len(frame) - pos
    assert frame[pos] == 0x00
    text, end = decode_string(frame, pos + 1)
    assert end == len(frame)
    assert json.loads(text) == {"text": "Server is starting… <wait>"}
    assert "…" in text  # ensure_ascii=False


def test_legacy_kick_appendix_a() -> None:
    expected = (
        "ff 0013 00a7 0031 0000 0031 0032 0037 0000 0031 002e 0037 002b 0000"
        " 007a 007a 007a 0000 0030 0000 0031"
    )
    assert legacy_kick("zzz") == bytes.fromhex(expected)


def test_legacy_kick_counts_utf16_code_units() -> None:
    kick = legacy_kick("\U0001f600", protocol=5, version_name="v", online=2, max_players=9)
    text = "§1\x005\x00v\x00\U0001f600\x002\x009"
    assert kick == b"\xff" + (len(text) + 1).to_bytes(2, "big") + text.encode("utf-16-be")


def test_legacy_kick_too_long() -> None:
    with pytest.raises(LocalProtocolError):
        legacy_kick("x" * 70_000)


def test_encode_legacy_ping_appendix_a() -> None:
    expected = (
        "fe 01 fa 000b 004d0043007c00500069006e00670048006f00730074 0019 4a 0009"
        " 006c006f00630061006c0068006f00730074 000063dd"
    )
    assert encode_legacy_ping("localhost", 25565) == bytes.fromhex(expected)
    assert len(encode_legacy_ping("localhost", 25565)) == 54


def test_encode_handshake_matches_the_vector_frame() -> None:
    assert encode_handshake(770, "localhost", 25565, 1).hex() == (
        "1000820609" + b"localhost".hex() + "63dd01"
    )


@pytest.mark.parametrize("port", [-1, 65536])
def test_encode_handshake_bad_port(port: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_handshake(770, "a", port, 1)


def test_decode_status_response() -> None:
    payload = status_response(ASLEEP_JSON)[2:]
    assert decode_status_response(payload) == json.loads(ASLEEP_JSON)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x05{}",
        encode_string("not json"),
        encode_string("[1, 2]"),
        encode_string("[" * 100_000 + "]" * 100_000),
        encode_string("1" * 5000),
        b"\x03\xff\xfe\xfd",
    ],
)
def test_decode_status_response_garbage(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_status_response(payload)
