"""Scale to zero through a real router (issue #5): upstream's webhook scaler, readiness by
status ping, one wake for concurrent logins, friendly kicks, a truthful asleep entry, idle
timers driven by players, allow/deny and the status cache."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from mc_router.events import BackendConnected, ConnectionClosed, Event
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello, read_to_eof, status_hello, wait_until
from tests.mgmt_helpers import Receiver
from tests.relay.test_waking import read_kick
from tests.scaling.helpers import StatusServer
from tests.thirdparty import mc_login, mc_server, mcstatus_motd_text, mcstatus_ping

PING = bytes.fromhex("09010000000000000001")
FAVICON = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake icon").decode()


async def _actions(receiver: Receiver, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
    return [(await receiver.next(timeout)).json for _ in range(count)]


async def test_login_waits_for_a_status_answer_not_just_an_open_port(
    router_factory: RouterFactory,
) -> None:
    connected = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, BackendConnected) and event.login:
            connected.set()

    async with Receiver() as receiver, StatusServer(mode="silent") as server:
        await server.listen()  # the port is open, but the server does not answer yet
        async with router_factory(
            auto_scale_webhook_url=receiver.url, mapping={"mc.example.com": server.address}
        ) as router:
            router.bus.subscribe(on_event)
            async with connect(router.port) as (_, writer):
                writer.write(login_hello("mc.example.com"))
                await asyncio.wait_for(server.accepted.get(), 5)  # a readiness probe
                await asyncio.sleep(0.5)
                assert not connected.is_set()
                server.release.set()  # now it answers status: the login is let through
                await asyncio.wait_for(connected.wait(), 5)


async def test_concurrent_logins_cause_one_wake_request(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    async with Receiver() as receiver:
        receiver.gate.clear()  # hold the `up` so every login arrives during one wake
        async with router_factory(
            auto_scale_webhook_url=receiver.url,
            auto_scale_down_after=3600,
            mapping={"MC.example.com": mc_backend.address},
        ) as router:
            writers = []
            for i in range(5):
                _, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(login_hello("mc.example.com", f"p{i}"))
                writers.append(writer)
            await asyncio.wait_for(receiver.arrived.wait(), 5)
            await wait_until(lambda: len(router.relay.sessions) == 5)  # all joined the one wake
            receiver.gate.set()
            for _ in range(5):
                await mc_backend.next_connection()
            (up,) = await _actions(receiver, 1)
            # Upstream's request body, byte for byte: the address as written, the backend.
            assert up == {
                "action": "up",
                "serverAddress": "MC.example.com",
                "backend": mc_backend.address,
            }
            assert receiver.deliveries.empty()
            for writer in writers:
                writer.close()


async def test_slow_start_kicks_the_real_client_then_the_retry_connects(
    router_factory: RouterFactory,
) -> None:
    async with Receiver() as receiver, mc_server(motd="Survival") as server:
        receiver.gate.clear()
        async with router_factory(
            auto_scale_webhook_url=receiver.url,
            auto_scale_down_after=3600,
            auto_scale_hold_budget=1.0,
            mapping={"survival.example.com": f"127.0.0.1:{server.port}"},
        ) as router:
            outcome = await mc_login(
                "127.0.0.1", router.port, handshake_host="survival.example.com"
            )
            assert outcome["event"] == "kicked", outcome
            assert outcome["text"] == (
                "survival.example.com is starting \u2014 please reconnect in a moment"
            )
            receiver.gate.set()
            outcome = await mc_login(
                "127.0.0.1", router.port, handshake_host="survival.example.com", timeout=20
            )
            assert outcome["event"] == "login", outcome


async def test_asleep_entry_shows_the_remembered_real_status(
    router_factory: RouterFactory,
) -> None:
    async with Receiver() as receiver:
        receiver.status = 500  # waking fails: the entry must still tell the truth
        async with mc_server(motd="Survival", max_players=33, favicon=FAVICON) as server:
            address = f"127.0.0.1:{server.port}"
            async with router_factory(
                auto_scale_webhook_url=receiver.url,
                auto_scale_asleep_motd="Survival is asleep - join to wake it",
                mapping={"survival.example.com": address},
            ) as router:
                awake = await mcstatus_ping("127.0.0.1", router.port, "survival.example.com")
                assert mcstatus_motd_text(awake) == "Survival"
                server.process.terminate()
                await server.process.wait()
                asleep = await mcstatus_ping("127.0.0.1", router.port, "survival.example.com")
        assert mcstatus_motd_text(asleep) == "Survival is asleep - join to wake it"
        assert asleep.version.name == awake.version.name
        assert asleep.players.max == 33
        assert asleep.players.online == 0
        assert asleep.icon == awake.icon == FAVICON


async def test_idle_means_no_players_pings_never_keep_a_server_awake(
    router_factory: RouterFactory, mc_backend: FakeBackend
) -> None:
    closed = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, ConnectionClosed) and event.login:
            closed.set()

    loop = asyncio.get_running_loop()
    async with (
        Receiver() as receiver,
        router_factory(
            auto_scale_webhook_url=receiver.url,
            auto_scale_down_after=0.5,
            mapping={"mc.example.com": mc_backend.address},
        ) as router,
    ):
        router.bus.subscribe(on_event)
        start = loop.time()
        # Pings every 100 ms do not restart the timer (upstream's Q20)...
        for _ in range(8):
            async with connect(router.port) as (reader, writer):
                writer.write(status_hello("mc.example.com") + PING)
                await read_to_eof(reader)
            await asyncio.sleep(0.1)
        (down,) = await _actions(receiver, 1)
        assert down["action"] == "down"
        assert loop.time() - start < 1.5
        # ...a logged-in player does: no `down` while connected.
        async with connect(router.port) as (_, writer):
            writer.write(login_hello("mc.example.com"))
            conn = await mc_backend.next_connection()
            (up,) = await _actions(receiver, 1)
            assert up["action"] == "up"
            await asyncio.sleep(1.0)
            assert receiver.deliveries.empty()
            conn.writer.close()
        await asyncio.wait_for(closed.wait(), 5)
        left = loop.time()
        (down,) = await _actions(receiver, 1)
        assert down["action"] == "down"
        assert 0.4 < loop.time() - left < 2.0


async def test_refused_player_does_not_wake_and_is_told(
    router_factory: RouterFactory, tmp_path: Path
) -> None:
    lists = tmp_path / "allow-deny.json"
    lists.write_text(json.dumps({"global": {"allowlist": [{"name": "Alex"}]}}))
    async with FakeBackend() as gone:
        dead = gone.address
    async with (
        Receiver() as receiver,
        router_factory(
            auto_scale_webhook_url=receiver.url,
            auto_scale_down_after=3600,
            auto_scale_allow_deny=str(lists),
            mapping={"mc.example.com": dead},
        ) as router,
    ):
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("mc.example.com", "Steve"))
            assert await read_kick(reader) == ("mc.example.com is asleep, and you may not wake it")
        assert receiver.deliveries.empty()
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("mc.example.com", "Alex"))
            (up,) = await _actions(receiver, 1)
            assert up["action"] == "up"


async def test_status_cache_shares_one_fetch_and_serves_stale_on_failure(
    router_factory: RouterFactory,
) -> None:
    async with FakeBackend(answer_status=True) as backend:
        address = backend.address
        async with router_factory(
            status_cache_ttl=0.3, mapping={"mc.example.com": address}
        ) as router:

            async def ping() -> bytes:
                async with connect(router.port) as (reader, writer):
                    writer.write(status_hello("mc.example.com") + PING)
                    return await read_to_eof(reader)

            answers = await asyncio.gather(*(ping() for _ in range(10)))
            assert backend.status_pings == 1
            assert all(b"fake backend" in answer for answer in answers)
            await backend.__aexit__(None, None, None)
            await asyncio.sleep(0.4)  # past the TTL, within the stale bound
            assert b"fake backend" in await ping()
