"""Shared fixtures: a running router on 127.0.0.1:0 and fake backends."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvloop

from mc_router.app import Router
from mc_router.settings import Settings
from tests.fakes import FakeBackend

RouterFactory = Callable[..., contextlib.AbstractAsyncContextManager[Router]]


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: loopback only, an ephemeral port, no rate limit in the way."""
    base: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "port": 0,
        "connection_rate_limit": 100_000,
        "drain_timeout": 0.1,
    }
    base.update(overrides)
    return dataclasses.replace(Settings(), **base)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every async test on uvloop, the loop the router uses in production."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def router_factory() -> RouterFactory:
    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Router]:
        async with Router(make_settings(**overrides)) as router:
            yield router

    return factory


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as server:
        yield server


@pytest.fixture
async def mc_backend() -> AsyncIterator[FakeBackend]:
    """A backend that answers status pings like a real server (readiness probes pass)."""
    async with FakeBackend(answer_status=True) as server:
        yield server
