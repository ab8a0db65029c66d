"""Single-flight wakes with an ETA (issues #3 and #5).

A `Wake` is one attempt to make a route's backend ready: the waker's `wake()` call, run as a
task the coordinator owns, so a login that stops waiting (hold budget spent, client gone)
never cancels it for the others, and the next login finds the server already starting.

Each route key remembers an exponential moving average of how long its wakes took, so a
held player or a status ping can be told "about 40 s left".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mc_router.errors import WakeError
from mc_router.routing import Route, Waker

log = logging.getLogger(__name__)

# Weight of the newest wake in the moving average: recent starts matter most (a server that
# grew a bigger world starts slower), but one outlier does not swing the estimate wildly.
ETA_SMOOTHING = 0.3


def route_key(route: Route) -> str:
    """What identifies the thing being woken: its scaling key, else its server address."""
    return route.scaling_key or route.server_address


@dataclass(slots=True)
class Wake:
    """One wake in flight (or just finished) for a route key."""

    key: str
    label: str
    started: float
    task: asyncio.Task[str]
    estimate: float | None = None

    def remaining(self, now: float) -> float | None:
        """Seconds the wake probably still needs, from past wakes; None when unknown."""
        if self.estimate is None:
            return None
        return max(1.0, self.estimate - (now - self.started))


Ready = Callable[[Route, str], Awaitable[None]]
WakeHook = Callable[[Route], None]


class WakeCoordinator:
    """Runs at most one wake per route key and remembers how long wakes take.

    `ready(route, address)`, when given, runs after a waker returns and before anyone
    connects: a real status ping until the backend answers (issue #5 §3). Wakers that check
    readiness themselves say so with a true `checks_readiness` attribute. `on_start` and
    `on_finish` hooks see every wake begin and end (idle timers, status caches).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        ready: Ready | None = None,
    ) -> None:
        self._clock = clock
        self._ready = ready
        self._wakes: dict[str, Wake] = {}
        self._averages: dict[str, float] = {}
        self.on_start: list[WakeHook] = []
        self.on_finish: list[WakeHook] = []

    def current(self, route: Route | None) -> Wake | None:
        """The wake in flight for this route, if any."""
        if route is None:
            return None
        wake = self._wakes.get(route_key(route))
        return wake if wake is not None and not wake.task.done() else None

    def is_waking(self, key: str) -> bool:
        """Whether a wake is in flight for a route key (scaling key or server address)."""
        wake = self._wakes.get(key)
        return wake is not None and not wake.task.done()

    def now(self) -> float:
        return self._clock()

    def begin(self, route: Route, waker: Waker, label: str) -> Wake:
        """Join the wake in flight for `route`, or start one."""
        key = route_key(route)
        wake = self._wakes.get(key)
        if wake is not None and not wake.task.done():
            return wake
        task = asyncio.get_running_loop().create_task(
            self._run(route, key, waker), name=f"wake {label}"
        )
        wake = Wake(key, label, self._clock(), task, self._averages.get(key))
        self._wakes[key] = wake
        task.add_done_callback(lambda t: self._finished(route, key, wake, t))
        for hook in self.on_start:
            hook(route)
        return wake

    async def _run(self, route: Route, key: str, waker: Waker) -> str:
        try:
            address = await waker.wake()
            if (
                address
                and self._ready is not None
                and not getattr(waker, "checks_readiness", False)
            ):
                await self._ready(route, address)
            return address
        except WakeError:
            raise
        except Exception as exc:
            # A waker that breaks its contract is still a failed wake, with a reason.
            log.exception("Waker failed unexpectedly", extra={"fields": {"route": key}})
            raise WakeError(f"the waker failed: {exc}") from exc

    def _finished(self, route: Route, key: str, wake: Wake, task: asyncio.Task[str]) -> None:
        if self._wakes.get(key) is wake:
            del self._wakes[key]
        for hook in self.on_finish:
            hook(route)
        if task.cancelled():
            return
        if task.exception() is None:
            took = self._clock() - wake.started
            previous = self._averages.get(key)
            self._averages[key] = (
                took if previous is None else ETA_SMOOTHING * took + (1 - ETA_SMOOTHING) * previous
            )
        else:
            # Retrieve it so an unawaited failure is not reported as "never retrieved".
            task.exception()

    async def aclose(self) -> None:
        """Cancel wakes still in flight (shutdown)."""
        tasks = [wake.task for wake in self._wakes.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
