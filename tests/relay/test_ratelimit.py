"""The accept-loop token bucket (spec §4.1): burst 2R, then R per second, excess waits."""

from __future__ import annotations

import asyncio

from mc_router.relay.ratelimit import TokenBucket
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_with_twice_the_rate_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock)
    assert [bucket.take() for _ in range(10)] == [0.0] * 10
    # The 11th token is 1/5 s away, the 12th 2/5 s: excess callers wait, they are not refused.
    assert bucket.take() == 0.2
    assert abs(bucket.take() - 0.4) < 1e-9
    clock.now += 0.4
    assert abs(bucket.take() - 0.2) < 1e-9
    clock.now += 100
    assert bucket.available == 10


def test_rate_below_one_becomes_one() -> None:
    bucket = TokenBucket(0, clock=FakeClock())
    assert bucket.rate == 1
    assert bucket.capacity == 2


async def test_router_accepts_a_burst_then_the_rate(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    rate, clients = 10, 30
    loop = asyncio.get_running_loop()
    async with router_factory(
        mapping={"mc.example.com": backend.address}, connection_rate_limit=rate
    ) as router:
        start = loop.time()
        writers = []
        for _ in range(clients):
            _, writer = await asyncio.open_connection("127.0.0.1", router.port)
            writer.write(login_hello("mc.example.com"))
            writers.append(writer)
        arrivals = []
        for _ in range(clients):
            await backend.next_connection(timeout=10)
            arrivals.append(loop.time() - start)
        for writer in writers:
            writer.close()
    # 2R = 20 at once; the other 10 take about one more second (R = 10/s).
    assert arrivals[2 * rate - 1] < 0.5
    assert arrivals[-1] >= (clients - 2 * rate) / rate * 0.8


async def test_excess_connections_wait_instead_of_being_refused(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with router_factory(
        mapping={"mc.example.com": backend.address}, connection_rate_limit=1
    ) as router:
        for _ in range(3):
            async with connect(router.port) as (_, writer):
                writer.write(login_hello("mc.example.com"))
                await backend.next_connection(timeout=5)
