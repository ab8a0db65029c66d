"""Postgres going away: the router starts anyway, keeps the last known routes, recovers fully."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from mc_router.automc.sync import RouteSync
from mc_router.routing import RoutingTable
from tests.automc.conftest import (
    FAST_SYNC,
    Database,
    TableWatcher,
    create_database,
    logged,
    running,
    wait_synced,
)
from tests.pg import PASSWORD, PostgresCluster


async def silently(cluster: PostgresCluster, db: str, *statements: str) -> None:
    """Change rows with triggers off (no NOTIFY), over the unix socket: only a full resync
    can discover these changes."""
    conn = await psycopg.AsyncConnection.connect(cluster.admin_dsn(db), autocommit=True)
    async with conn:
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)


async def test_postgres_restart_keeps_routes_and_resyncs_changes_made_meanwhile(
    own_cluster: PostgresCluster, table: RoutingTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mc_router.automc")
    cluster = own_cluster
    cluster.start()
    db = create_database(cluster)
    watcher = TableWatcher(table)
    table.create_mapping("static.example.com", "static:1", source="mapping")
    await db.insert(("a", "a.example.com", "a:1"), ("b", "b.example.com", "b:1"))
    await db.close()
    async with running(RouteSync(db.dsn, table, **FAST_SYNC)) as sync:
        await wait_synced(sync)
        assert watcher.backends() == {"a.example.com": "a:1", "b.example.com": "b:1"}

        cluster.stop()
        async with asyncio.timeout(10):
            await sync.wait_until(lambda s: not s.connected)
        # Still routing with the last known routes while the database is down.
        assert table.lookup("a.example.com").backend == "a:1"
        assert table.lookup("static.example.com").backend == "static:1"

        # Changes while the router cannot reach the database (TCP off), made without NOTIFY.
        cluster.start(tcp=False)
        await silently(
            cluster,
            db.name,
            "UPDATE servers SET address = 'a:2' WHERE name = 'a'",
            "DELETE FROM servers WHERE name = 'b'",
            "INSERT INTO servers (name, domain, address) VALUES ('c', 'c.example.com', 'c:1')",
        )
        cluster.stop()
        cluster.start()
        await watcher.wait_for(
            lambda: watcher.backends() == {"a.example.com": "a:2", "c.example.com": "c:1"}
        )
        assert sync.connected
        assert table.lookup("static.example.com").backend == "static:1"

        # And notifications flow again on the new connection.
        await db.execute("UPDATE servers SET address = 'c:2' WHERE name = 'c'")
        await watcher.wait_for(lambda: watcher.backends().get("c.example.com") == "c:2")
        await db.close()

    text = logged(caplog)
    assert "automc: lost the Postgres connection; keeping the last known routes" in text
    assert "automc: reconnected to Postgres and resynced" in text
    assert PASSWORD not in text


async def test_router_starts_without_postgres_and_syncs_once_it_appears(
    own_cluster: PostgresCluster, table: RoutingTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mc_router.automc")
    cluster = own_cluster
    # The DSN points at the cluster's port, where nothing listens yet.
    dsn = cluster.dsn("t_1", user="automc_pw", password=PASSWORD)
    watcher = TableWatcher(table)
    table.create_mapping("static.example.com", "static:1", source="mapping")
    async with running(RouteSync(dsn, table, **FAST_SYNC)) as sync:
        async with asyncio.timeout(10):
            await sync.wait_until(lambda s: s.failures >= 3)
        assert not sync.synced
        assert table.lookup("static.example.com").backend == "static:1"
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1, "the same failure is logged once"
        assert "serving the other routes meanwhile" in unreachable[0].getMessage()

        cluster.start()
        db = create_database(cluster)
        assert db.name == "t_1"
        await db.insert(("a", "a.example.com", "a:1"))
        await watcher.wait_for(lambda: watcher.backends() == {"a.example.com": "a:1"})
        await wait_synced(sync)
        await db.close()


async def test_idle_probe_notices_a_connection_killed_by_the_server(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    sync = RouteSync(db.dsn, table, **{**FAST_SYNC, "idle_check": 0.05})
    async with running(sync):
        await wait_synced(sync)
        connections = sync.connections
        # An administrator (or a pooler) terminates the router's backend.
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'mc-router-automc'"
        )
        async with asyncio.timeout(10):
            await sync.wait_until(lambda s: s.connections > connections)
        await db.execute("INSERT INTO servers (name, domain, address) VALUES ('a', 'a.com', 'a:1')")
        await watcher.wait_for(lambda: watcher.backends() == {"a.com": "a:1"})
