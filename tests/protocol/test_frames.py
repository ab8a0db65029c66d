"""FrameReader: the generic reader used after the hello (spec §2.3, §5.3)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.errors import RemoteProtocolError
from mc_router.protocol import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    Frame,
    FrameReader,
    encode_frame,
    encode_varint,
    ping,
    status_request,
)

from .golden import HYPOTHESIS


def test_status_request_then_ping() -> None:
    reader = FrameReader()
    reader.feed(status_request() + ping(bytes(range(1, 9))))
    assert reader.next_event() == Frame(0, b"")
    assert reader.next_event() == Frame(1, bytes(range(1, 9)))
    assert reader.next_event() is NEED_DATA
    assert reader.trailing_data == b""


def test_byte_at_a_time_40kb_frame_is_fast() -> None:
    wire = encode_frame(0x00, b"j" * 40_000) + b"\x01"
    reader = FrameReader()
    frames = []
    start = time.perf_counter()
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        event = reader.next_event()
        if event is not NEED_DATA:
            frames.append(event)
    assert time.perf_counter() - start < 2.0
    assert frames == [Frame(0, b"j" * 40_000)]
    assert reader.trailing_data == b"\x01"


def test_custom_cap_rejects_from_the_declared_length() -> None:
    reader = FrameReader(max_frame=100)
    reader.feed(encode_varint(101))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        reader.next_event()
    with pytest.raises(RemoteProtocolError):
        reader.next_event()  # errors are sticky


def test_upstream_cap() -> None:
    reader = FrameReader()
    reader.feed(encode_varint(MAX_FRAME_LENGTH + 1))
    with pytest.raises(RemoteProtocolError, match="too large"):
        reader.next_event()


@pytest.mark.parametrize("wire", ["00", "0180", "80808080808001"])
def test_bad_frames(wire: str) -> None:
    reader = FrameReader()
    reader.feed(bytes.fromhex(wire))
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


@HYPOTHESIS
@given(
    st.lists(st.tuples(st.integers(0, 2**31 - 1), st.binary(max_size=300)), max_size=5),
    st.integers(min_value=1, max_value=50),
)
def test_round_trip_in_chunks(packets: list[tuple[int, bytes]], chunk: int) -> None:
    wire = b"".join(encode_frame(pid, payload) for pid, payload in packets)
    reader = FrameReader()
    got = []
    for i in range(0, len(wire), chunk):
        reader.feed(wire[i : i + chunk])
        while (event := reader.next_event()) is not NEED_DATA:
            got.append(event)
    assert got == [Frame(pid, payload) for pid, payload in packets]


@HYPOTHESIS
@given(st.binary(max_size=300))
def test_garbage_only_raises_remote_protocol_errors(data: bytes) -> None:
    reader = FrameReader(max_frame=256)
    reader.feed(data)
    try:
        while reader.next_event() is not NEED_DATA:
            pass
    except RemoteProtocolError:
        pass
