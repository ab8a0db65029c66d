"""The down-scaler with an injected clock: idle means no players (issue #5 §6, spec §6.4)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import pytest

from mc_router.events import BackendConnected, Client, ConnectionClosed, EventBus, PlayerInfo
from mc_router.routing import Route, RoutingTable
from mc_router.scaling.idle import IdleTracker
from tests.scaling.helpers import ManualScheduler

D = 600.0
KEY = "10.0.0.5:25565"
CLIENT = Client("192.0.2.1", 50000)
PLAYER = PlayerInfo("alice", uuid.UUID(int=1))


@dataclass
class RecordingSleeper:
    calls: int = 0
    fail: bool = False
    gate: asyncio.Event | None = None
    events: list[str] = field(default_factory=list)

    async def sleep(self) -> None:
        self.calls += 1
        self.events.append("sleep start")
        if self.gate is not None:
            await self.gate.wait()
        self.events.append("sleep end")
        if self.fail:
            raise RuntimeError("webhook down")


@dataclass
class RecordingWaker:
    events: list[str]

    async def wake(self) -> str:
        self.events.append("wake")
        return KEY


def route(
    sleeper: RecordingSleeper | None,
    *,
    address: str = "mc.example.com",
    key: str = KEY,
    backend: str = KEY,
) -> Route:
    return Route(address, backend, "test", sleeper=sleeper, scaling_key=key)


def connected(*, login: bool, key: str = KEY) -> BackendConnected:
    return BackendConnected(
        CLIENT, "mc.example.com", "mc.example.com", PLAYER if login else None, KEY, login, key
    )


def closed(*, login: bool, key: str = KEY, was_connected: bool = True) -> ConnectionClosed:
    return ConnectionClosed(
        CLIENT, "mc.example.com", PLAYER if login else None, KEY, was_connected, login, key
    )


class Harness:
    def __init__(self, **kwargs: object) -> None:
        self.clock = ManualScheduler()
        self.bus = EventBus()
        self.sleeper = RecordingSleeper()
        self.tracker = IdleTracker(D, scheduler=self.clock, **kwargs)  # type: ignore[arg-type]
        self.bus.subscribe(self.tracker)

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.tracker.drain()

    def register(self) -> None:
        self.tracker.route_added(route(self.sleeper))


@pytest.fixture
async def h() -> Harness:
    return Harness()


async def test_registration_starts_the_timer_even_if_nobody_connects(h: Harness) -> None:
    h.register()
    assert h.tracker.timer_pending(KEY)
    await h.advance(D - 1)
    assert h.sleeper.calls == 0
    await h.advance(1)
    assert h.sleeper.calls == 1
    assert not h.tracker.timer_pending(KEY)


async def test_status_pings_never_keep_a_server_awake(h: Harness) -> None:
    h.register()
    for _ in range(D.__int__() // 60 - 1):
        await h.advance(59)
        h.bus.publish(connected(login=False))
        await h.advance(1)
        h.bus.publish(closed(login=False))
    assert h.tracker.players(KEY) == 0
    await h.advance(60)
    assert h.sleeper.calls == 1  # at D after registration, pings or not


async def test_players_keep_it_awake_and_the_last_one_leaving_starts_the_timer(
    h: Harness,
) -> None:
    h.register()
    h.bus.publish(connected(login=True))
    h.bus.publish(connected(login=True))
    assert h.tracker.players(KEY) == 2
    assert not h.tracker.timer_pending(KEY)
    await h.advance(3 * D)
    assert h.sleeper.calls == 0
    h.bus.publish(closed(login=True))
    assert not h.tracker.timer_pending(KEY)  # one player is still on
    await h.advance(3 * D)
    h.bus.publish(closed(login=True))
    assert h.tracker.timer_pending(KEY)
    await h.advance(D - 1)
    assert h.sleeper.calls == 0
    await h.advance(1)
    assert h.sleeper.calls == 1


async def test_a_new_login_cancels_the_timer(h: Harness) -> None:
    h.register()
    await h.advance(D - 10)
    h.bus.publish(connected(login=True))
    await h.advance(2 * D)
    assert h.sleeper.calls == 0
    h.bus.publish(closed(login=True))
    await h.advance(D - 10)
    h.bus.publish(connected(login=True))  # back just before the timer fires
    await h.advance(D)
    assert h.sleeper.calls == 0


async def test_connections_that_never_reached_a_backend_are_ignored(h: Harness) -> None:
    h.register()
    h.bus.publish(closed(login=True, was_connected=False))  # failed wake, failed dial
    assert h.tracker.players(KEY) == 0
    h.bus.publish(connected(login=True, key=""))  # a route without a scaling key
    h.bus.publish(closed(login=True, key=""))
    assert h.tracker.players("") == 0
    await h.advance(D)
    assert h.sleeper.calls == 1


async def test_unmatched_close_never_goes_negative(h: Harness) -> None:
    h.register()
    h.bus.publish(closed(login=True))
    h.bus.publish(connected(login=True))
    assert h.tracker.players(KEY) == 1


async def test_sleeper_failure_is_logged_and_retried_after_the_delay(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.sleeper.fail = True
    h.register()
    with caplog.at_level(logging.INFO, logger="mc_router.scaling.idle"):
        await h.advance(D)
    assert h.sleeper.calls == 1
    [failure] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == "Failed to scale down backend server"
    assert failure.fields == {"scalingKey": KEY, "error": "webhook down"}  # type: ignore[attr-defined]
    assert h.tracker.timer_pending(KEY)
    h.sleeper.fail = False
    await h.advance(D)
    assert h.sleeper.calls == 2
    assert not h.tracker.timer_pending(KEY)


async def test_timer_firing_during_a_wake_is_rescheduled_not_dropped() -> None:
    waking = {KEY}
    h = Harness(is_waking=lambda key: key in waking)
    h.register()
    await h.advance(D)
    assert h.sleeper.calls == 0
    assert h.tracker.timer_pending(KEY)  # upstream drops it here (Q19)
    waking.clear()
    await h.advance(D)
    assert h.sleeper.calls == 1


async def test_wake_hooks(h: Harness) -> None:
    h.register()
    h.tracker.wake_started(KEY)
    assert not h.tracker.timer_pending(KEY)
    # The player was kicked by the hold budget and never came back: the wake still ends.
    h.tracker.wake_finished(KEY)
    assert h.tracker.timer_pending(KEY)
    await h.advance(D)
    assert h.sleeper.calls == 1
    # With a player connected, the end of a wake starts nothing.
    h.bus.publish(connected(login=True))
    h.tracker.wake_finished(KEY)
    assert not h.tracker.timer_pending(KEY)


async def test_start_never_restarts_a_running_timer_q20(h: Harness) -> None:
    h.register()
    await h.advance(D / 2)
    h.tracker.start(KEY)
    await h.advance(D / 2)
    assert h.sleeper.calls == 1


class TestRoutes:
    async def test_reregistering_during_an_active_connection_does_not_scale_down(
        self, h: Harness
    ) -> None:
        """Upstream's TestRouteConfigReloadDoesNotScaleDownActiveConnection."""
        h.register()
        h.bus.publish(connected(login=True))
        h.register()
        await h.advance(2 * D)
        assert h.sleeper.calls == 0

    async def test_reregistering_the_same_key_does_not_start_a_timer(self, h: Harness) -> None:
        h.register()
        await h.advance(D)
        assert h.sleeper.calls == 1
        h.tracker.route_added(route(RecordingSleeper()))  # a reload: new sleeper, same key
        assert not h.tracker.timer_pending(KEY)

    async def test_a_new_key_starts_a_timer(self, h: Harness) -> None:
        h.register()
        await h.advance(D)
        other = RecordingSleeper()
        h.tracker.route_added(route(other, key="10.0.0.6:25565", backend="10.0.0.6:25565"))
        await h.advance(D)
        assert other.calls == 1

    async def test_backend_gone_cancels(self, h: Harness) -> None:
        h.register()
        h.tracker.route_added(route(h.sleeper, backend=""))  # a stopped container
        assert not h.tracker.timer_pending(KEY)
        h.tracker.route_added(route(h.sleeper))  # back: "" -> non-empty starts it again
        assert h.tracker.timer_pending(KEY)

    async def test_routes_without_sleeper_or_key_have_no_timer(self, h: Harness) -> None:
        h.tracker.route_added(route(None))
        h.tracker.route_added(route(RecordingSleeper(), address="b", key=""))
        assert h.clock.pending() == []

    async def test_removal_cancels_only_when_no_route_shares_the_key(self, h: Harness) -> None:
        first = route(h.sleeper)
        second = route(h.sleeper, address="alias.example.com")
        h.tracker.route_added(first)
        h.tracker.route_added(second)
        h.tracker.route_removed(first)
        assert h.tracker.timer_pending(KEY)
        h.tracker.route_removed(second)
        assert not h.tracker.timer_pending(KEY)

    async def test_default_route(self, h: Harness) -> None:
        default = Route("", KEY, "default", sleeper=h.sleeper, scaling_key=KEY)
        h.tracker.default_route_set(default)
        assert h.tracker.sleeper_for(KEY) is h.sleeper
        await h.advance(D)
        assert h.sleeper.calls == 1
        h.tracker.default_route_set(default)
        h.tracker.default_route_removed()
        assert not h.tracker.timer_pending(KEY)
        assert h.tracker.sleeper_for(KEY) is None

    async def test_subscribed_to_a_routing_table(self, h: Harness) -> None:
        table = RoutingTable()
        table.put(route(h.sleeper))
        table.subscribe(h.tracker)  # replay registers the existing route
        assert h.tracker.timer_pending(KEY)
        table.remove_mapping("mc.example.com")
        assert not h.tracker.timer_pending(KEY)

    async def test_no_sleeper_found_does_nothing(self) -> None:
        h = Harness(sleeper_for=lambda key: None)
        h.register()
        await h.advance(D)
        assert h.sleeper.calls == 0

    async def test_sleeper_for_override(self) -> None:
        override = RecordingSleeper()
        h = Harness(sleeper_for=lambda key: override if key == KEY else None)
        h.register()
        await h.advance(D)
        assert (override.calls, h.sleeper.calls) == (1, 0)


