"""Working fakes for tests: a recording TCP backend and a raw Minecraft client.

Everything binds 127.0.0.1 on port 0 and is stopped by its context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from mc_router.protocol import (
    NEED_DATA,
    Frame,
    FrameReader,
    Handshake,
    HandshakeReader,
    encode_frame,
    encode_handshake,
    encode_string,
    pong,
    status_response,
)

FAKE_STATUS = (
    '{"version":{"name":"1.20.4","protocol":765},"players":{"max":20,"online":0},'
    '"description":{"text":"fake backend"}}'
)


@dataclass
class BackendConn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)


async def answer_status(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes, status: str
) -> None:
    """Play a server's side of a status exchange after the handshake, then close."""
    frames = FrameReader()
    frames.feed(initial)
    while True:
        frame = frames.next_event()
        if not isinstance(frame, Frame):
            data = await reader.read(4096)
            if not data:
                break
            frames.feed(data)
            continue
        if frame.packet_id == 0:
            writer.write(status_response(status))
        else:
            writer.write(pong(frame.payload[:8]))
            break
    writer.close()


class FakeBackend:
    """A TCP server that records what each connection sends; by default it echoes nothing.

    `handler(conn)` may be given to script replies. `connections` is an asyncio.Queue of
    BackendConn objects so tests can wait for a connection without sleeping.
    """

    def __init__(
        self,
        handler: Callable[[BackendConn], object] | None = None,
        *,
        host: str = "127.0.0.1",
        answer_status: bool = False,
        status: str = FAKE_STATUS,
    ) -> None:
        self.handler = handler
        self.host = host
        # Like a real server: answer status pings (readiness probes) and queue only the rest.
        self.answer_status = answer_status
        self.status = status
        self.status_pings = 0
        self.connections: asyncio.Queue[BackendConn] = asyncio.Queue()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if self.answer_status:
            replay = await self._status_or_replay(reader, writer)
            if replay is None:
                return
            reader = replay
        self.accepted += 1
        conn = BackendConn(reader, writer)
        self.connections.put_nowait(conn)
        if self.handler is not None:
            result = self.handler(conn)
            if asyncio.iscoroutine(result):
                with contextlib.suppress(ConnectionError):
                    await result

    async def _status_or_replay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> asyncio.StreamReader | None:
        """Answer a status connection; for anything else, a reader replaying every byte."""
        hello = HandshakeReader()
        consumed = bytearray()
        event: object = NEED_DATA
        while not isinstance(event, Handshake):
            data = await reader.read(4096)
            if not data:
                writer.close()
                return None
            consumed += data
            hello.feed(data)
            event = hello.next_event()
        if event.next_state == 1:
            self.status_pings += 1
            await answer_status(reader, writer, hello.trailing_data, self.status)
            return None
        replay = asyncio.StreamReader()
        replay.feed_data(bytes(consumed))

        async def pump() -> None:
            while data := await reader.read(65536):
                replay.feed_data(data)
            replay.feed_eof()

        task = asyncio.create_task(pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return replay

    async def __aenter__(self) -> FakeBackend:
        self._server = await asyncio.start_server(self._on_client, self.host, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def next_connection(self, timeout: float = 5.0) -> BackendConn:
        return await asyncio.wait_for(self.connections.get(), timeout)


async def read_exactly(conn: BackendConn, n: int, timeout: float = 5.0) -> bytes:
    data = await asyncio.wait_for(conn.reader.readexactly(n), timeout)
    conn.received += data
    return data


def login_start(name: str) -> bytes:
    """A pre-1.19 Login Start frame carrying only the name."""
    return encode_frame(0x00, encode_string(name))


def status_hello(server_address: str, protocol: int = 770, port: int = 25565) -> bytes:
    return encode_handshake(protocol, server_address, port, 1) + b"\x01\x00"


def login_hello(server_address: str, name: str = "Steve", protocol: int = 758) -> bytes:
    return encode_handshake(protocol, server_address, 25565, 2) + login_start(name)


@contextlib.asynccontextmanager
async def connect(
    port: int, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the peer closes; a reset counts as a close (it carries no bytes)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition nothing signals (e.g. N sessions in flight), checking every 10 ms.

    Prefer an event where one exists; this bounds the wait instead of guessing a sleep.
    """
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 -- no event exists for these conditions
            await asyncio.sleep(0.01)
