"""Logins wake sleeping backends; nobody waits in silence (issue #3 §5-6, spec §4.5, §5)."""

from __future__ import annotations

import asyncio
import json

from mc_router.errors import WakeError
from mc_router.events import ErrorObserved, Event
from mc_router.protocol import (
    Frame,
    FrameReader,
    decode_status_response,
    decode_string,
    encode_legacy_ping,
)
from mc_router.routing import Route
from tests.conftest import RouterFactory
from tests.fakes import (
    FakeBackend,
    connect,
    login_hello,
    read_exactly,
    read_to_eof,
    status_hello,
    wait_until,
)


class FakeWaker:
    """A waker the test controls: it returns `address` once `ready` is set."""

    def __init__(self, address: str = "", error: str = "") -> None:
        self.address = address
        self.error = error
        self.calls = 0
        self.ready = asyncio.Event()
        self.called = asyncio.Event()

    async def wake(self) -> str:
        self.calls += 1
        self.called.set()
        await self.ready.wait()
        if self.error:
            raise WakeError(self.error)
        return self.address


async def read_frame(reader: asyncio.StreamReader, frames: FrameReader | None = None) -> Frame:
    frames = frames or FrameReader()
    while True:
        event = frames.next_event()
        if isinstance(event, Frame):
            return event
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "connection closed before a whole frame arrived"
        frames.feed(data)


async def read_kick(reader: asyncio.StreamReader) -> str:
    frame = await read_frame(reader)
    assert frame.packet_id == 0x00  # Login Disconnect
    text, _ = decode_string(frame.payload, 0)
    reason = json.loads(text)
    assert isinstance(reason, dict)
    return str(reason["text"])


async def test_login_is_held_while_the_backend_wakes_then_connected(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    waker = FakeWaker(mc_backend.address)
    hello = login_hello("survival.example.com")
    async with router_factory() as router:
        router.table.put(Route("survival.example.com", "127.0.0.1:1", waker=waker))
        async with connect(router.port) as (_, writer):
            writer.write(hello)
            await asyncio.wait_for(waker.called.wait(), 5)
            assert waker.calls == 1
            assert mc_backend.accepted == 0
            waker.ready.set()
            conn = await mc_backend.next_connection()
            # The woken address replaces the route's for this connection, bytes intact.
            assert await read_exactly(conn, len(hello)) == hello


async def test_concurrent_logins_share_one_wake(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    waker = FakeWaker(mc_backend.address)
    async with router_factory() as router:
        router.table.put(Route("survival.example.com", "", waker=waker))
        writers = []
        for i in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(login_hello("Survival.example.com.", f"p{i}"))
            writers.append(writer)
        await wait_until(lambda: len(router.relay.sessions) == 5)  # all joined the one wake
        waker.ready.set()
        for _ in range(5):
            await mc_backend.next_connection()
        assert waker.calls == 1
        for writer in writers:
            writer.close()


async def test_slow_wake_kicks_with_a_friendly_message_and_keeps_waking(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    waker = FakeWaker(mc_backend.address)
    async with router_factory(auto_scale_hold_budget=0.3) as router:
        router.table.put(Route("survival.example.com", "", waker=waker, label="survival"))
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("survival.example.com"))
            reason = await read_kick(reader)
            assert reason == "survival is starting \u2014 please reconnect in a moment"
            assert await read_to_eof(reader) == b""
        # The wake went on without the player; once done, the retry connects at once.
        finished = asyncio.Event()
        router.relay.wakes.on_finish.append(lambda _: finished.set())
        waker.ready.set()
        await asyncio.wait_for(finished.wait(), 5)
        async with connect(router.port) as (_, writer):
            writer.write(login_hello("survival.example.com"))
            await mc_backend.next_connection()
        assert waker.calls == 2  # a finished wake is not remembered as "running" forever


async def test_kick_gives_an_eta_once_a_wake_time_is_known(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    waker = FakeWaker(mc_backend.address)
    async with router_factory(auto_scale_hold_budget=0.2) as router:
        router.table.put(Route("survival.example.com", "", waker=waker, label="survival"))
        # A first wake that takes about a second teaches the coordinator the route's pace.
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("survival.example.com"))
            await read_kick(reader)
        await asyncio.sleep(0.8)  # the wake's duration, on purpose
        finished = asyncio.Event()
        router.relay.wakes.on_finish.append(lambda _: finished.set())
        waker.ready.set()
        await asyncio.wait_for(finished.wait(), 5)
        waker.ready.clear()
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("survival.example.com"))
            reason = await read_kick(reader)
        assert reason == "survival is starting \u2014 about 1 s left, please reconnect"
        waker.ready.set()


async def test_waker_failure_kicks_with_the_reason(router_factory: RouterFactory) -> None:
    waker = FakeWaker(error="the control plane answered 503")
    waker.ready.set()
    events: list[Event] = []
    async with router_factory() as router:
        router.bus.subscribe(events.append)
        router.table.put(Route("survival.example.com", "", waker=waker, label="survival"))
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("survival.example.com"))
            assert await read_kick(reader) == (
                "survival could not be started: the control plane answered 503"
            )
    assert ErrorObserved("wakeup_failed") in events


