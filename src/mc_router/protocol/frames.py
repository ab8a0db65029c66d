"""Generic length-prefixed frame reader for after the hello (spec §2.3), sans-I/O.

Used to serve a predefined status (§5.3) and by the client-side status prober. `feed()` bytes,
then `next_event()` returns a `Frame` or `NEED_DATA`. Invariants: a declared length above the
reader's cap is rejected as soon as the length prefix is complete; consumed bytes are dropped;
defects raise `RemoteProtocolError` (once raised, it is raised again). EOF handling is the
caller's: a frame cut short by EOF is simply never returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from mc_router.errors import RemoteProtocolError
from mc_router.protocol.types import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    Incomplete,
    NeedData,
    _decode_varint,
    decode_frame_header,
)

__all__ = ["Frame", "FrameReader"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet: its id and the bytes after the id."""

    packet_id: int
    payload: bytes


class FrameReader:
    """Splits a byte stream into `Frame`s, each at most `max_frame` bytes long (id included)."""

    def __init__(self, max_frame: int = MAX_FRAME_LENGTH) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    @property
    def trailing_data(self) -> bytes:
        """Bytes fed but not yet returned as a frame."""
        return bytes(self._buf)

    def next_event(self) -> Frame | NeedData:
        """Return the next complete frame or `NEED_DATA`; raise `RemoteProtocolError`."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_event(self) -> Frame | NeedData:
        buf = self._buf
        try:
            length, start = decode_frame_header(buf, 0, self._max_frame)
        except Incomplete:
            return NEED_DATA
        end = start + length
        if len(buf) < end:
            return NEED_DATA
        try:
            packet_id, body = _decode_varint(buf, start, end)
        except Incomplete:
            # §2.3: a zero-length frame (or one ending inside the id) fails reading the id.
            raise RemoteProtocolError("frame ends inside its packet id") from None
        frame = Frame(packet_id, bytes(buf[body:end]))
        del buf[:end]
        return frame
