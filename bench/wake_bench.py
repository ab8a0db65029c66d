"""Cold-start timeline of one wake through the router (issue #5 report).

A webhook control plane (aiohttp, 127.0.0.1) receives `up` and "starts" a backend: its port
opens OPEN seconds later and it answers status READY seconds later (a modded server that
listens before it is ready). A raw client logs in through the router; we timestamp

    login sent -> `up` received -> backend port open -> backend answers status (really ready)
    -> the player's login reaches the backend

and report the router's overhead: connected minus really-ready (readiness polling plus dial
plus replay), and the round trip the wake request adds. Run from the repo root:

    .venv/bin/python bench/wake_bench.py [--runs 5] [--open 1.0] [--ready 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import statistics
import sys
from pathlib import Path

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mc_router.app import Router
from mc_router.protocol import Handshake, HandshakeReader
from mc_router.settings import Settings
from tests.fakes import FAKE_STATUS, answer_status, login_hello


@dataclasses.dataclass
class Timeline:
    login_sent: float = 0.0
    up_received: float = 0.0
    port_open: float = 0.0
    ready: float = 0.0
    connected: float = 0.0


class SlowBackend:
    """Binds at once, listens after `open_after`, answers status after `ready_after`."""

    def __init__(self, timeline: Timeline, open_after: float, ready_after: float) -> None:
        self.timeline = timeline
        self.open_after = open_after
        self.ready_after = ready_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.ready = asyncio.Event()
        self.login = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.open_after)
        self.sock.listen(64)
        self.server = await asyncio.start_server(self.on_client, sock=self.sock)
        self.timeline.port_open = loop.time()
        await asyncio.sleep(self.ready_after - self.open_after)
        self.timeline.ready = loop.time()
        self.ready.set()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = HandshakeReader()
        event: object = None
        while not isinstance(event, Handshake):
            data = await reader.read(4096)
            if not data:
                writer.close()
                return
            hello.feed(data)
            event = hello.next_event()
        if event.next_state == 2:
            self.timeline.connected = asyncio.get_running_loop().time()
            self.login.set()
            writer.close()
            return
        await self.ready.wait()  # a loading server accepts, then says nothing until ready
        await answer_status(reader, writer, hello.trailing_data, FAKE_STATUS)

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()
        for task in self.tasks:
            task.cancel()


async def one_run(open_after: float, ready_after: float) -> Timeline:
    loop = asyncio.get_running_loop()
    timeline = Timeline()
    backend = SlowBackend(timeline, open_after, ready_after)

    async def up(request: web.Request) -> web.Response:
        body = await request.json()
        if body["action"] == "up" and not timeline.up_received:
            timeline.up_received = loop.time()
            task = asyncio.create_task(backend.start())
            backend.tasks.add(task)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/scale", up)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = dataclasses.replace(
        Settings(),
        listen_host="127.0.0.1",
        port=0,
        connection_rate_limit=1000,
        auto_scale_webhook_url=f"http://127.0.0.1:{port}/scale",
        auto_scale_down_after=3600,
        mapping={"survival.example.com": backend.address},
        drain_timeout=0.1,
    )
    try:
        async with Router(settings) as router:
            _, writer = await asyncio.open_connection("127.0.0.1", router.port)
            timeline.login_sent = loop.time()
            writer.write(login_hello("survival.example.com"))
            await asyncio.wait_for(backend.login.wait(), 30)
            writer.close()
    finally:
        await backend.aclose()
        await runner.cleanup()
    return timeline


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--open", type=float, default=1.0, help="port opens after (s)")
    parser.add_argument("--ready", type=float, default=2.0, help="status answers after (s)")
    args = parser.parse_args()
    rows = [await one_run(args.open, args.ready) for _ in range(args.runs)]

    def ms(values: list[float]) -> str:
        return (
            f"median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms"
        )

    print(
        f"{args.runs} wakes; backend port opens {args.open}s and answers status {args.ready}s "
        "after the `up` request"
    )
    print("login sent  -> up received   ", ms([r.up_received - r.login_sent for r in rows]))
    print("up received -> port open     ", ms([r.port_open - r.up_received for r in rows]))
    print("port open   -> really ready  ", ms([r.ready - r.port_open for r in rows]))
    print("really ready -> connected    ", ms([r.connected - r.ready for r in rows]))
    print("login sent  -> connected     ", ms([r.connected - r.login_sent for r in rows]))
    early = [r for r in rows if r.connected < r.ready]
    print(f"logins passed to a backend before it answered status: {len(early)}")


if __name__ == "__main__":
    uvloop.run(main())
