"""Test helpers for the management plane: a real webhook receiver, a running API, a dead port.

Everything binds 127.0.0.1 on an ephemeral port and is stopped by its context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from mc_router.api import ApiServer, start_api


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver that records each POST. Close `gate` to make it slow; `status` is
    what it answers."""

    status: int = 200
    deliveries: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived.set()
        await self.gate.wait()
        await self.deliveries.put(Delivery(dict(request.headers), body))
        return web.Response(status=self.status)

    async def __aenter__(self) -> Receiver:
        self.gate.set()
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.gate.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def next(self, timeout: float = 5.0) -> Delivery:
        async with asyncio.timeout(timeout):
            return await self.deliveries.get()


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApi:
    server: ApiServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.asynccontextmanager
async def running_api(app: web.Application, binding: str = "127.0.0.1:0") -> AsyncIterator[
    RunningApi
]:
    server = await start_api(app, binding)
    try:
        async with aiohttp.ClientSession() as http:
            yield RunningApi(server, http)
    finally:
        await server.aclose()
