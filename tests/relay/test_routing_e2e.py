"""End-to-end routing through a real router on 127.0.0.1: hostnames, replay, legacy, unknown."""

from __future__ import annotations

import asyncio

import pytest

from mc_router.protocol import encode_handshake, encode_legacy_ping
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello, read_exactly, read_to_eof, status_hello


@pytest.mark.parametrize(
    ("handshake_address", "simplify_srv"),
    [
        ("mc.example.com", False),
        ("MC.Example.COM", False),
        ("mc.example.com.", False),
        ("mc.example.com\x00FML2\x00", False),
        ("mc.example.com.\x00FML3\x00", False),
        ("mc.example.com\\\\8f3d\\\\203.0.113.9", False),
        ("mc.example.com///203.0.113.9:51234///1700000000", False),
        ("_minecraft._tcp.mc.example.com", True),
    ],
)
async def test_routes_every_normalisation_variant_and_replays_bytes_exactly(
    router_factory: RouterFactory,
    backend: FakeBackend,
    handshake_address: str,
    simplify_srv: bool,
) -> None:
    hello = login_hello(handshake_address, "Alex")
    async with (
        router_factory(
            mapping={"mc.example.com": backend.address}, simplify_srv=simplify_srv
        ) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(hello)
        conn = await backend.next_connection()
        # The handshake is never rewritten (spec §4.10): Forge/TCPShield suffixes and case stay.
        assert await read_exactly(conn, len(hello)) == hello
        conn.writer.write(b"from-backend")
        assert await reader.readexactly(12) == b"from-backend"
        writer.write(b"after-login")
        assert await read_exactly(conn, 11) == b"after-login"


async def test_replays_read_ahead_sent_in_the_same_segment(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    # Handshake, status request and ping in one write: all must reach the backend in order.
    data = status_hello("mc.example.com") + bytes.fromhex("09010102030405060708")
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (_, writer),
    ):
        writer.write(data)
        conn = await backend.next_connection()
        assert await read_exactly(conn, len(data)) == data


async def test_replays_login_start_and_following_bytes_from_a_byte_at_a_time_client(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    data = login_hello("mc.example.com", "Steve") + b"encrypted-stuff"
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (_, writer),
    ):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
        conn = await backend.next_connection()
        assert await read_exactly(conn, len(data)) == data


async def test_legacy_ping_is_routed_by_its_host(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    ping = encode_legacy_ping("mc.example.com", 25565)
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(ping)
        conn = await backend.next_connection()
        assert await read_exactly(conn, len(ping)) == ping
        conn.writer.write(b"\xff\x00\x00")
        conn.writer.close()
        assert await read_to_eof(reader) == b"\xff\x00\x00"


async def test_unknown_host_without_default_is_closed_without_a_byte(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with router_factory(mapping={"mc.example.com": backend.address}) as router:
        for hello in (status_hello("other.example.com"), login_hello("other.example.com")):
            async with connect(router.port) as (reader, writer):
                writer.write(hello)
                assert await read_to_eof(reader) == b""
    assert backend.accepted == 0


async def test_unknown_host_goes_to_the_default_route(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    hello = login_hello("whatever.example.org")
    async with (
        router_factory(default=backend.address) as router,
        connect(router.port) as (_, writer),
    ):
        writer.write(hello)
        conn = await backend.next_connection()
        assert await read_exactly(conn, len(hello)) == hello


async def test_half_close_passes_eof_and_keeps_the_other_direction(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    hello = login_hello("mc.example.com")
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(hello + b"last words")
        writer.write_eof()
        conn = await backend.next_connection()
        assert await asyncio.wait_for(conn.reader.read(), 5) == hello + b"last words"
        # The client can still receive after its own EOF.
        conn.writer.write(b"reply after eof")
        await conn.writer.drain()
        assert await reader.readexactly(15) == b"reply after eof"
        conn.writer.close()
        assert await read_to_eof(reader) == b""


async def test_backend_closing_closes_the_client(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with (
        router_factory(mapping={"mc.example.com": backend.address}) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(login_hello("mc.example.com"))
        conn = await backend.next_connection()
        conn.writer.write(b"bye")
        conn.writer.close()
        assert await read_to_eof(reader) == b"bye"


async def test_backend_refusing_closes_the_client_and_counts_backend_failed(
    router_factory: RouterFactory,
) -> None:
    # A port that was just free: connecting to it is refused at once.
    async with FakeBackend() as gone:
        address = gone.address
    async with router_factory(mapping={"mc.example.com": address}) as router:
        errors: list[str] = []
        router.bus.subscribe(lambda e: errors.append(getattr(e, "type", "")))
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("mc.example.com"))
            assert await read_to_eof(reader) == b""
        assert "backend_failed" in errors


async def test_many_routes_each_reach_their_backend(router_factory: RouterFactory) -> None:
    async with FakeBackend() as one, FakeBackend() as two:
        routes = {"one.example.com": one.address, "two.example.com": two.address}
        async with router_factory(mapping=routes) as router:
            for name, server in (("one.example.com", one), ("two.example.com", two)):
                async with connect(router.port) as (_, writer):
                    hello = encode_handshake(770, name, 25565, 1) + b"\x01\x00"
                    writer.write(hello)
                    conn = await server.next_connection()
                    assert await read_exactly(conn, len(hello)) == hello
