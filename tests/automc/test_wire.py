"""The one call app.py makes: inert without AUTOMC_DSN, a running extension with it."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from mc_router import automc
from mc_router.errors import ConfigError
from mc_router.routing import RoutingTable
from mc_router.settings import Settings
from tests.automc.conftest import (
    FAST_SYNC,
    Database,
    FakeControlPlane,
    TableWatcher,
    running_reply,
    state_reply,
)
from tests.pg import free_port


def settings(**values: Any) -> Settings:
    return dataclasses.replace(Settings(), **values)


async def test_without_dsn_nothing_happens(table: RoutingTable) -> None:
    table.create_mapping("a.example.com", "a:1")
    tasks_before = asyncio.all_tasks()
    handle = automc.wire(
        settings(automc_waker_url="http://127.0.0.1:1", automc_waker_token="x"), table
    )
    assert type(handle) is automc.AutoMC
    assert not handle.enabled
    async with handle as entered:
        assert entered is handle
        assert handle.in_sync
        assert not handle.connected
        assert asyncio.all_tasks() == tasks_before
    assert [(r.server_address, r.backend, r.source) for r in table] == [
        ("a.example.com", "a:1", "static")
    ]


def test_without_dsn_psycopg_and_aiohttp_are_never_imported() -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from mc_router import automc
        from mc_router.routing import RoutingTable

        class S:
            automc_dsn = ""
            automc_waker_url = "http://example.invalid"
            automc_waker_token = "t"

        async def main():
            async with automc.wire(S(), RoutingTable()) as handle:
                assert handle.in_sync
        asyncio.run(main())
        loaded = sorted(m for m in ("psycopg", "aiohttp", "yarl") if m in sys.modules)
        print(",".join(loaded) or "none")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "none"


def test_bad_dsn_stops_startup(table: RoutingTable) -> None:
    with pytest.raises(ConfigError, match="invalid AUTOMC_DSN") as caught:
        automc.wire(settings(automc_dsn="host=db password=hunter2 nonsense=1"), table)
    assert "hunter2" not in str(caught.value)


def test_bad_waker_url_stops_startup(table: RoutingTable) -> None:
    with pytest.raises(ConfigError, match="AUTOMC_WAKER_URL"):
        automc.wire(settings(automc_dsn="host=db", automc_waker_url="db:8080"), table)


async def test_unreachable_database_does_not_delay_startup(table: RoutingTable) -> None:
    handle = automc.wire(settings(automc_dsn=f"host=127.0.0.1 port={free_port()}"), table)
    assert handle.enabled
    async with asyncio.timeout(1):
        async with handle:
            assert not handle.in_sync
            assert not handle.connected


async def test_enabled_routes_wake_through_the_control_plane(
    db: Database, table: RoutingTable, watcher: TableWatcher, control_plane: FakeControlPlane
) -> None:
    control_plane.status_replies = [state_reply("starting"), running_reply("10.9.9.9:25565")]
    await db.insert(("lobby", "lobby.example.com", "10.0.0.1:25565"))
    handle = automc.wire(
        settings(
            automc_dsn=db.dsn,
            automc_waker_url=control_plane.url,
            automc_waker_token="s3cret-token",
        ),
        table,
    )
    from mc_router.automc.service import Service  # noqa: PLC0415 -- only loaded when enabled

    assert isinstance(handle, Service)
    # Tuning for the test only: the same objects app.py gets, polled faster.
    handle.sync.backoff_initial = FAST_SYNC["backoff_initial"]
    assert handle.plane is not None
    handle.plane.poll_interval = 0.02
    async with handle:
        await watcher.wait_for(lambda: "lobby.example.com" in watcher.backends())
        assert handle.in_sync
        assert handle.connected
        route = table.lookup("lobby.example.com").route
        assert route is not None
        assert route.backend == "10.0.0.1:25565"
        assert route.waker is not None
        # Only a login calls wake(); the session dials what it returns, for that connection.
        assert await route.waker.wake() == "10.9.9.9:25565"
        assert table.lookup("lobby.example.com").backend == "10.0.0.1:25565"
        assert ("POST", "/servers/lobby/start", "s3cret-token") in control_plane.requests
    assert not handle.connected
    assert handle.in_sync  # the routes stay; readiness does not flap on shutdown
