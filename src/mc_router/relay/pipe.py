"""Byte relay between two connected transports: half-close and backpressure.

After the session has replayed the client's bytes, the client and backend protocols are
linked into a `Pipe` and every later byte moves by callbacks only, with no coroutine per
chunk:

* data from one side is written to the other;
* when a side's write buffer passes its high-water mark (`pause_writing`), the *other* side
  stops reading until it drains (`resume_writing`), so a slow reader never makes us buffer;
* EOF from one side is passed on as a half-close (`write_eof`); the pipe closes both
  transports once both directions have ended or either connection is lost;
* `on_closed` runs exactly once, after both transports are gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast


class PipeEnd(asyncio.Protocol):
    """One side of a pipe: forwards what it reads to its peer's transport."""

    __slots__ = ("bytes_read", "eof", "lost", "peer", "pending", "pipe", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: bytearray | None = None
        self.peer: PipeEnd | None = None
        self.pipe: Pipe | None = None
        self.bytes_read = 0
        self.eof = False
        self.lost = False

    # The pipe is attached after connection_made; until then subclasses handle the data.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            self.bytes_read += len(data)
            peer.transport.write(data)
        elif self.pending is None:
            # A backend that speaks before the pipe is linked (Minecraft servers do not).
            self.pending = bytearray(data)
        else:
            self.pending += data

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.pipe is not None:
            return self.pipe.half_closed(self)
        return None

    def pause_writing(self) -> None:
        # Our outgoing buffer is full: stop reading from the side that fills it.
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost and not peer.eof:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.pipe is not None:
            self.pipe.lost(self, exc)


class Pipe:
    """Links two PipeEnds; closes both when done and calls `on_closed` once."""

    __slots__ = ("_done", "backend", "client", "error", "on_closed")

    def __init__(
        self,
        client: PipeEnd,
        backend: PipeEnd,
        on_closed: Callable[[Pipe], None],
    ) -> None:
        self.client = client
        self.backend = backend
        self.on_closed = on_closed
        self.error: Exception | None = None
        self._done = False
        client.peer, backend.peer = backend, client
        client.pipe = backend.pipe = self

    def start(self) -> None:
        """Begin relaying: resume reading on both sides (the client was paused since hello)."""
        for end in (self.client, self.backend):
            if end.lost:
                self.lost(end, None)
                return
        for end in (self.client, self.backend):
            assert end.transport is not None
            if end.pending:
                end.data_received(bytes(end.pending))
                end.pending = None
            if not end.eof:
                end.transport.resume_reading()

    def half_closed(self, end: PipeEnd) -> bool:
        """EOF from `end`: pass it on; keep the transport open while the other way runs."""
        peer = end.peer
        assert peer is not None and peer.transport is not None
        if peer.eof:
            self.close()
            return True
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True
        self.close()
        return True

    def lost(self, end: PipeEnd, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = exc
        peer = end.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            # Flushes what is buffered for the peer, then closes it.
            peer.transport.close()
        if self.client.lost and self.backend.lost and not self._done:
            self._done = True
            self.on_closed(self)

    def close(self) -> None:
        for end in (self.client, self.backend):
            if end.transport is not None and not end.lost:
                end.transport.close()

    def abort(self) -> None:
        for end in (self.client, self.backend):
            if end.transport is not None and not end.lost:
                end.transport.abort()
