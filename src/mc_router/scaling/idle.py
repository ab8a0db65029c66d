"""The down-scaler (spec §6.4), where idle means *no players* (issue #5 §6).

One timer per scaling key. The tracker counts logged-in players per key from the event bus:
`BackendConnected(login=True)` adds one and cancels the timer, its `ConnectionClosed` removes
one, and when the count reaches 0 the timer starts (delay D). When it fires, the key's
sleeper runs. Status pings (`login=False`) and port scans never touch a timer, so a server
list refreshing every few seconds no longer keeps a server awake (upstream restarts the full
delay after every ping, Q20).

As a `RouteListener` it also starts timers for routes registered with a sleeper (§3.2), so a
server is put to sleep after a router restart even if nobody connects, and it remembers each
key's sleeper (upstream's `get_sleeper`).

Deliberate differences from upstream, with reasons:
* Q19: a timer that fires while a wake is running is rescheduled (full D), not dropped: a wake
  whose player was kicked by the hold budget and never came back would otherwise leave the
  server running with nobody on it, forever. For the same reason `wake_finished` starts the
  timer when nobody is connected, and a failed sleeper is retried after D (what upstream's
  README promises) instead of waiting for the next connection to close.
* Removing a route cancels its key's timer only when no other route still uses that key.

Time comes from an injected scheduler with `call_later` (the event loop by default), so tests
move time by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mc_router.events import BackendConnected, ConnectionClosed, Event
from mc_router.logs import get_logger
from mc_router.routing import Route, Sleeper, Waker

__all__ = ["IdleTracker", "Scheduler", "TimerHandle"]

log = get_logger(__name__)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the tracker needs of a clock: `asyncio.AbstractEventLoop.call_later`."""

    def call_later(self, delay: float, callback: Callable[[], object], /) -> TimerHandle: ...


@dataclass(frozen=True, slots=True)
class _GuardedWaker:
    tracker: IdleTracker
    key: str
    waker: Waker

    @property
    def checks_readiness(self) -> bool:
        return bool(getattr(self.waker, "checks_readiness", False))

    async def wake(self) -> str:
        # A `down` still in flight would race the `up`: let it land first.
        await self.tracker.sleep_finished(self.key)
        return await self.waker.wake()


