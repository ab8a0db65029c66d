"""Bad input, slow or silent clients and dead backends never stop the router (issue #2)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest

from mc_router.events import ErrorObserved, Event
from mc_router.protocol import encode_frame, encode_string, encode_varint
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello, read_exactly, read_to_eof, wait_until


def _handshake_with_raw_address(address: bytes) -> bytes:
    payload = encode_varint(770) + encode_varint(len(address)) + address + b"\x63\xdd\x02"
    return encode_varint(len(payload) + 1) + b"\x00" + payload


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    "tls": bytes.fromhex("160301020001"),
    "huge_frame": encode_varint(2_097_152) + b"\x00",
    "overlong_varint": b"\xff" * 7,
    "negative_varint_length": b"\xff\xff\xff\xff\x0f\x00",
    "wrong_packet_id": encode_frame(0x05, b"hello"),
    "invalid_utf8": _handshake_with_raw_address(
        bytes.fromhex("d92034c358dc0b85fe6bfd3b730711b4394b432d")
    ),
    "hostname_40kb": _handshake_with_raw_address(b"a" * 40_000),
    "bad_login_packet": encode_frame(
        0, encode_varint(758) + encode_string("mc.example.com") + b"\x63\xdd\x02"
    )
    + encode_frame(0x07, b""),
    "bad_legacy": bytes.fromhex("fe01fa000c"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
async def test_malformed_input_is_closed_and_the_next_client_is_served(
    router_factory: RouterFactory, backend: FakeBackend, name: str
) -> None:
    events: list[Event] = []
    async with router_factory(mapping={"mc.example.com": backend.address}) as router:
        router.bus.subscribe(events.append)
        async with connect(router.port) as (reader, writer):
            writer.write(GARBAGE[name])
            # Closed without a byte written back, well before the 5 s handshake deadline.
            assert await read_to_eof(reader, timeout=2) == b""
        async with connect(router.port) as (_, writer):
            hello = login_hello("mc.example.com")
            writer.write(hello)
            conn = await backend.next_connection()
            assert await read_exactly(conn, len(hello)) == hello
    errors = [e.type for e in events if isinstance(e, ErrorObserved)]
    assert errors == [
        "unexpected_content" if name in ("http", "tls", "wrong_packet_id") else "read"
    ]


async def test_hundreds_of_silent_half_handshakes_do_not_block_a_valid_client(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    half = login_hello("mc.example.com")[:7]
    async with router_factory(mapping={"mc.example.com": backend.address}) as router:
        silent = []
        try:
            for i in range(300):
                _, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(half if i % 2 else b"")
                silent.append(writer)
            async with connect(router.port) as (reader, writer):
                hello = login_hello("mc.example.com")
                writer.write(hello)
                conn = await backend.next_connection()
                assert await read_exactly(conn, len(hello)) == hello
                conn.writer.write(b"ok")
                assert await reader.readexactly(2) == b"ok"
        finally:
            for writer in silent:
                writer.close()


async def test_silent_client_is_closed_at_the_handshake_deadline(
    router_factory: RouterFactory,
) -> None:
    loop = asyncio.get_running_loop()
    async with router_factory() as router, connect(router.port) as (reader, _):
        start = loop.time()
        assert await read_to_eof(reader, timeout=8) == b""
        assert 4.5 < loop.time() - start < 7


async def test_pre_1_6_legacy_ping_is_not_held_for_the_full_deadline(
    router_factory: RouterFactory,
) -> None:
    loop = asyncio.get_running_loop()
    async with router_factory() as router, connect(router.port) as (reader, writer):
        writer.write(b"\xfe\x01")
        start = loop.time()
        assert await read_to_eof(reader, timeout=4) == b""
        assert loop.time() - start < 2.5


@contextlib.contextmanager
def _unanswering_address() -> Iterator[str]:
    """A loopback port whose accept queue is full, so new SYNs go unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_dial_timeout_to_a_backend_that_never_answers(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    with _unanswering_address() as dead:
        async with router_factory(
            mapping={"dead.example.com": dead, "mc.example.com": backend.address},
            backend_dial_timeout=0.5,
        ) as router:
            router.bus.subscribe(events.append)
            async with connect(router.port) as (reader, writer):
                start = loop.time()
                writer.write(login_hello("dead.example.com"))
                assert await read_to_eof(reader, timeout=5) == b""
                assert 0.4 < loop.time() - start < 2.0
            # Others are served meanwhile and after.
            async with connect(router.port) as (_, writer):
                writer.write(login_hello("mc.example.com"))
                await backend.next_connection()
    assert ErrorObserved("backend_failed") in events


async def test_slow_reader_applies_backpressure_to_the_backend(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    chunk = b"x" * 65536
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(login_hello("mc.example.com"))
        conn = await backend.next_connection()
        # The client reads nothing: the backend must soon be unable to write more,
        # because the router stops reading instead of buffering without bound.
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while True:
                    conn.writer.write(chunk)
                    sent += len(chunk)
                    await conn.writer.drain()
        assert sent < 64 * 1024 * 1024
        (pipe,) = router.relay.pipes
        assert pipe.client.transport is not None
        assert pipe.client.transport.get_write_buffer_size() <= 1024 * 1024
        # Then everything arrives once the client reads, in order and complete.
        received = 0
        while received < sent:
            data = await asyncio.wait_for(reader.read(1 << 20), 5)
            assert data and set(data) == {ord("x")}
            received += len(data)
        assert received == sent


async def test_shutdown_closes_clients_still_in_their_hello_at_once(
    router_factory: RouterFactory,
) -> None:
    loop = asyncio.get_running_loop()
    async with router_factory(drain_timeout=5.0) as router:
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(login_hello("mc.example.com")[:5])
        await writer.drain()
        await wait_until(lambda: len(router.relay.greeting) == 1)
        start = loop.time()
        await router.stop()
        # Not held for the 5 s drain nor the 5 s handshake deadline.
        assert await read_to_eof(reader, timeout=2) == b""
        assert loop.time() - start < 1
        writer.close()
