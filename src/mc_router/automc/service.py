"""automc switched on: the route sync task and, if configured, the waker's HTTP client.

Entering starts the sync in the background and returns at once (an unreachable database never
delays the router); exiting cancels it, closes the Postgres connection, cancels wakes in flight
and closes the HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar, Self

from mc_router.automc import AutoMC, AutomcSettings
from mc_router.automc.sync import RouteSync
from mc_router.automc.waker import ControlPlane
from mc_router.logs import get_logger
from mc_router.routing import RoutingTable

log = get_logger(__name__)


class Service(AutoMC):
    """automc running: `sync` mirrors the table, `plane` (or None) wakes servers."""

    enabled: ClassVar[bool] = True

    def __init__(
        self,
        settings: AutomcSettings,
        table: RoutingTable,
        *,
        sync_options: dict[str, Any] | None = None,
        waker_options: dict[str, Any] | None = None,
    ) -> None:
        # Both constructors validate their input, so a bad DSN or URL stops startup here.
        self.plane = (
            ControlPlane(
                settings.automc_waker_url, settings.automc_waker_token, **(waker_options or {})
            )
            if settings.automc_waker_url
            else None
        )
        self.sync = RouteSync(
            settings.automc_dsn,
            table,
            waker_for=self.plane.waker if self.plane is not None else None,
            **(sync_options or {}),
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def in_sync(self) -> bool:
        return self.sync.synced

    @property
    def connected(self) -> bool:
        return self.sync.connected

    async def __aenter__(self) -> Self:
        if self.plane is not None:
            await self.plane.__aenter__()
        self._task = asyncio.create_task(self.sync.run(), name="automc route sync")
        log.info(
            "automc: enabled",
            where=self.sync.where,
            waker=str(self.plane.base_url.with_user(None)) if self.plane is not None else "off",
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.plane is not None:
            await self.plane.close()
