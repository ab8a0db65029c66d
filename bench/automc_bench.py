"""automc benchmark: COMMIT -> route usable latency, full resync time, burst coalescing.

Starts a throwaway PostgreSQL cluster (tests/pg.py), runs the real `RouteSync` against a real
`RoutingTable`, and prints the figures. Run from the repo root:

    .venv/bin/python bench/automc_bench.py [--changes 300]

Latency is measured from the moment the writer's autocommit UPDATE returns (the COMMIT is
acknowledged) to the moment the route table's listener sees the new backend -- i.e. the moment
a new connection would be routed there.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mc_router.app import Router
from mc_router.automc import schema
from mc_router.automc.sync import RouteSync
from mc_router.automc.waker import ControlPlane
from mc_router.routing import Route, RoutingTable
from mc_router.settings import Settings
from tests.fakes import FakeBackend, login_hello
from tests.pg import PASSWORD, PASSWORD_USER, PostgresCluster


class Arrivals:
    """A RouteListener that timestamps each (server_address, backend) as it becomes usable."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, str], asyncio.Future[float]] = {}

    def expect(self, key: str, backend: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[(key, backend)] = future
        return future

    def route_added(self, route: Route) -> None:
        future = self.waiting.pop((route.server_address, route.backend), None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    def route_removed(self, route: Route) -> None:
        pass

    def default_route_set(self, route: Route) -> None:
        pass

    def default_route_removed(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [value * 1000 for value in seconds]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def fill(conn: psycopg.AsyncConnection[Any], rows: int) -> None:
    await conn.execute("TRUNCATE servers")
    await conn.execute(
        "INSERT INTO servers (name, domain, address) SELECT 's' || i, 's' || i || '.example.com',"
        " '10.0.0.1:' || (i %% 60000 + 1) FROM generate_series(1, %s) AS i",
        (rows,),
    )


async def latency(dsn: str, rows: int, changes: int) -> dict[str, float]:
    table = RoutingTable()
    arrivals = Arrivals()
    table.subscribe(arrivals)
    sync = RouteSync(dsn, table)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await fill(conn, rows)
        task = asyncio.create_task(sync.run())
        try:
            await asyncio.wait_for(sync.wait_until(lambda s: s.connected), 30)
            samples = []
            for i in range(changes):
                n = random.randint(1, rows)
                backend = f"10.1.{i // 250}.{i % 250}:25565"
                seen = arrivals.expect(f"s{n}.example.com", backend)
                await conn.execute(
                    "UPDATE servers SET address = %s WHERE name = %s", (backend, f"s{n}")
                )
                committed = time.perf_counter()
                samples.append((await asyncio.wait_for(seen, 10)) - committed)
                # Changes arrive one at a time, not as a burst (that is measured separately).
                await asyncio.sleep(random.uniform(0.0, 0.01))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "max_ms": max(samples) * 1000,
        "queries": sync.queries,
    }


async def resync(dsn: str, rows: int) -> dict[str, float]:
    table = RoutingTable()
    arrivals = Arrivals()
    table.subscribe(arrivals)
    sync = RouteSync(dsn, table)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await fill(conn, rows)
        started = time.perf_counter()
        task = asyncio.create_task(sync.run())
        try:
            await asyncio.wait_for(sync.wait_until(lambda s: s.connected), 30)
            initial = time.perf_counter() - started
            initial_query_apply = sync.last_sync_seconds
            assert len(table) == rows
            # Every row changes in one transaction: one notification, one full diff.
            last = arrivals.expect(f"s{rows}.example.com", "10.2.0.1:25565")
            await conn.execute("UPDATE servers SET address = '10.2.0.1:25565'")
            committed = time.perf_counter()
            all_changed = (await asyncio.wait_for(last, 30)) - committed
            await asyncio.wait_for(sync.wait_until(lambda s: s.queries >= 2), 30)
            changed_query_apply = sync.last_sync_seconds
            # A notification that changes nothing: the steady-state cost of one resync.
            await conn.execute("UPDATE servers SET state = 'running' WHERE name = 's1'")
            await asyncio.wait_for(sync.wait_until(lambda s: s.queries >= 3), 30)
            unchanged = sync.last_sync_seconds
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return {
        "startup_to_synced_ms": initial * 1000,
        "initial_query_apply_ms": initial_query_apply * 1000,
        "all_rows_changed_commit_to_usable_ms": all_changed * 1000,
        "all_rows_changed_query_apply_ms": changed_query_apply * 1000,
        "nothing_changed_query_apply_ms": unchanged * 1000,
    }


async def burst(dsn: str, updates: int) -> dict[str, float]:
    table = RoutingTable()
    arrivals = Arrivals()
    table.subscribe(arrivals)
    sync = RouteSync(dsn, table)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await fill(conn, 100)
        task = asyncio.create_task(sync.run())
        try:
            await asyncio.wait_for(sync.wait_until(lambda s: s.connected), 30)
            before = sync.queries
            last_backend = f"10.3.0.1:{updates}"
            last = arrivals.expect(f"s{(updates - 1) % 100 + 1}.example.com", last_backend)
            started = time.perf_counter()
            for i in range(1, updates + 1):
                await conn.execute(
                    "UPDATE servers SET address = %s WHERE name = %s",
                    (f"10.3.0.1:{i}", f"s{(i - 1) % 100 + 1}"),
                )
            written = time.perf_counter()
            await asyncio.wait_for(last, 30)
            settled = time.perf_counter()
            await asyncio.wait_for(sync.wait_until(lambda s: s.notifications >= updates), 30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return {
        "updates": updates,
        "notifications": sync.notifications,
        "queries": sync.queries - before,
        "write_ms": (written - started) * 1000,
        "last_commit_to_usable_ms": (settled - written) * 1000,
    }


def show(title: str, figures: dict[str, float]) -> None:
    print(title)
    for key, value in figures.items():
        print(f"  {key:40} {value:10.1f}" if isinstance(value, float) else f"  {key:40} {value:8}")


class _PlaneWaker:
    """A route's waker backed by one automc ControlPlane (what automc wires per row)."""

    def __init__(self, plane: ControlPlane, name: str) -> None:
        self.plane = plane
        self.name = name

    async def wake(self) -> str:
        return await self.plane.wake(self.name)


async def waker_overhead(samples: int) -> None:
    """Extra latency of the waker for an already running server, against one control-plane
    round trip, and login -> backend through a router with and without the wake."""
    async with FakeBackend(answer_status=True) as backend:
        running = json.dumps({"state": "running", "address": backend.address})

        async def handle(request: web.Request) -> web.Response:
            if request.method == "POST":
                return web.Response(status=409)
            return web.Response(text=running, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        loop = asyncio.get_running_loop()

        async def logins(router: Router, address: str) -> list[float]:
            times = []
            for _ in range(samples // 4):
                start = loop.time()
                _, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(login_hello(address))
                await backend.next_connection()
                times.append(loop.time() - start)
                writer.close()
            return times

        base = dataclasses.replace(
            Settings(),
            listen_host="127.0.0.1",
            port=0,
            connection_rate_limit=10**6,
            drain_timeout=0.1,
        )
        try:
            round_trips, wakes = [], []
            async with aiohttp.ClientSession() as http, ControlPlane(url, "token") as plane:
                for _ in range(samples):
                    start = loop.time()
                    async with http.get(f"{url}/servers/lobby") as response:
                        await response.read()
                    round_trips.append(loop.time() - start)
                    start = loop.time()
                    await plane.wake("lobby")
                    wakes.append(loop.time() - start)
                plain_settings = dataclasses.replace(base, mapping={"a.example": backend.address})
                async with Router(plain_settings) as router:
                    plain = await logins(router, "a.example")
                async with Router(base) as router:
                    router.table.put(Route("b.example", "", waker=_PlaneWaker(plane, "lobby")))
                    woken = await logins(router, "b.example")
        finally:
            await runner.cleanup()
    show("One control-plane round trip (GET):", summary(round_trips))
    show("automc waker for a running server (POST 409 + GET, overlapped):", summary(wakes))
    show("Login -> backend, plain route:", summary(plain))
    show("Login -> backend, automc wake of a running server + readiness ping:", summary(woken))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300, help="latency samples per run")
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the resync run")
    parser.add_argument("--wakes", type=int, default=200, help="waker latency samples")
    args = parser.parse_args()
    with PostgresCluster.create() as cluster:
        name = cluster.create_database("bench")
        dsn = cluster.dsn(name, user=PASSWORD_USER, password=PASSWORD)
        with psycopg.connect(dsn) as conn:
            schema.apply(conn)
        for rows in (100, args.rows):
            figures = await latency(dsn, rows, args.changes)
            show(f"COMMIT -> route usable, {args.changes} single changes, {rows} rows:", figures)
        show(f"Resync of {args.rows} rows:", await resync(dsn, args.rows))
        show("Burst of separate-transaction updates:", await burst(dsn, 1000))
    await waker_overhead(args.wakes)


if __name__ == "__main__":
    asyncio.run(main())
