"""Test doubles for the scaling tests: a scriptable Minecraft status server, a manual clock.

`StatusServer` binds 127.0.0.1:0 at once but listens only when `listen()` is called, so a
test can have "the port is closed" (connection refused), then "open but silent", then
"answers status" on one address, each phase switched by the test, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from mc_router.protocol import (
    NEED_DATA,
    Frame,
    FrameReader,
    decode_string,
    decode_varint,
    pong,
    status_response,
)

SAMPLE_STATUS: dict[str, object] = {
    "version": {"name": "Paper 1.21.4", "protocol": 769},
    "players": {"max": 20, "online": 3, "sample": [{"name": "alice", "id": "0" * 32}]},
    "description": {"text": "A real server", "color": "gold"},
    "favicon": "data:image/png;base64,iVBORw0KGgo=",
}


@dataclass(frozen=True)
class SeenHandshake:
    protocol_version: int
    server_address: str
    server_port: int
    next_state: int


def decode_handshake(frame: Frame) -> SeenHandshake:
    payload = frame.payload
    protocol, pos = decode_varint(payload, 0)
    address, pos = decode_string(payload, pos)
    port = int.from_bytes(payload[pos : pos + 2], "big")
    next_state, _ = decode_varint(payload, pos + 2)
    return SeenHandshake(protocol, address, port, next_state)


@dataclass
class StatusServer:
    """A backend that speaks the status protocol; `mode` decides how it answers.

    Modes: "answer" (status JSON, then pong); "silent" (accept, read, never answer until
    `release` is set, then answer); "close" (read the request, close); "drop" (close at
    once); "garbage" (random bytes); "not-json" (a well-formed frame whose string is not
    JSON); "login-packet" (packet 0x02).
    """

    mode: str = "answer"
    status: dict[str, object] = field(default_factory=lambda: dict(SAMPLE_STATUS))
    handshakes: list[SeenHandshake] = field(default_factory=list)
    connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    _sock: socket.socket | None = None
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setblocking(False)

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def listen(self) -> None:
        assert self._sock is not None
        self._sock.listen(64)
        self._server = await asyncio.start_server(self._on_client, sock=self._sock)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        # Handlers end on their own once released and disconnected (cancelling a
        # start_server handler task makes Python 3.11's streams log a spurious error).
        self.release.set()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> StatusServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        self.accepted.put_nowait(self.connections)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, RuntimeError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "drop":
            return
        frames = FrameReader()

        async def next_frame() -> Frame | None:
            while True:
                event = frames.next_event()
                if event is not NEED_DATA:
                    return event
                data = await reader.read(4096)
                if not data:
                    return None
                frames.feed(data)

        handshake = await next_frame()
        if handshake is None:
            return
        self.handshakes.append(decode_handshake(handshake))
        request = await next_frame()
        if request is None or mode == "close":
            return
        if mode == "silent":
            await self.release.wait()
        if mode == "garbage":
            writer.write(b"\xff\xff\xff\xff\xff\xff\x00garbage")
        elif mode == "not-json":
            writer.write(status_response("this is not json"))
        elif mode == "login-packet":
            writer.write(b"\x02\x02\x00")
        else:
            writer.write(status_response(json.dumps(self.status)))
        await writer.drain()
        ping = await next_frame()
        if ping is not None and ping.packet_id == 0x01:
            writer.write(pong(ping.payload))
            await writer.drain()


class ManualScheduler:
    """`call_later` on a clock that moves only when the test calls `advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, ManualHandle]] = []
        self._ids = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], object], /) -> ManualHandle:
        handle = ManualHandle(self.now + delay, callback)
        heapq.heappush(self._queue, (handle.when, next(self._ids), handle))
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock, running every callback that falls due, in order."""
        target = self.now + seconds
        while self._queue and self._queue[0][0] <= target:
            when, _, handle = heapq.heappop(self._queue)
            self.now = when
            if not handle.cancelled:
                handle.callback()
        self.now = target

    def pending(self) -> list[float]:
        return sorted(h.when for _, _, h in self._queue if not h.cancelled)


@dataclass
class ManualHandle:
    when: float
    callback: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
