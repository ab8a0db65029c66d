"""Route sync: keep the route table's automc routes equal to the `servers` table.

One persistent connection per router. On every (re)connect: `LISTEN` first, then the full
`SELECT`, so a change committed between the two cannot be missed (it is either in the result or
notified after it). Then wait for notifications; a burst is coalesced (drain until quiet for
`quiet` seconds, at most `max_delay` after the first) into one query, diffed by
`RoutingTable.sync_source`, which touches only routes owned by "automc".

Failure model: if the connection dies, routes stay as last known and the loop reconnects with
capped, jittered exponential backoff, then resyncs fully (changes made meanwhile appear).
An idle connection is probed every `idle_check` seconds, and TCP keepalives are on, so a
silently dead peer is noticed. Each distinct failure is logged once; the DSN's password never.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import aclosing
from typing import Any, Final

import psycopg

from mc_router.automc.dsn import describe, mask, with_defaults
from mc_router.automc.schema import CHANNEL, ROUTES_QUERY
from mc_router.logs import get_logger
from mc_router.routing import (
    Backend,
    Route,
    RoutingTable,
    SyncResult,
    Waker,
    normalize_server_address,
)

log = get_logger(__name__)

#: The route-table source name of every automc route.
SOURCE: Final = "automc"

# Coalescing. A lone change waits QUIET for company, a burst at most MAX_DELAY: the COMMIT ->
# route latency target is p99 <= 100 ms, and MAX_DELAY + one query of 10,000 rows fits in it.
QUIET: Final = 0.005
MAX_DELAY: Final = 0.05
# Reconnect backoff: first retry fast (a restart is usually brief), then double up to the cap.
BACKOFF_INITIAL: Final = 0.1
BACKOFF_MAX: Final = 5.0
# An idle connection is probed this often; a probe that takes longer than CHECK_TIMEOUT means
# the connection is dead even if TCP has not said so yet.
IDLE_CHECK: Final = 10.0
CHECK_TIMEOUT: Final = 5.0
# Bound on one connection attempt on top of libpq's own connect_timeout (DNS, TLS, auth).
CONNECT_TIMEOUT: Final = 15.0


class RouteSync:
    """Mirrors `servers` into `table`; `await run()` until cancelled (it never returns)."""

    def __init__(
        self,
        dsn: str,
        table: RoutingTable,
        *,
        waker_for: Callable[[str], Waker] | None = None,
        source: str = SOURCE,
        quiet: float = QUIET,
        max_delay: float = MAX_DELAY,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        idle_check: float = IDLE_CHECK,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self._dsn = dsn
        self._conninfo = with_defaults(dsn)  # ConfigError now, not in a retry loop later
        self.where = describe(dsn)
        self.table = table
        self.source = source
        self._waker_for = waker_for
        self.quiet = quiet
        self.max_delay = max_delay
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.idle_check = idle_check
        self.check_timeout = check_timeout
        #: True while connected and the table reflects the latest query.
        self.connected = False
        #: True once a full sync succeeded; stays True through outages, during which the last
        #: known routes keep serving (readiness: see docs/AUTOMC.md).
        self.synced = False
        #: Route queries run (coalescing shows as queries << notifications).
        self.queries = 0
        #: Notifications received.
        self.notifications = 0
        #: Successful connections, and the duration of the last full query + apply.
        self.connections = 0
        #: Failed connections or lost sessions.
        self.failures = 0
        self.last_sync_seconds = 0.0
        self._wakers: dict[str, Waker] = {}
        self._rows: dict[tuple[Any, Any, Any], Route | str] = {}
        self._applied: dict[str, Route] = {}  # last desired set, if it applied conflict-free
        self._reported: dict[str, str] = {}  # row/key -> problem already logged
        self._last_failure = ""
        self._changed = asyncio.Event()

    # -- observing -------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[RouteSync], bool]) -> None:
        """Return once `predicate(self)` holds; re-checked after every sync or state change."""
        while not predicate(self):
            event = self._changed
            await event.wait()

    def _notify_observers(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # -- the service -----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, sync, follow; on any failure back off and do it all again. Never returns."""
        attempt = 0
        try:
            while True:
                try:
                    async with await self._connect() as conn:
                        await self._listen_and_sync(conn)
                        attempt = 0
                        await self._follow(conn)
                except Exception as exc:  # the reconnect boundary (DESIGN 7)
                    self._failed(exc)
                delay = min(self.backoff_max, self.backoff_initial * 2**attempt)
                attempt += 1
                # Jitter spreads many replicas' reconnects after a database restart.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        finally:
            self.connected = False

    async def _connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def _listen_and_sync(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        # LISTEN strictly before the SELECT: a commit between them is notified, not lost.
        await conn.execute(f"LISTEN {CHANNEL}")
        result = await self._resync(conn, initial=True)
        self.connections += 1
        recovered = bool(self._last_failure)
        self._last_failure = ""
        log.info(
            "automc: reconnected to Postgres and resynced"
            if recovered
            else "automc: connected to Postgres",
            where=self.where,
            routes=self._owned(),
            added=len(result.added),
            changed=len(result.changed),
            removed=len(result.removed),
        )

    async def _follow(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        while True:
            if not await self._next_notification(conn, self.idle_check):
                # Idle: make sure the connection is still alive (raises if not).
                async with asyncio.timeout(self.check_timeout):
                    await conn.execute("SELECT 1")
                continue
            deadline = time.monotonic() + self.max_delay
            while (remaining := deadline - time.monotonic()) > 0:
                if not await self._next_notification(conn, min(self.quiet, remaining)):
                    break
            await self._resync(conn)

    async def _next_notification(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], timeout: float
    ) -> bool:
        """Wait up to `timeout` for notifications; consume every one already there."""
        received = 0
        # stop_after=1 still yields the whole batch that arrived together (and any backlog
        # received during the last query), so one call drains what is pending.
        async with aclosing(conn.notifies(timeout=timeout, stop_after=1)) as notifies:
            async for _ in notifies:
                received += 1
        self.notifications += received
        return received > 0

    async def _resync(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], *, initial: bool = False
    ) -> SyncResult:
        started = time.perf_counter()
        async with conn.cursor() as cursor:
            await cursor.execute(ROUTES_QUERY)
            rows = await cursor.fetchall()
        self.queries += 1
        result = self.apply(rows)
        self.last_sync_seconds = time.perf_counter() - started
        self.connected = self.synced = True
        if result.changes and not initial:  # the (re)connect line reports those itself
            log.info(
                "automc: routes updated",
                added=len(result.added),
                changed=len(result.changed),
                removed=len(result.removed),
                routes=self._owned(),
                took_ms=round(self.last_sync_seconds * 1000, 1),
            )
        self._notify_observers()
        return result

    def _failed(self, exc: BaseException) -> None:
        was_connected, self.connected = self.connected, False
        self.failures += 1
        reason = mask(str(exc).strip() or type(exc).__name__, self._dsn)
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        elif isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
            reason += " (create the schema with `mc-router automc init-db`)"
        if was_connected:
            log.warning(
                "automc: lost the Postgres connection; keeping the last known routes, retrying",
                where=self.where,
                routes=self._owned(),
                error=reason,
            )
        elif reason == self._last_failure:
            log.debug("automc: still failing, retrying", where=self.where, error=reason)
        elif isinstance(exc, psycopg.OperationalError | OSError | TimeoutError):
            log.warning(
                "automc: Postgres unreachable, retrying"
                + ("" if self.synced else "; serving the other routes meanwhile"),
                where=self.where,
                error=reason,
            )
        elif isinstance(exc, psycopg.Error):
            log.warning("automc: route query failed, retrying", where=self.where, error=reason)
        else:
            # Not a database or network problem: a bug. Keep retrying, but show where it is.
            log.exception("automc: unexpected error in route sync, retrying", where=self.where)
        self._last_failure = reason
        self._notify_observers()

    # -- rows -> routes --------------------------------------------------------------------

    def apply(self, rows: Iterable[Sequence[Any]]) -> SyncResult:
        """Make the automc routes equal `rows` of (name, domain, address); skip bad rows."""
        # Rows seen last time map to the same Route object (or problem) without re-parsing:
        # a resync of 10,000 unchanged rows must not stall the event loop the relay runs on.
        previous_rows, self._rows = self._rows, {}
        desired: dict[str, Route] = {}
        owner: dict[str, str] = {}
        problems: dict[str, str] = {}
        for name, domain, address in rows:
            row = (name, domain, address)
            outcome = previous_rows.get(row)
            if outcome is None:
                outcome = _row_problem(domain, address) or Route(
                    normalize_server_address(domain, simplify_srv=self.table.simplify_srv),
                    address,
                    self.source,
                    waker=self._waker(name),
                    label=name,
                )
            self._rows[row] = outcome
            if isinstance(outcome, str):
                problems[f"row {name}"] = outcome
                self._report(f"row {name}", outcome, server=name, domain=domain, backend=address)
                continue
            key = outcome.server_address
            previous = owner.get(key)
            if previous is not None:
                # Case-only duplicates pass UNIQUE(domain). Keep the smaller name, so every
                # replica picks the same row whatever order the rows arrive in.
                keep, drop = sorted((previous, name))
                problem = f"domain {key!r} is already used by server {keep!r}"
                problems[f"row {drop}"] = problem
                self._report(f"row {drop}", problem, server=drop, domain=domain)
                if keep == previous:
                    continue
            owner[key] = name
            desired[key] = outcome
        if self._unchanged(desired):
            # A notification that changed no route (e.g. only `state` moved): skip the diff.
            result = SyncResult()
        else:
            result = self.table.sync_source(self.source, desired)
            self._applied = desired if not result.conflicts else {}
        for key in result.conflicts:
            problem = "the address is routed by another source, which keeps it"
            problems[f"key {key}"] = problem
            self._report(f"key {key}", problem, server_address=key)
        # Forget what is gone, so a problem that comes back is logged again.
        self._reported = {k: v for k, v in self._reported.items() if problems.get(k) == v}
        if len(self._wakers) > len(owner):
            live = set(owner.values())
            self._wakers = {n: w for n, w in self._wakers.items() if n in live}
        return result

    def _unchanged(self, desired: dict[str, Route]) -> bool:
        """True if `desired` is what we applied last time and the table still holds exactly
        those Route objects (another source may have replaced or removed one meanwhile)."""
        if desired != self._applied or not desired:
            return False
        current = self.table.mappings()
        return all(current.get(key) is route for key, route in desired.items())

    def _waker(self, name: str) -> Waker | None:
        if self._waker_for is None:
            return None
        waker = self._wakers.get(name)
        if waker is None:
            waker = self._wakers[name] = self._waker_for(name)
        return waker

    def _report(self, key: str, problem: str, **fields: object) -> None:
        if self._reported.get(key) != problem:
            self._reported[key] = problem
            log.warning("automc: skipping route", error=problem, **fields)

    def _owned(self) -> int:
        return sum(1 for route in self.table if route.source == self.source)


# Whitespace, control characters or a port: such a domain can never match a handshake.
_BAD_DOMAIN: Final = re.compile(r"[\s\x00-\x1f\x7f:]")


def _row_problem(domain: object, address: object) -> str:
    """Why a row cannot be a route, or "" if it can."""
    if not isinstance(domain, str) or not isinstance(address, str):
        return "domain and address must be text"
    bad = _BAD_DOMAIN.search(domain)
    if bad is not None:
        if bad.group() == ":":
            return "domain must be a hostname without a port"
        return "domain contains whitespace or control characters"
    try:
        Backend.parse(address)
    except ValueError as exc:
        return str(exc)
    return ""