async def test_status_pings_never_wake_and_show_asleep_or_loading(
    router_factory: RouterFactory,
) -> None:
    async with FakeBackend() as gone:
        dead = gone.address
    waker = FakeWaker(dead)
    async with router_factory(
        auto_scale_asleep_motd="zzz asleep", auto_scale_loading_motd="starting up"
    ) as router:
        router.table.put(Route("survival.example.com", dead, waker=waker))

        async def ping() -> str:
            async with connect(router.port) as (reader, writer):
                writer.write(
                    status_hello("survival.example.com") + bytes.fromhex("090100000000000000ff")
                )
                frames = FrameReader()
                frame = await read_frame(reader, frames)
                assert frame.packet_id == 0
                status = decode_status_response(frame.payload)
                pong = await read_frame(reader, frames)
                assert (pong.packet_id, pong.payload) == (1, bytes.fromhex("00000000000000ff"))
                description = status["description"]
                assert isinstance(description, dict)
                return str(description["text"])

        assert await ping() == "zzz asleep"
        assert waker.calls == 0
        async with connect(router.port) as (_, writer):
            writer.write(login_hello("survival.example.com"))
            await asyncio.wait_for(waker.called.wait(), 5)
            assert waker.calls == 1
            assert await ping() == "starting up"
            waker.ready.set()
        assert waker.calls == 1


async def test_legacy_ping_to_an_asleep_route_gets_upstreams_exact_answer(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(auto_scale_asleep_motd="zzz") as router:
        router.table.create_mapping("sleepy.example.com", "")
        async with connect(router.port) as (reader, writer):
            writer.write(encode_legacy_ping("sleepy.example.com", 25565))
            # Spec Appendix A: the 0xFF kick for MOTD `zzz`, then the router closes.
            assert await read_to_eof(reader) == bytes.fromhex(
                "ff001300a70031000000310032003700000031002e0037002b0000007a007a007a0000003000000031"
            )


async def test_status_ping_to_an_asleep_route_gets_upstreams_exact_json(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(auto_scale_asleep_motd="Server is asleep") as router:
        router.table.create_mapping("sleepy.example.com", "")
        async with connect(router.port) as (reader, writer):
            writer.write(status_hello("sleepy.example.com", protocol=770))
            frame = await read_frame(reader)
            text, _ = decode_string(frame.payload, 0)
    # Spec Appendix A / §2.7, byte for byte, when nothing is remembered about the server.
    assert text == (
        '{"version":{"name":"1.7+","protocol":770},"players":{"max":1,"online":0},'
        '"description":{"text":"Server is asleep"}}'
    )
