"""automc, the user's extension: routes from a Postgres `servers` table, woken over HTTP.

Wired by one call at startup (see `wire`). With AUTOMC_DSN empty, `wire` returns an inert
object: no connection, no task, no import of psycopg or aiohttp, no change in behaviour.
Otherwise a background task mirrors the table into the route table as routes of source
"automc" (`sync`), and with AUTOMC_WAKER_URL set each of them gets an HTTP waker (`waker`).
Operator documentation: docs/AUTOMC.md.

Boundaries: automc touches the core only through `mc_router.routing`'s public names (the
route table and its value types). Besides those it may import `mc_router.errors`,
`mc_router.logs`, the standard library and its own dependencies (psycopg, aiohttp, yarl) --
nothing else from mc_router (tests/automc/test_boundaries.py enforces it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, Self

if TYPE_CHECKING:
    from mc_router.routing import RoutingTable

__all__ = ["AutoMC", "AutomcSettings", "wire"]


class AutomcSettings(Protocol):
    """The three settings automc reads (a subset of `mc_router.settings.Settings`)."""

    @property
    def automc_dsn(self) -> str: ...

    @property
    def automc_waker_url(self) -> str: ...

    @property
    def automc_waker_token(self) -> str: ...


class AutoMC:
    """automc switched off: an async context manager that does nothing and is always ready.

    The running extension (`mc_router.automc.service.Service`) has the same interface.
    """

    enabled: ClassVar[bool] = False

    @property
    def in_sync(self) -> bool:
        """Readiness: True once the automc routes have been synced (always, when disabled)."""
        return True

    @property
    def connected(self) -> bool:
        """True while the Postgres connection is up and the routes are current."""
        return False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def wire(settings: AutomcSettings, table: RoutingTable) -> AutoMC:
    """The one call app.py makes: `await stack.enter_async_context(wire(settings, table))`.

    Raises ConfigError for an unusable AUTOMC_DSN or AUTOMC_WAKER_URL. Never blocks on the
    database: entering starts the sync in the background, exiting stops it and closes
    everything.
    """
    if not settings.automc_dsn:
        return AutoMC()
    # Imported only when enabled: without AUTOMC_DSN, psycopg and aiohttp are never loaded.
    from mc_router.automc.service import Service  # noqa: PLC0415 -- see above

    return Service(settings, table)
