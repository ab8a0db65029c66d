"""The real process: signals, draining and exit codes (spec §4.12, Q10/Q11 fixed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.fakes import FakeBackend, connect, login_hello, read_exactly, read_to_eof


@dataclass
class RouterProcess:
    process: asyncio.subprocess.Process
    port: int
    log: list[str]

    async def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            for line in self.log:
                if re.search(pattern, line):
                    return line
            while True:
                raw = await self.process.stderr.readline()
                if not raw:
                    raise AssertionError(f"router exited before logging {pattern!r}: {self.log}")
                line = raw.decode()
                self.log.append(line)
                if re.search(pattern, line):
                    return line


async def spawn_router(*args: str) -> asyncio.subprocess.Process:
    """`python -m mc_router -listen-host 127.0.0.1 <args>` with piped output."""
    env = {k: v for k, v in os.environ.items() if k not in ("VERSION", "DEBUG", "PORT")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mc_router",
        "-listen-host",
        "127.0.0.1",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def failed_start(*args: str) -> tuple[int | None, bytes]:
    """Run a router that must fail to start; its exit status and stderr."""
    process = await spawn_router(*args)
    _, err = await asyncio.wait_for(process.communicate(), 15)
    return process.returncode, err


@contextlib.asynccontextmanager
async def router_process(*args: str) -> AsyncIterator[RouterProcess]:
    process = await spawn_router("-port", "0", *args)
    proc = RouterProcess(process, 0, [])
    try:
        line = await proc.wait_for_log("Listening for Minecraft client connections", 15)
        match = re.search(r"listenAddress=\S+:(\d+)", line)
        assert match, line
        proc.port = int(match.group(1))
        yield proc
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _exit_code(proc: RouterProcess, timeout: float) -> int:
    async with asyncio.timeout(timeout):
        assert proc.process.stderr is not None
        rest = await proc.process.stderr.read()
        proc.log.extend(rest.decode().splitlines())
        return await proc.process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_active_connections_then_exits_zero(
    backend: FakeBackend, signum: int
) -> None:
    loop = asyncio.get_running_loop()
    async with (
        router_process(
            "-mapping", f"mc.example.com={backend.address}", "-drain-timeout", "10s"
        ) as proc,
        connect(proc.port) as (reader, writer),
    ):
        hello = login_hello("mc.example.com")
        writer.write(hello)
        conn = await backend.next_connection()
        await read_exactly(conn, len(hello))
        proc.process.send_signal(signum)
        await proc.wait_for_log("Waiting for connections to complete")
        # New clients are no longer accepted...
        with pytest.raises(ConnectionRefusedError):
            async with connect(proc.port):
                pass
        # ...while the active one keeps relaying both ways during the grace period.
        writer.write(b"still here")
        assert await read_exactly(conn, 10) == b"still here"
        conn.writer.write(b"me too")
        assert await reader.readexactly(6) == b"me too"
        # When it ends, the router exits at once with status 0 (not after the full 10 s).
        start = loop.time()
        conn.writer.close()
        assert await read_to_eof(reader) == b""
        writer.close()
        assert await _exit_code(proc, 5) == 0
        assert loop.time() - start < 3


async def test_drain_deadline_cuts_lingering_connections(backend: FakeBackend) -> None:
    async with (
        router_process(
            "-mapping", f"mc.example.com={backend.address}", "-drain-timeout", "500ms"
        ) as proc,
        connect(proc.port) as (reader, writer),
    ):
        writer.write(login_hello("mc.example.com"))
        await backend.next_connection()
        proc.process.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 5) == 0
        assert await read_to_eof(reader) == b""


async def test_sighup_without_routes_file_is_logged_not_a_crash(backend: FakeBackend) -> None:
    async with router_process("-mapping", f"mc.example.com={backend.address}") as proc:
        proc.process.send_signal(signal.SIGHUP)
        await proc.wait_for_log("SIGHUP")
        async with connect(proc.port) as (_, writer):
            writer.write(login_hello("mc.example.com"))
            conn = await backend.next_connection()
        conn.writer.close()
        proc.process.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 5) == 0


async def test_listen_failure_exits_one() -> None:
    async with FakeBackend() as busy:
        status, err = await failed_start("-port", str(busy.port))
    assert status == 1
    assert b"listen" in err.lower()


async def test_unsupported_feature_flag_fails_clearly() -> None:
    status, err = await failed_start("-port", "0", "-in-docker")
    assert status == 1
    assert b"not supported" in err
