"""automc end to end through a real router: a row inserted with SQL routes a real client, and
a login (never a status ping) wakes the server through the control plane."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from mc_router import automc
from mc_router.automc.service import Service
from mc_router.routing import RoutingTable
from mc_router.settings import Settings
from tests.automc.conftest import (
    Database,
    FakeControlPlane,
    TableWatcher,
    running_reply,
    state_reply,
)
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello, read_exactly, read_to_eof, status_hello
from tests.pg import free_port


def automc_settings(db: Database, waker_url: str = "") -> Settings:
    return dataclasses.replace(
        Settings(), automc_dsn=db.dsn, automc_waker_url=waker_url, automc_waker_token="tok"
    )


def wire(db: Database, table: RoutingTable, waker_url: str = "") -> automc.AutoMC:
    handle = automc.wire(automc_settings(db, waker_url), table)
    plane = getattr(handle, "plane", None)
    if plane is not None:
        plane.poll_interval = 0.02
    return handle


async def test_a_row_inserted_with_sql_routes_a_client(
    db: Database, router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with router_factory() as router, wire(db, router.table) as handle:
        watcher = TableWatcher(router.table)
        await db.execute(
            "INSERT INTO servers (name, domain, address) VALUES (%s, %s, %s)",
            ("survival", "survival.example.com", backend.address),
        )
        await watcher.wait_for(lambda: router.table.has_route("survival.example.com"))
        assert handle.in_sync
        hello = login_hello("Survival.Example.com", "Alex")
        async with connect(router.port) as (reader, writer):
            writer.write(hello)
            conn = await backend.next_connection()
            assert await read_exactly(conn, len(hello)) == hello
            conn.writer.write(b"welcome")
            assert await reader.readexactly(7) == b"welcome"


async def test_login_wakes_through_the_control_plane_and_status_does_not(
    db: Database,
    router_factory: RouterFactory,
    mc_backend: FakeBackend,
    control_plane: FakeControlPlane,
) -> None:
    control_plane.status_replies = [state_reply("starting"), running_reply(mc_backend.address)]
    # The row's own address is dead: only the control plane's answer can reach the backend.
    await db.insert(("lobby", "lobby.example.com", f"127.0.0.1:{free_port()}"))
    async with router_factory() as router, wire(db, router.table, control_plane.url):
        watcher = TableWatcher(router.table)
        await watcher.wait_for(lambda: router.table.has_route("lobby.example.com"))

        async with connect(router.port) as (reader, writer):
            writer.write(status_hello("lobby.example.com"))
            await read_to_eof(reader)
        assert control_plane.posts == 0

        hello = login_hello("lobby.example.com", "Steve")
        async with connect(router.port) as (_, writer):
            writer.write(hello)
            conn = await mc_backend.next_connection()
            assert await read_exactly(conn, len(hello)) == hello
        assert ("POST", "/servers/lobby/start", "tok") in control_plane.requests
        assert control_plane.posts == 1


async def test_a_failed_wake_disconnects_the_player_with_the_reason(
    db: Database, router_factory: RouterFactory, control_plane: FakeControlPlane
) -> None:
    control_plane.start_reply = (503, "maintenance")
    await db.insert(("lobby", "lobby.example.com", "127.0.0.1:1"))
    async with router_factory() as router, wire(db, router.table, control_plane.url):
        watcher = TableWatcher(router.table)
        await watcher.wait_for(lambda: router.table.has_route("lobby.example.com"))
        async with connect(router.port) as (reader, writer):
            writer.write(login_hello("lobby.example.com"))
            reply = await read_to_eof(reader)
    # A Login Disconnect: length, packet id 0x00, then a JSON text component.
    text = reply[reply.index(b"{") :].decode()
    assert "control plane answered 503" in json.dumps(json.loads(text))


async def test_routes_keep_working_while_the_database_is_gone(
    db: Database, router_factory: RouterFactory, backend: FakeBackend
) -> None:
    await db.insert(("a", "a.example.com", backend.address))
    async with router_factory() as router, wire(db, router.table) as handle:
        watcher = TableWatcher(router.table)
        await watcher.wait_for(lambda: router.table.has_route("a.example.com"))
        # Kill the router's database session; while it reconnects the route still works.
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'mc-router-automc'"
        )
        hello = login_hello("a.example.com")
        async with connect(router.port) as (_, writer):
            writer.write(hello)
            conn = await backend.next_connection()
            assert await read_exactly(conn, len(hello)) == hello
        # And automc reconnects behind the scenes.
        assert isinstance(handle, Service)
        async with asyncio.timeout(10):
            await handle.sync.wait_until(lambda s: s.connections >= 2 and s.connected)
