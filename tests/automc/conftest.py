"""automc fixtures: a real throwaway Postgres, a scripted HTTP control plane, table watchers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from aiohttp import web

from mc_router.automc import schema
from mc_router.automc.sync import RouteSync
from mc_router.logs import LogfmtFormatter
from mc_router.routing import Route, RoutingTable
from tests.pg import PASSWORD, PASSWORD_USER, PostgresCluster

# Tuned for tests: react fast, retry fast, probe an idle connection often.
FAST_SYNC: dict[str, Any] = {"backoff_initial": 0.02, "backoff_max": 0.2, "idle_check": 0.5}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the whole session; each test gets its own database."""
    with PostgresCluster.create() as cluster:
        yield cluster


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A private cluster, for tests that stop and start the server. Not started."""
    with PostgresCluster.create(start=False) as cluster:
        yield cluster


@dataclass
class Database:
    """A fresh database with the automc schema, owned by the password user."""

    cluster: PostgresCluster
    name: str
    conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    @property
    def dsn(self) -> str:
        """What a router is configured with: the password user, over TCP."""
        return self.cluster.dsn(self.name, user=PASSWORD_USER, password=PASSWORD)

    async def execute(self, query: str, params: Any = None) -> None:
        """Run one statement in its own transaction (autocommit)."""
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await self.conn.execute(query.encode() if params is None else query, params)

    async def insert(self, *rows: tuple[str, str, str]) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        async with self.conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO servers (name, domain, address) VALUES (%s, %s, %s)", rows
            )

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def create_database(cluster: PostgresCluster) -> Database:
    name = cluster.create_database()
    with psycopg.connect(cluster.dsn(name, user=PASSWORD_USER, password=PASSWORD)) as conn:
        schema.apply(conn)
    return Database(cluster, name)


@pytest.fixture
async def db(pg_cluster: PostgresCluster) -> AsyncIterator[Database]:
    database = create_database(pg_cluster)
    try:
        yield database
    finally:
        await database.close()


class TableWatcher:
    """Wakes waiters on every route-table change: `await watcher.wait_for(lambda: ...)`."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.changes = 0
        self._event = asyncio.Event()
        self.unsubscribe = table.subscribe(self)

    def _changed(self) -> None:
        self.changes += 1
        self._event.set()

    def route_added(self, route: Route) -> None:
        self._changed()

    def route_removed(self, route: Route) -> None:
        self._changed()

    def default_route_set(self, route: Route) -> None:
        self._changed()

    def default_route_removed(self) -> None:
        self._changed()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._event.clear()
                await self._event.wait()

    def backends(self, source: str = "automc") -> dict[str, str]:
        return {r.server_address: r.backend for r in self.table if r.source == source}


@pytest.fixture
def table() -> RoutingTable:
    return RoutingTable()


@pytest.fixture
def watcher(table: RoutingTable) -> Iterator[TableWatcher]:
    w = TableWatcher(table)
    yield w
    w.unsubscribe()


@contextlib.asynccontextmanager
async def running(sync: RouteSync) -> AsyncIterator[RouteSync]:
    """Run `sync` in the background for the duration of the block."""
    task = asyncio.create_task(sync.run())
    try:
        yield sync
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_synced(sync: RouteSync, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        await sync.wait_until(lambda s: s.connected)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as printed, plus its raw fields (so a secret that only the
    formatter would mask still shows up here)."""
    formatter = LogfmtFormatter()
    return "\n".join(
        f"{formatter.format(r)} raw={getattr(r, 'fields', {})!r}" for r in caplog.records
    )


# -- a scripted control plane ------------------------------------------------------------------

Reply = tuple[int, str]  # (HTTP status, body)


def running_reply(address: str) -> Reply:
    return 200, json.dumps({"state": "running", "address": address})


def state_reply(state: str) -> Reply:
    return 200, json.dumps({"state": state})


@dataclass
class FakeControlPlane:
    """An aiohttp server on 127.0.0.1:0 that plays the control plane's side of the contract.

    `start_reply` answers every POST; `status_replies` answer successive GETs (the last one
    repeats). `start_gate`, when set, holds every POST until it is set. Every request is
    recorded as (method, raw path, X-API-Key header or None).
    """

    start_reply: Reply = (202, "")
    status_replies: list[Reply] = field(default_factory=lambda: [running_reply("10.0.0.1:25565")])
    start_gate: asyncio.Event | None = None
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    polled: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None
    _gets: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> int:
        return sum(1 for method, _, _ in self.requests if method == "POST")

    @property
    def gets(self) -> int:
        return sum(1 for method, _, _ in self.requests if method == "GET")

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path, request.headers.get("X-API-Key")))
        if request.method == "POST":
            self.started.set()
            if self.start_gate is not None:
                await self.start_gate.wait()
            status, body = self.start_reply
        else:
            self.polled.set()
            index = min(self._gets, len(self.status_replies) - 1)
            self._gets += 1
            status, body = self.status_replies[index]
        return web.Response(status=status, text=body, content_type="application/json")

    async def __aenter__(self) -> FakeControlPlane:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.start_gate is not None:
            self.start_gate.set()
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def control_plane() -> AsyncIterator[FakeControlPlane]:
    async with FakeControlPlane() as plane:
        yield plane