class TestSleepAndWake:
    async def test_guarded_waker_waits_for_a_running_sleep(self, h: Harness) -> None:
        h.sleeper.gate = asyncio.Event()
        h.register()
        h.clock.advance(D)
        await asyncio.sleep(0)
        assert h.tracker.sleeping(KEY)
        waker = h.tracker.guarded(KEY, RecordingWaker(h.sleeper.events))
        wake = asyncio.create_task(waker.wake())
        await asyncio.sleep(0)
        assert h.sleeper.events == ["sleep start"]
        h.sleeper.gate.set()
        assert await wake == KEY
        assert h.sleeper.events == ["sleep start", "sleep end", "wake"]

    async def test_guarded_waker_without_sleep_wakes_at_once(self, h: Harness) -> None:
        events: list[str] = []
        assert await h.tracker.guarded(KEY, RecordingWaker(events)).wake() == KEY
        assert events == ["wake"]


async def test_reset_and_aclose(h: Harness) -> None:
    h.register()
    h.tracker.reset()
    await h.advance(2 * D)
    assert h.sleeper.calls == 0
    h.sleeper.gate = asyncio.Event()
    h.tracker.start(KEY)  # re-registering the same route would not (see TestRoutes)
    h.tracker.route_added(route(h.sleeper, address="x", key="other", backend="o:1"))
    h.clock.advance(D)
    await asyncio.sleep(0)
    assert h.tracker.sleeping(KEY)
    await h.tracker.aclose()  # cancels the running sleeper, stops every timer
    assert not h.tracker.sleeping(KEY)
    h.tracker.start("other")
    assert not h.tracker.timer_pending("other")
