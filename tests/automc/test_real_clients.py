"""automc with real third-party peers: an npm minecraft-protocol login through a wake, and
mcstatus showing the asleep and loading MOTDs (issue #3)."""

from __future__ import annotations

import asyncio

from mc_router.app import Router
from tests.automc.conftest import (
    Database,
    FakeControlPlane,
    TableWatcher,
    running_reply,
    state_reply,
)
from tests.conftest import RouterFactory
from tests.pg import free_port
from tests.thirdparty import mc_login, mc_server, mcstatus_motd_text, mcstatus_ping


async def _with_route(router: Router, db: Database, name: str, domain: str) -> None:
    plane = getattr(router.automc, "plane", None)
    if plane is not None:
        plane.poll_interval = 0.05
    watcher = TableWatcher(router.table)
    # The row's own address is dead: only the control plane's answer reaches the server.
    await db.insert((name, domain, f"127.0.0.1:{free_port()}"))
    await watcher.wait_for(lambda: router.table.has_route(domain))


async def test_npm_client_logs_in_through_a_wake(
    db: Database, router_factory: RouterFactory, control_plane: FakeControlPlane
) -> None:
    async with mc_server(motd="Lobby") as server:
        control_plane.status_replies = [
            state_reply("starting"),
            state_reply("starting"),
            running_reply(f"127.0.0.1:{server.port}"),
        ]
        async with router_factory(automc_dsn=db.dsn, automc_waker_url=control_plane.url) as router:
            await _with_route(router, db, "lobby", "lobby.example.com")
            outcome = await mc_login(
                "127.0.0.1",
                router.port,
                handshake_host="lobby.example.com",
                username="Alex",
                timeout=20,
            )
            assert outcome["event"] == "login", outcome
            login = await server.wait_for("login", username="Alex")
            assert login["handshakeHost"] == "lobby.example.com"
    assert control_plane.posts == 1


async def test_npm_client_is_told_to_reconnect_when_the_start_is_slow(
    db: Database, router_factory: RouterFactory, control_plane: FakeControlPlane
) -> None:
    async with mc_server(motd="Lobby") as server:
        control_plane.status_replies = [state_reply("starting")]
        async with router_factory(
            automc_dsn=db.dsn, automc_waker_url=control_plane.url, auto_scale_hold_budget=1.0
        ) as router:
            await _with_route(router, db, "lobby", "lobby.example.com")
            outcome = await mc_login(
                "127.0.0.1", router.port, handshake_host="lobby.example.com", username="Alex"
            )
            assert outcome["event"] == "kicked", outcome
            assert outcome["text"] == "lobby is starting \u2014 please reconnect in a moment"
            # The wake went on; once the server runs, the player's retry connects at once.
            control_plane.status_replies = [running_reply(f"127.0.0.1:{server.port}")]
            outcome = await mc_login(
                "127.0.0.1",
                router.port,
                handshake_host="lobby.example.com",
                username="Alex",
                timeout=20,
            )
            assert outcome["event"] == "login", outcome
    # One POST if the retry joined the wake in flight, two if that wake had already finished
    # (each login asks the control plane once, as upstream's scaler does).
    assert control_plane.posts in (1, 2)


async def test_npm_client_hears_why_a_wake_failed(
    db: Database, router_factory: RouterFactory, control_plane: FakeControlPlane
) -> None:
    control_plane.start_reply = (503, "maintenance")
    async with router_factory(automc_dsn=db.dsn, automc_waker_url=control_plane.url) as router:
        await _with_route(router, db, "lobby", "lobby.example.com")
        outcome = await mc_login(
            "127.0.0.1", router.port, handshake_host="lobby.example.com", username="Alex"
        )
    assert outcome["event"] == "kicked", outcome
    assert outcome["text"].startswith("lobby could not be started: ")
    assert "503" in outcome["text"]


async def test_mcstatus_shows_asleep_then_loading_motd(
    db: Database, router_factory: RouterFactory, control_plane: FakeControlPlane
) -> None:
    control_plane.start_gate = asyncio.Event()
    async with router_factory(
        automc_dsn=db.dsn,
        automc_waker_url=control_plane.url,
        auto_scale_asleep_motd="lobby is asleep - join to wake it",
        auto_scale_loading_motd="lobby is starting...",
    ) as router:
        await _with_route(router, db, "lobby", "lobby.example.com")
        status = await mcstatus_ping("127.0.0.1", router.port, "lobby.example.com")
        assert mcstatus_motd_text(status) == "lobby is asleep - join to wake it"
        assert control_plane.posts == 0  # a ping never wakes
        login = asyncio.create_task(
            mc_login("127.0.0.1", router.port, handshake_host="lobby.example.com", timeout=15)
        )
        try:
            await asyncio.wait_for(control_plane.started.wait(), 10)
            status = await mcstatus_ping("127.0.0.1", router.port, "lobby.example.com")
            assert mcstatus_motd_text(status) == "lobby is starting..."
            assert status.version.protocol == 765  # the client's own: shown as compatible
        finally:
            control_plane.start_reply = (503, "")
            control_plane.start_gate.set()
            await login