class IdleTracker:
    """Counts players per scaling key and puts idle backends to sleep after `delay` seconds.

    `sleeper_for(key)` overrides the built-in registry of sleepers (filled by the
    RouteListener methods). `is_waking(key)` says whether a wake is in flight for the key.
    Subscribe it to the EventBus (it is callable with an event) and to the RoutingTable.
    """

    def __init__(
        self,
        delay: float,
        *,
        sleeper_for: Callable[[str], Sleeper | None] | None = None,
        is_waking: Callable[[str], bool] = lambda key: False,
        scheduler: Scheduler | None = None,
        retry_failed: bool = True,
    ) -> None:
        self.delay = delay
        self.retry_failed = retry_failed
        self._sleeper_for = sleeper_for
        self._is_waking = is_waking
        self._scheduler = scheduler
        self._players: dict[str, int] = {}
        self._timers: dict[str, TimerHandle] = {}
        self._sleeps: dict[str, asyncio.Task[None]] = {}
        self._routes: dict[str, Route] = {}
        self._default: Route | None = None
        self._closed = False

    # -- reading -----------------------------------------------------------------------------

    def players(self, key: str) -> int:
        """Players connected through routes with this scaling key."""
        return self._players.get(key, 0)

    def timer_pending(self, key: str) -> bool:
        return key in self._timers

    def sleeping(self, key: str) -> bool:
        """Whether the key's sleeper is running right now."""
        return key in self._sleeps

    def sleeper_for(self, key: str) -> Sleeper | None:
        """The sleeper of a route with this scaling key (a mapping first, then the default)."""
        if self._sleeper_for is not None:
            return self._sleeper_for(key)
        for route in self._routes.values():
            if route.scaling_key == key and route.sleeper is not None:
                return route.sleeper
        default = self._default
        if default is not None and default.scaling_key == key:
            return default.sleeper
        return None

    # -- players (EventBus subscriber) --------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """EventBus subscriber: logins count, status pings are ignored."""
        if not isinstance(event, BackendConnected | ConnectionClosed):
            return
        if not (event.login and event.scaling_key):
            return
        if isinstance(event, BackendConnected):
            self.player_joined(event.scaling_key)
        elif event.connected:
            self.player_left(event.scaling_key)

    def player_joined(self, key: str) -> None:
        self._players[key] = self._players.get(key, 0) + 1
        self.cancel(key)

    def player_left(self, key: str) -> None:
        count = self._players.get(key, 0) - 1
        if count > 0:
            self._players[key] = count
            return
        self._players.pop(key, None)
        log.debug("Last player left; starting idle timer", scalingKey=key, delay=self.delay)
        self.start(key)

    # -- wakes ---------------------------------------------------------------------------------

    def wake_started(self, key: str) -> None:
        """A wake began: stop the timer (§6.4 cancel trigger "just before a wake")."""
        self.cancel(key)

    def wake_finished(self, key: str) -> None:
        """A wake ended: start the timer unless someone is connected (see Q19 above)."""
        self.start(key)

    def guarded(self, key: str, waker: Waker) -> Waker:
        """`waker`, but first waiting for a running sleeper of `key` to finish."""
        return _GuardedWaker(self, key, waker)

    async def sleep_finished(self, key: str) -> None:
        """Wait until the key's sleeper (if running) is done; never raises its error."""
        task = self._sleeps.get(key)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    # -- timers --------------------------------------------------------------------------------

    def start(self, key: str) -> None:
        """Start the key's timer, unless one runs already (Q20) or players are connected."""
        if self._closed or not key or key in self._timers or self.players(key) > 0:
            return
        scheduler = self._scheduler or asyncio.get_running_loop()
        self._timers[key] = scheduler.call_later(self.delay, lambda: self._expired(key))

    def cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def reset(self) -> None:
        """Stop every timer (upstream's `reset`, run on SIGHUP reload and at shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expired(self, key: str) -> None:
        self._timers.pop(key, None)
        if self._closed or self.players(key) > 0:
            return
        if self._is_waking(key):
            log.debug("Idle timer fired during a wake; rescheduling", scalingKey=key)
            self.start(key)
            return
        sleeper = self.sleeper_for(key)
        if sleeper is None:
            log.debug("No sleeper for idle backend", scalingKey=key)
            return
        if key in self._sleeps:
            return
        task = asyncio.get_running_loop().create_task(
            self._sleep(key, sleeper), name=f"scale down {key}"
        )
        self._sleeps[key] = task
        task.add_done_callback(lambda done: self._sleep_done(key, done))

    def _sleep_done(self, key: str, task: asyncio.Task[None]) -> None:
        if self._sleeps.get(key) is task:
            del self._sleeps[key]

    async def _sleep(self, key: str, sleeper: Sleeper) -> None:
        log.info("Scaling down backend server", scalingKey=key)
        try:
            await sleeper.sleep()
        except Exception as exc:
            # A long-lived service's retry loop: log, and try again after another idle delay.
            log.error("Failed to scale down backend server", scalingKey=key, error=str(exc))
            if self.retry_failed:
                self.start(key)
            return
        log.debug("Scaled down backend server", scalingKey=key)

    # -- routes (RouteListener) ----------------------------------------------------------------

    def route_added(self, route: Route) -> None:
        """Start the timer of a newly registered route with a sleeper (§3.2 create_mapping).

        Re-registering the same key does not touch the timer; a route whose backend became
        "" (a stopped container) cancels it (§3.2 update_mapping).
        """
        previous = self._routes.get(route.server_address)
        self._routes[route.server_address] = route
        key = route.scaling_key
        if not key:
            return
        if not route.backend:
            self.cancel(key)
            return
        if route.sleeper is None:
            return
        if (
            previous is None
            or not previous.backend
            or previous.sleeper is None
            or previous.scaling_key != key
        ):
            self.start(key)

    def route_removed(self, route: Route) -> None:
        self._routes.pop(route.server_address, None)
        self._forget(route.scaling_key)

    def default_route_set(self, route: Route) -> None:
        previous, self._default = self._default, route
        if previous is not None and previous.scaling_key != route.scaling_key:
            self._forget(previous.scaling_key)
        if route.scaling_key and route.backend and route.sleeper is not None:
            self.start(route.scaling_key)

    def default_route_removed(self) -> None:
        previous, self._default = self._default, None
        if previous is not None:
            self._forget(previous.scaling_key)

    def _forget(self, key: str) -> None:
        if not key:
            return
        still_used = any(r.scaling_key == key for r in self._routes.values()) or (
            self._default is not None and self._default.scaling_key == key
        )
        if not still_used:
            self.cancel(key)

    # -- shutdown ------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait for every running sleeper (tests; an orderly shutdown)."""
        while self._sleeps:
            await asyncio.gather(*list(self._sleeps.values()), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop every timer and cancel sleepers still running."""
        self._closed = True
        self.reset()
        tasks = list(self._sleeps.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
