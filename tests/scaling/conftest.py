"""Fixtures for the scaling tests: status servers that are closed by the test's end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from tests.scaling.helpers import StatusServer

StatusServerFactory = Callable[..., Coroutine[Any, Any, StatusServer]]


@pytest.fixture
async def status_servers() -> AsyncIterator[StatusServerFactory]:
    """`await status_servers(mode=..., listen=True)`: a StatusServer, closed after the test."""
    servers: list[StatusServer] = []

    async def make(*, listen: bool = True, **kwargs: Any) -> StatusServer:
        server = StatusServer(**kwargs)
        servers.append(server)
        if listen:
            await server.listen()
        return server

    yield make
    for server in servers:
        await server.aclose()
