"""Route sync against a real Postgres: changes propagate, bursts coalesce, bad rows are skipped,
other sources are left alone, replicas converge."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mc_router.automc.sync import RouteSync
from mc_router.routing import Route, RoutingTable
from tests.automc.conftest import FAST_SYNC, Database, TableWatcher, logged, running, wait_synced
from tests.pg import PASSWORD, PASSWORD_USER, PostgresCluster


def make_sync(db: Database, table: RoutingTable, **options: object) -> RouteSync:
    return RouteSync(db.dsn, table, **{**FAST_SYNC, **options})


async def test_insert_update_delete_propagate(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert watcher.backends() == {}

        await db.execute(
            "INSERT INTO servers (name, domain, address) VALUES ('a', 'A.example.com', 'a:25565')"
        )
        await watcher.wait_for(lambda: watcher.backends() == {"a.example.com": "a:25565"})
        route = table.lookup("a.example.com").route
        assert route is not None
        assert route.source == "automc"
        assert route.label == "a"  # players see the server's name in kick messages
        assert route.waker is None  # no AUTOMC_WAKER_URL

        await db.execute("UPDATE servers SET address = 'b:25566' WHERE name = 'a'")
        await watcher.wait_for(lambda: watcher.backends() == {"a.example.com": "b:25566"})

        await db.execute("UPDATE servers SET domain = 'c.example.com' WHERE name = 'a'")
        await watcher.wait_for(lambda: watcher.backends() == {"c.example.com": "b:25566"})

        await db.execute("DELETE FROM servers WHERE name = 'a'")
        await watcher.wait_for(lambda: watcher.backends() == {})


async def test_rows_present_at_startup_are_routed(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(("a", "a.example.com", "10.0.0.1:25565"), ("b", "b.example.com", "10.0.0.2:1"))
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert watcher.backends() == {
            "a.example.com": "10.0.0.1:25565",
            "b.example.com": "10.0.0.2:1",
        }
        assert sync.queries == 1


async def test_empty_domain_or_address_is_not_a_route(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(
        ("a", "", "10.0.0.1:25565"), ("b", "b.example.com", ""), ("c", "c.example.com", "c:1")
    )
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert watcher.backends() == {"c.example.com": "c:1"}
        await db.execute("UPDATE servers SET address = 'b:2' WHERE name = 'b'")
        await watcher.wait_for(lambda: "b.example.com" in watcher.backends())
        await db.execute("UPDATE servers SET address = '' WHERE name = 'b'")
        await watcher.wait_for(lambda: "b.example.com" not in watcher.backends())


async def test_truncate_removes_every_route(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(("a", "a.example.com", "a:1"), ("b", "b.example.com", "b:1"))
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert len(watcher.backends()) == 2
        await db.execute("TRUNCATE servers")
        await watcher.wait_for(lambda: watcher.backends() == {})


async def test_bad_rows_are_logged_once_and_skipped_and_the_rest_apply(
    db: Database, table: RoutingTable, watcher: TableWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.automc")
    await db.insert(
        ("good", "good.example.com", "10.0.0.1:25565"),
        ("noport", "noport.example.com", "10.0.0.2"),
        ("badport", "badport.example.com", "10.0.0.3:99999"),
        ("v6", "v6.example.com", "::1:25565"),
        ("space", "space example.com", "10.0.0.4:1"),
        ("withport", "withport.example.com:25565", "10.0.0.5:1"),
        ("dup-b", "Dup.example.com", "10.0.0.7:1"),
        ("dup-a", "dup.example.com", "10.0.0.6:1"),
    )
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        # Case-only duplicates: the smaller name wins, on every replica.
        assert watcher.backends() == {
            "good.example.com": "10.0.0.1:25565",
            "dup.example.com": "10.0.0.6:1",
        }
        skipped = {r.fields["server"]: r.fields["error"] for r in caplog.records}  # type: ignore[attr-defined]
        assert set(skipped) == {"noport", "badport", "v6", "space", "withport", "dup-b"}
        assert "missing a port" in skipped["noport"]
        assert "invalid port" in skipped["badport"]
        assert "IPv6" in skipped["v6"]
        assert "already used by server 'dup-a'" in skipped["dup-b"]

        # Another change: the still-bad rows are not logged again.
        caplog.clear()
        await db.execute(
            "INSERT INTO servers (name, domain, address) VALUES ('new', 'new.example.com', 'n:1')"
        )
        await watcher.wait_for(lambda: "new.example.com" in watcher.backends())
        assert caplog.records == []

        # A fixed row is applied.
        await db.execute("UPDATE servers SET address = '10.0.0.2:25565' WHERE name = 'noport'")
        await watcher.wait_for(lambda: "noport.example.com" in watcher.backends())


async def test_routes_of_other_sources_are_never_touched(
    db: Database, table: RoutingTable, watcher: TableWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    table.create_mapping("static.example.com", "static:1", source="mapping")
    table.create_mapping("api.example.com", "api:1", source="api")
    table.set_default_route("default:1", source="default")
    await db.insert(("s", "static.example.com", "automc:1"), ("x", "x.example.com", "x:1"))
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert table.mappings()["static.example.com"].backend == "static:1"
        reported = [r.fields for r in caplog.records if r.getMessage() == "automc: skipping route"]  # type: ignore[attr-defined]
        assert [f["server_address"] for f in reported] == ["static.example.com"]
        await db.execute("DELETE FROM servers")
        await watcher.wait_for(lambda: watcher.backends() == {})
    assert {r.server_address: r.backend for r in table} == {
        "static.example.com": "static:1",
        "api.example.com": "api:1",
    }
    assert table.default_route is not None
    assert table.default_route.backend == "default:1"


async def test_a_resync_without_changes_notifies_no_listener(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(make_sync(db, table, waker_for=_Waker)) as sync:
        await wait_synced(sync)
        before = watcher.changes
        waker = table.mappings()["a.example.com"].waker
        # `state` fires the trigger but changes no route.
        await db.execute("UPDATE servers SET state = 'running' WHERE name = 'a'")
        await asyncio.wait_for(sync.wait_until(lambda s: s.queries >= 2), 10)
        assert watcher.changes == before
        assert table.mappings()["a.example.com"].waker is waker


async def test_ten_thousand_rows_sync(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.execute(
        "INSERT INTO servers (name, domain, address) "
        "SELECT 's' || i, 's' || i || '.example.com',"
        " '10.0.' || (i / 256) || '.' || (i % 256) || ':25565' FROM generate_series(1, 10000) AS i"
    )
    async with running(make_sync(db, table)) as sync:
        started = time.perf_counter()
        await wait_synced(sync, timeout=30)
        assert len(table) == 10_000
        assert table.lookup("s9999.example.com").backend == "10.0.39.15:25565"
        # Generous bound for slow CI; bench/automc_bench.py measures it properly.
        assert time.perf_counter() - started < 10
        await db.execute("UPDATE servers SET address = 'moved:1' WHERE name = 's5000'")
        await watcher.wait_for(lambda: table.lookup("s5000.example.com").backend == "moved:1")
        assert len(table) == 10_000


async def test_a_burst_of_updates_coalesces_into_few_queries(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(*[(f"s{i}", f"s{i}.example.com", "10.0.0.1:1") for i in range(100)])
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert sync.queries == 1
        # 1,000 separate transactions, each notifying: one route changed per commit.
        for i in range(1000):
            await db.execute(
                f"UPDATE servers SET address = '10.0.1.1:{i + 1}' WHERE name = 's{i % 100}'"
            )
        await watcher.wait_for(lambda: table.lookup("s99.example.com").backend == "10.0.1.1:1000")
        await asyncio.wait_for(sync.wait_until(lambda s: s.notifications >= 1000), 10)
        assert sync.notifications >= 1000
        # Far fewer queries than notifications (typically a handful, one per 50 ms of burst).
        assert sync.queries < 100, sync.queries


async def test_one_transaction_with_many_changes_is_one_query(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        await db.execute(
            "INSERT INTO servers (name, domain, address) "
            "SELECT 'r' || i, 'r' || i || '.example.com', 'h:' || i"
            " FROM generate_series(1, 1000) AS i"
        )
        await watcher.wait_for(lambda: len(table) == 1000)
        assert sync.queries == 2


async def test_two_routers_on_one_database_converge(db: Database) -> None:
    first, second = RoutingTable(), RoutingTable()
    watchers = TableWatcher(first), TableWatcher(second)
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(make_sync(db, first)) as one, running(make_sync(db, second)) as two:
        await wait_synced(one)
        await wait_synced(two)
        await db.execute(
            "INSERT INTO servers (name, domain, address) VALUES ('b', 'b.example.com', 'b:1')"
        )
        await db.execute("UPDATE servers SET address = 'a:2' WHERE name = 'a'")
        await db.execute("DELETE FROM servers WHERE name = 'b'")
        await db.execute(
            "INSERT INTO servers (name, domain, address) VALUES ('c', 'c.example.com', 'c:1')"
        )
        want = {"a.example.com": "a:2", "c.example.com": "c:1"}
        for w in watchers:
            await w.wait_for(lambda w=w: w.backends() == want)  # type: ignore[misc]


@pytest.mark.parametrize("form", ["keywords", "url"])
async def test_password_dsn_in_both_forms(
    db: Database, table: RoutingTable, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mc_router.automc")
    cluster = db.cluster
    dsn = (
        cluster.dsn(db.name, user=PASSWORD_USER, password=PASSWORD)
        if form == "keywords"
        else cluster.url(db.name, user=PASSWORD_USER, password=PASSWORD)
    )
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(RouteSync(dsn, table, **FAST_SYNC)) as sync:
        await wait_synced(sync)
    assert table.lookup("a.example.com").backend == "a:1"
    text = logged(caplog)
    assert PASSWORD not in text
    assert f"user={PASSWORD_USER}" in text


async def test_wrong_password_is_retried_and_never_logged(
    db: Database, table: RoutingTable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mc_router.automc")
    secret = "wr0ng-s3cret"
    sync = RouteSync(
        db.cluster.url(db.name, user=PASSWORD_USER, password=secret),
        table,
        **FAST_SYNC,
    )
    async with running(sync):
        async with asyncio.timeout(10):
            # Keeps retrying; the same failure is logged at warning level once.
            await sync.wait_until(lambda s: s.failures >= 4)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Postgres unreachable, retrying" in warnings[0].getMessage()
    text = logged(caplog)
    assert "password authentication failed" in text
    assert secret not in text
    assert not sync.synced


class _Waker:
    def __init__(self, name: str) -> None:
        self.name = name

    async def wake(self) -> str:
        return ""


async def test_a_route_removed_behind_automcs_back_returns_on_the_next_sync(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        table.remove_mapping("a.example.com")
        await db.execute("UPDATE servers SET state = 'starting' WHERE name = 'a'")
        await watcher.wait_for(lambda: watcher.backends() == {"a.example.com": "a:1"})


async def test_an_address_released_by_another_source_is_taken_on_the_next_sync(
    db: Database, table: RoutingTable, watcher: TableWatcher
) -> None:
    table.create_mapping("a.example.com", "static:1", source="mapping")
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(make_sync(db, table)) as sync:
        await wait_synced(sync)
        assert watcher.backends() == {}
        table.remove_mapping("a.example.com")
        await db.execute("UPDATE servers SET state = 'starting' WHERE name = 'a'")
        await watcher.wait_for(lambda: watcher.backends() == {"a.example.com": "a:1"})


async def test_a_missing_schema_says_how_to_fix_it(
    pg_cluster: PostgresCluster, table: RoutingTable, caplog: pytest.LogCaptureFixture
) -> None:
    name = pg_cluster.create_database()
    dsn = pg_cluster.dsn(name, user=PASSWORD_USER, password=PASSWORD)
    async with running(RouteSync(dsn, table, **FAST_SYNC)) as sync:
        async with asyncio.timeout(10):
            await sync.wait_until(lambda s: s.failures >= 3)
        assert not sync.synced
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["automc: route query failed, retrying"]
    assert "mc-router automc init-db" in logged(caplog)
    assert 'relation "servers" does not exist' in logged(caplog)


async def test_a_bug_in_a_listener_is_logged_with_its_traceback_and_retried(
    db: Database, table: RoutingTable, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(TableWatcher):
        def route_added(self, route: Route) -> None:
            raise RuntimeError("listener bug")

    Broken(table)
    await db.insert(("a", "a.example.com", "a:1"))
    async with running(make_sync(db, table)) as sync:
        async with asyncio.timeout(10):
            await sync.wait_until(lambda s: s.failures >= 1)
            # The retry resyncs; the route went in before the listener raised.
            await sync.wait_until(lambda s: s.connected)
        assert table.lookup("a.example.com").backend == "a:1"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
