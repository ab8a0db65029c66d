"""Data-plane benchmark: the router against a direct connection, haproxy and minimal relays.

Every target is measured in the same run against the same backend, so the ratios are
meaningful on whatever machine runs it. See bench/README.md for what each figure means.

Process layout (the machine this was written on has 2 cores): this process runs the load
generator *and* the backend on one uvloop event loop, pinned to CPU 0; the target under test
(router, haproxy or a minimal relay) runs alone, pinned to CPU 1. So a relay gets a core of its
own, and "direct" is the load generator talking to the backend with no relay in between.

    .venv/bin/python bench/bench.py            # full run, a few minutes
    .venv/bin/python bench/bench.py --quick    # ~1 minute, noisier
    .venv/bin/python bench/bench.py --targets direct,router,haproxy --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from mc_router.protocol import (
    NEED_DATA,
    Frame,
    FrameReader,
    decode_string,
    decode_varint,
    encode_frame,
    encode_handshake,
    encode_string,
    status_json,
    status_request,
    status_response,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
SERVER_ADDRESS = "bench.local"
PROTOCOL_VERSION = 765  # 1.20.4: Login Start = name + UUID

# The handshake's server_port tells the backend what to do after Login Start (the router
# replays the handshake unmodified, so this survives every target).
MODE_ECHO, MODE_SINK, MODE_SOURCE = 1, 2, 3

STATUS_HELLO = encode_handshake(PROTOCOL_VERSION, SERVER_ADDRESS, 25565, 1) + status_request()
STATUS_RESPONSE = status_response(status_json("mc-router bench backend", PROTOCOL_VERSION))
BULK_CHUNK = bytes(256 * 1024)
RTT_PAYLOAD = bytes(range(64))
IDLE_PING = b"\x00" * 8


def login_hello(mode: int) -> bytes:
    login_start = encode_frame(0, encode_string("bench") + uuid.UUID(int=mode).bytes)
    return encode_handshake(PROTOCOL_VERSION, SERVER_ADDRESS, mode, 2) + login_start


# ---------------------------------------------------------------------------------------------
# Backend: speaks just enough Minecraft
# ---------------------------------------------------------------------------------------------


class BackendStats:
    def __init__(self) -> None:
        self.active = 0
        self.sunk = 0


class BackendConn(asyncio.Protocol):
    """Status: handshake + status request -> status response (and ping -> pong).
    Login: handshake + Login Start, then by the handshake's port: echo, sink or source."""

    def __init__(self, stats: BackendStats) -> None:
        self.stats = stats
        self.frames: FrameReader | None = FrameReader()
        self.next_state = 0
        self.mode = 0
        self.paused = False
        self.lost = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats.active += 1

    def data_received(self, data: bytes) -> None:
        mode = self.mode
        if mode == MODE_ECHO:
            self.transport.write(data)  # type: ignore[union-attr]
        elif mode == MODE_SINK:
            self.stats.sunk += len(data)
        elif mode == 0:
            self._hello(data)

    def _hello(self, data: bytes) -> None:
        frames = self.frames
        assert frames is not None and self.transport is not None
        frames.feed(data)
        while True:
            frame = frames.next_event()
            if frame is NEED_DATA:
                return
            assert isinstance(frame, Frame)
            if self.next_state == 0:
                payload = frame.payload
                _, pos = decode_varint(payload, 0)
                _, pos = decode_string(payload, pos)
                port = int.from_bytes(payload[pos : pos + 2], "big")
                self.next_state, _ = decode_varint(payload, pos + 2)
                self.port = port
            elif self.next_state == 1:
                if frame.packet_id == 0:
                    self.transport.write(STATUS_RESPONSE)
                elif frame.packet_id == 1:
                    self.transport.write(encode_frame(1, frame.payload))
            else:  # Login Start: switch to the mode named by the handshake's port
                self.mode = self.port
                rest = frames.trailing_data
                self.frames = None
                if self.mode == MODE_SOURCE:
                    self._fill()
                elif rest:
                    self.data_received(rest)
                return

    def _fill(self) -> None:
        transport = self.transport
        assert transport is not None
        # is_closing(): a transport closed by an error drops writes without pausing us.
        while not self.paused and not self.lost and not transport.is_closing():
            transport.write(BULK_CHUNK)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.mode == MODE_SOURCE:
            self._fill()

    def eof_received(self) -> bool:
        return False  # close when the client has finished

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.stats.active -= 1


# ---------------------------------------------------------------------------------------------
# Load generator protocols
# ---------------------------------------------------------------------------------------------


def frame_complete(buf: bytes | bytearray) -> bool:
    try:
        length, pos = decode_varint(buf, 0)
    except Exception:
        return False
    return len(buf) >= pos + length


class StatusClient(asyncio.Protocol):
    __slots__ = ("buf", "done", "transport")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(STATUS_HELLO)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if frame_complete(self.buf):
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before the status response: {exc}"))


class StreamClient(asyncio.Protocol):
    """A login-mode connection: counts received bytes, wakes a waiter at a byte target,
    and (for bulk upload) writes while the transport is not paused."""

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.received = 0
        self.target = 0
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.lost = False
        self.flood = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(login_hello(self.mode))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        waiter = self.waiter
        if waiter is not None and self.received >= self.target and not waiter.done():
            waiter.set_result(None)

    def until(self, target: int) -> asyncio.Future[None]:
        self.target = target
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        if self.received >= target or self.lost:
            self._finish()
        return waiter

    def _finish(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.received >= self.target:
                waiter.set_result(None)
            else:
                waiter.set_exception(ConnectionError("connection lost"))

    def start_flood(self) -> None:
        self.flood = True
        self._fill()

    def _fill(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.flood and not self.paused and not self.lost and not transport.is_closing():
            transport.write(BULK_CHUNK)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._fill()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._finish()


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
    duration: float
    warmup: float
    idle_connections: int


class Window:
    """Runs workers for warmup + duration and exposes whether we are inside the measured part."""

    def __init__(self) -> None:
        self.stop = False
        self.measuring = False


CLK_TCK = os.sysconf("SC_CLK_TCK")
# Pids whose CPU time is ours (this process and the target); everything else is "other load".
OUR_PIDS: set[int] = {os.getpid()}
# The last window's other load: (cores busy with other processes, cores stolen by the host).
LAST_LOAD: list[float] = [0.0, 0.0]
# The target process (None for direct) and its CPU seconds in the last measured window.
TARGET_PID: list[int | None] = [None]
LAST_TARGET_CPU: list[float | None] = [None]


def target_cpu_ns() -> int | None:
    """Nanoseconds the target has run on a CPU (/proc/<pid>/schedstat), None for direct."""
    pid = TARGET_PID[0]
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot() -> tuple[int, int, int]:
    """(busy jiffies of all CPUs excluding irq/softirq, steal jiffies, our processes' jiffies)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields[:8])
    ours = 0
    for pid in list(OUR_PIDS):
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ours += int(stat[11]) + int(stat[12])
    return user + nice + system, steal, ours


async def measure_window(
    timing: Timing, workers: list[Callable[[Window], Any]], sample: Callable[[], float]
) -> tuple[float, float, Window]:
    """Run workers; return (sampled delta, seconds) over the measured window."""
    window = Window()
    tasks = [asyncio.create_task(w(window)) for w in workers]
    try:
        await asyncio.sleep(timing.warmup)
        window.measuring = True
        t0, s0, c0, p0 = time.perf_counter(), sample(), cpu_snapshot(), target_cpu_ns()
        await asyncio.sleep(timing.duration)
        t1, s1, c1, p1 = time.perf_counter(), sample(), cpu_snapshot(), target_cpu_ns()
        LAST_TARGET_CPU[0] = None if p0 is None or p1 is None else (p1 - p0) / 1e9
        busy, steal, ours = (b - a for a, b in zip(c0, c1, strict=True))
        LAST_LOAD[:] = [max(0, busy - ours) / CLK_TCK / (t1 - t0), steal / CLK_TCK / (t1 - t0)]
        window.measuring = False
        window.stop = True
        async with asyncio.timeout(15):
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
    return s1 - s0, t1 - t0, window


async def conn_rate(addr: tuple[str, int], concurrency: int, timing: Timing) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done = [0]
    errors = [0]
    last_error: list[str] = []

    async def worker(window: Window) -> None:
        while not window.stop:
            fut = loop.create_future()
            try:
                transport, _ = await loop.create_connection(
                    lambda fut=fut: StatusClient(fut), *addr
                )
                try:
                    async with asyncio.timeout(5):
                        await fut
                finally:
                    transport.close()
                done[0] += 1
            except (OSError, TimeoutError) as exc:
                errors[0] += 1
                last_error[:] = [repr(exc)]
                await asyncio.sleep(0.01)

    count, seconds, _ = await measure_window(timing, [worker] * concurrency, lambda: done[0])
    out: dict[str, Any] = {"value": count / seconds, "errors": errors[0]}
    if last_error:
        out["last_error"] = last_error[0]
    return out


async def open_stream(addr: tuple[str, int], mode: int) -> tuple[asyncio.Transport, StreamClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: StreamClient(mode), *addr)
    return transport, client  # type: ignore[return-value]


async def bulk(
    addr: tuple[str, int], direction: str, timing: Timing, stats: BackendStats
) -> dict[str, Any]:
    """One connection; MB/s (10^6 bytes) delivered at the receiving end."""
    mode = MODE_SINK if direction == "up" else MODE_SOURCE
    transport, client = await open_stream(addr, mode)
    try:
        if direction == "up":
            client.start_flood()
            sample: Callable[[], float] = lambda: stats.sunk  # noqa: E731
        else:
            sample = lambda: client.received  # noqa: E731

        async def idle(window: Window) -> None:
            # A bounded poll of plain flags set by protocol callbacks.
            while not window.stop and not client.lost:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        nbytes, seconds, _ = await measure_window(timing, [idle], sample)
        if client.lost:
            raise ConnectionError("bulk connection lost")
    finally:
        client.flood = False
        transport.abort()
    return {"value": nbytes / seconds / 1e6, "bytes": nbytes}


async def round_trips(addr: tuple[str, int], concurrency: int, timing: Timing) -> dict[str, Any]:
    conns = await asyncio.gather(*(open_stream(addr, MODE_ECHO) for _ in range(concurrency)))
    latencies: list[int] = []
    count = [0]
    try:

        def make_worker(client: StreamClient) -> Callable[[Window], Any]:
            async def worker(window: Window) -> None:
                transport = client.transport
                assert transport is not None
                perf = time.perf_counter_ns
                size = len(RTT_PAYLOAD)
                while not window.stop:
                    waiter = client.until(client.received + size)
                    t0 = perf()
                    transport.write(RTT_PAYLOAD)
                    await waiter
                    if window.measuring:
                        latencies.append(perf() - t0)
                        count[0] += 1

            return worker

        n, seconds, _ = await measure_window(
            timing, [make_worker(c) for _, c in conns], lambda: count[0]
        )
    finally:
        for transport, _ in conns:
            transport.close()
    latencies.sort()
    return {
        "value": n / seconds,
        "p50_us": latencies[len(latencies) // 2] / 1e3 if latencies else None,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1e3 if latencies else None,
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_idle(addr: tuple[str, int], n: int) -> list[tuple[asyncio.Transport, StreamClient]]:
    """Open n login connections, each proven to be relaying by one 8-byte echo."""
    conns: list[tuple[asyncio.Transport, StreamClient]] = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            transport, client = await open_stream(addr, MODE_ECHO)
            conns.append((transport, client))
            waiter = client.until(len(IDLE_PING))
            transport.write(IDLE_PING)
            async with asyncio.timeout(10):
                await waiter

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for transport, _ in conns:
            transport.abort()
        raise RuntimeError(f"{len(failures)} of {n} idle connections failed: {failures[0]!r}")
    return conns


async def idle_rss(addr: tuple[str, int], pid: int, n: int, stats: BackendStats) -> dict[str, Any]:
    # Warm up first so one-time allocations (imports, caches, free lists) are not counted.
    warm = await open_idle(addr, 50)
    for transport, _ in warm:
        transport.close()
    await wait_backend_idle(stats)
    await asyncio.sleep(0.3)
    before = rss_kib(pid)
    conns = await open_idle(addr, n)
    try:
        await asyncio.sleep(0.5)
        after = rss_kib(pid)
    finally:
        for transport, _ in conns:
            transport.close()
    return {
        "value": (after - before) / n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "connections": n,
    }


async def wait_backend_idle(stats: BackendStats, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    # A bounded poll of a counter kept by protocol callbacks.
    while stats.active and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

CHILDREN: list[subprocess.Popen[bytes]] = []

HAPROXY_CFG = """\
global
    nbthread 1
    maxconn 9000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend bench
    bind {host}:{port}
    default_backend bench
backend bench
    server backend {host}:{backend}
"""


@dataclasses.dataclass
class Target:
    name: str
    describe: str
    command: Callable[[int, int, Path], list[str]] | None  # (port, backend port, tmp) -> argv
    env: dict[str, str] = dataclasses.field(default_factory=dict)


def router_command(extra: tuple[str, ...] = ()) -> Callable[[int, int, Path], list[str]]:
    def command(port: int, backend: int, tmp: Path) -> list[str]:
        return [
            PYTHON,
            "-m",
            "mc_router",
            "-listen-host",
            HOST,
            "-port",
            str(port),
            "-connection-rate-limit",
            "1000000",
            "-mapping",
            f"{SERVER_ADDRESS}={HOST}:{backend}",
            *extra,
        ]

    return command


def relay_command(kind: str, loop: str) -> Callable[[int, int, Path], list[str]]:
    def command(port: int, backend: int, tmp: Path) -> list[str]:
        return [
            PYTHON,
            str(HERE / "relays.py"),
            "--kind",
            kind,
            "--loop",
            loop,
            "--port",
            str(port),
            "--backend",
            f"{HOST}:{backend}",
        ]

    return command


def haproxy_command(port: int, backend: int, tmp: Path) -> list[str]:
    cfg = tmp / f"haproxy-{port}.cfg"
    cfg.write_text(HAPROXY_CFG.format(host=HOST, port=port, backend=backend))
    return [shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)]


def all_targets() -> dict[str, Target]:
    targets = [
        Target("direct", "client -> backend, no relay", None),
        Target("router", "python -m mc_router (uvloop, default info logging)", router_command()),
        Target("haproxy", "Debian haproxy, mode tcp, nbthread 1", haproxy_command),
        Target(
            "streams-asyncio", "minimal asyncio-streams relay", relay_command("streams", "asyncio")
        ),
        Target(
            "streams-uvloop",
            "minimal asyncio-streams relay on uvloop",
            relay_command("streams", "uvloop"),
        ),
        Target(
            "protocol-asyncio",
            "minimal asyncio.Protocol relay",
            relay_command("protocol", "asyncio"),
        ),
        Target(
            "protocol-uvloop",
            "minimal asyncio.Protocol relay on uvloop",
            relay_command("protocol", "uvloop"),
        ),
        Target(
            "splice-uvloop", "minimal os.splice relay on uvloop", relay_command("splice", "uvloop")
        ),
    ]
    return {t.name: t for t in targets}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    with contextlib.suppress(ValueError):
        CHILDREN.remove(proc)


async def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text()[-2000:]  # noqa: ASYNC240 - small file, error path
            raise RuntimeError(f"target exited with {proc.returncode}: {output}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    output = log.read_text()[-2000:]  # noqa: ASYNC240 - small file, error path
    raise RuntimeError(f"target did not listen on {port}: {output}")


@contextlib.contextmanager
def pinned(pid: int, cpu: int | None) -> Iterator[None]:
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})
    yield


async def run_target(
    target: Target,
    *,
    timing: Timing,
    metrics: list[str],
    tmp: Path,
    cpu: int | None,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = BackendStats()
    backend = await loop.create_server(lambda: BackendConn(stats), HOST, 0, backlog=4096)
    backend_port = backend.sockets[0].getsockname()[1]
    proc: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"describe": target.describe}
    try:
        if target.command is None:
            addr = (HOST, backend_port)
        else:
            port = free_port()
            log = tmp / f"{target.name}.log"
            argv = target.command(port, backend_port, tmp)
            if profile_dir is not None and argv[0] == PYTHON:
                prof = profile_dir / f"{target.name}.prof"
                argv = [PYTHON, "-m", "cProfile", "-o", str(prof), *argv[1:]]
            with log.open("wb") as out:
                proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **target.env},
                    start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
                )
            CHILDREN.append(proc)
            OUR_PIDS.add(proc.pid)
            TARGET_PID[0] = proc.pid
            if cpu is not None:
                os.sched_setaffinity(proc.pid, {cpu})
            await wait_listening(port, proc, log)
            addr = (HOST, port)
            result["rss_start_kib"] = rss_kib(proc.pid)
        for metric in metrics:
            try:
                async with asyncio.timeout(timing.duration * 3 + 60):
                    if metric == "idle":
                        if proc is None:
                            continue
                        value = await idle_rss(addr, proc.pid, timing.idle_connections, stats)
                    elif metric == "conn1":
                        value = await conn_rate(addr, 1, timing)
                    elif metric == "conn64":
                        value = await conn_rate(addr, 64, timing)
                    elif metric == "bulk_up":
                        value = await bulk(addr, "up", timing, stats)
                    elif metric == "bulk_down":
                        value = await bulk(addr, "down", timing, stats)
                    elif metric == "rtt":
                        value = await round_trips(addr, 100, timing)
                    else:
                        raise ValueError(metric)
                    if metric != "idle":
                        value["other_load_cores"] = round(LAST_LOAD[0], 2)
                        value["steal_cores"] = round(LAST_LOAD[1], 2)
                        add_cpu_cost(metric, value, timing)
            except (OSError, RuntimeError, TimeoutError, ConnectionError) as exc:
                value = {"value": None, "error": repr(exc)}
            result[metric] = value
            await wait_backend_idle(stats)
            print(f"  {target.name:18} {metric:9} {fmt_metric(metric, value)}", flush=True)
        if proc is not None:
            result["cpu_s"] = cpu_seconds(proc.pid)
    finally:
        if proc is not None:
            stop_process(proc)
            OUR_PIDS.discard(proc.pid)
            TARGET_PID[0] = None
        backend.close()
        await backend.wait_closed()
    return result


def add_cpu_cost(metric: str, value: dict[str, Any], timing: Timing) -> None:
    """The target's CPU cost per unit of work: robust to other load, unlike rates."""
    cpu = LAST_TARGET_CPU[0]
    if cpu is None or not value.get("value"):
        return
    seconds = timing.duration
    value["target_cpu_util"] = round(cpu / seconds, 3)
    if metric.startswith("bulk"):
        value["target_cpu_s_per_gb"] = round(cpu / (value["value"] * seconds / 1e3), 4)
    else:  # connections or round trips
        value["target_cpu_us_per_op"] = round(cpu / (value["value"] * seconds) * 1e6, 2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

METRICS = ["idle", "conn1", "conn64", "bulk_up", "bulk_down", "rtt"]
HEADERS = {
    "conn1": "conn/s c=1",
    "conn64": "conn/s c=64",
    "bulk_up": "up MB/s",
    "bulk_down": "down MB/s",
    "rtt": "rtt/s c=100",
    "rtt_p50": "p50 us",
    "rtt_p99": "p99 us",
    "idle": "KiB/idle",
    "cpu_conn": "CPUus/conn",
    "cpu_rtt": "CPUus/rtt",
    "cpu_gb": "CPUs/GB up",
}
COLUMNS = ["conn1", "conn64", "bulk_up", "bulk_down", "rtt", "rtt_p50", "rtt_p99", "idle"]
COST_COLUMNS = ["cpu_conn", "cpu_rtt", "cpu_gb"]


# Other processes using this much CPU during a window make its figures suspect.
NOISY_CORES = 0.1


def fmt_metric(metric: str, value: dict[str, Any]) -> str:
    if value.get("value") is None:
        return f"FAILED {value.get('error')}"
    text = f"{value['value']:.1f}"
    if metric == "rtt":
        text += f" (p50 {value['p50_us']:.0f} us, p99 {value['p99_us']:.0f} us)"
    if metric == "idle":
        text += f" KiB/conn ({value['rss_before_kib']} -> {value['rss_after_kib']} KiB)"
    util = value.get("target_cpu_util")
    if "target_cpu_us_per_op" in value:
        text += f" [target {value['target_cpu_us_per_op']:.1f} CPU-us/op, util {util:.2f}]"
    if "target_cpu_s_per_gb" in value:
        text += f" [target {value['target_cpu_s_per_gb']:.3f} CPU-s/GB, util {util:.2f}]"
    other, steal = value.get("other_load_cores", 0), value.get("steal_cores", 0)
    if other >= NOISY_CORES or steal >= NOISY_CORES:
        text += f" [noisy: other processes {other:.2f} cores, steal {steal:.2f}]"
    if value.get("errors"):
        text += f" [{value['errors']} errors: {value.get('last_error')}]"
    return text


def column(result: dict[str, Any], col: str) -> float | None:
    if col == "cpu_conn":
        return (result.get("conn64") or {}).get("target_cpu_us_per_op")
    if col == "cpu_rtt":
        return (result.get("rtt") or {}).get("target_cpu_us_per_op")
    if col == "cpu_gb":
        return (result.get("bulk_up") or {}).get("target_cpu_s_per_gb")
    if col in ("rtt_p50", "rtt_p99"):
        rtt = result.get("rtt") or {}
        return rtt.get("p50_us" if col == "rtt_p50" else "p99_us")
    return (result.get(col) or {}).get("value")


def table(results: dict[str, dict[str, Any]], ref: str | None, columns: list[str] = COLUMNS) -> str:
    names = [n for n in results if ref is None or n != "direct" or columns is COLUMNS]
    widths = [max(18, *(len(n) for n in names))] + [12] * len(columns)
    lines = [
        "".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(
                zip(["target", *(HEADERS[c] for c in columns)], widths, strict=True)
            )
        )
    ]
    for name in names:
        cells = [name]
        for col in columns:
            value = column(results[name], col)
            if ref is None:
                cells.append(
                    "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
                )
            else:
                base = column(results.get(ref, {}), col)
                cells.append("-" if value is None or not base else f"{value / base:.2f}x")
        lines.append(
            "".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    haproxy = shutil.which("haproxy")
    version = None
    if haproxy:
        out = subprocess.run([haproxy, "-v"], capture_output=True, text=True, check=False)
        version = out.stdout.splitlines()[0] if out.stdout else None
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": uvloop.__version__,
        "haproxy": version,
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace, targets: list[Target], timing: Timing) -> dict[str, Any]:
    # SIGTERM (e.g. from `timeout`) cancels the run so every child is still stopped in order.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    cpus = sorted(os.sched_getaffinity(0))
    target_cpu: int | None = None
    if args.pin and len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
        target_cpu = cpus[1]
    metrics = args.metrics.split(",")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mc-router-bench-") as tmpdir:
        for rnd in range(args.rounds):
            for target in targets:
                print(
                    f"[round {rnd + 1}/{args.rounds}] {target.name}: {target.describe}", flush=True
                )
                try:
                    result = await run_target(
                        target,
                        timing=timing,
                        metrics=metrics,
                        tmp=Path(tmpdir),
                        cpu=target_cpu,
                        profile_dir=args.profile,
                    )
                except (OSError, RuntimeError) as exc:
                    print(f"  {target.name}: FAILED: {exc}", flush=True)
                    result = {"describe": target.describe, "error": repr(exc)}
                results.setdefault(target.name, []).append(result)  # type: ignore[arg-type]
    # Median over rounds per metric.
    merged: dict[str, dict[str, Any]] = {}
    for name, runs in results.items():
        merged[name] = dict(runs[0])  # type: ignore[index]
        for metric in metrics:
            values = [r[metric] for r in runs if r.get(metric, {}).get("value") is not None]  # type: ignore[union-attr]
            if values:
                values.sort(key=lambda v: v["value"])
                median = dict(values[len(values) // 2])
                if len(runs) > 1:  # type: ignore[arg-type]
                    median["all"] = [round(v["value"], 2) for v in values]
                merged[name][metric] = median
        if len(runs) > 1:  # type: ignore[arg-type]
            merged[name]["rounds"] = runs
    return {
        "machine": machine(),
        "timing": dataclasses.asdict(timing),
        "pinned": target_cpu is not None,
        "results": merged,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="mc-router data-plane benchmark")
    parser.add_argument("--quick", action="store_true", help="short windows (~1 minute in all)")
    parser.add_argument("--duration", type=float, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each window")
    parser.add_argument("--idle", type=int, help="idle connections for the RSS test (5000)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every target; report medians")
    parser.add_argument("--targets", default=",".join(all_targets()), help="comma-separated")
    parser.add_argument(
        "--metrics", default=",".join(METRICS), help="comma-separated: " + ",".join(METRICS)
    )
    parser.add_argument(
        "--router-variant",
        action="append",
        default=[],
        metavar="NAME=SRC_DIR[@FLAGS]",
        help="also run the router from another source tree (PYTHONPATH=SRC_DIR), with extra "
        "router flags after @, as router[NAME]",
    )
    parser.add_argument(
        "--router-args", default="", help="extra router flags, e.g. '-log-level warn'"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run Python targets under cProfile, writing DIR/<target>.prof (slows them down)",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin CPUs")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    timing = Timing(
        duration=args.duration or (1.0 if args.quick else 3.0),
        warmup=args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5),
        idle_connections=args.idle or 5000,
    )
    available = all_targets()
    extra = tuple(args.router_args.split())
    if extra:
        available["router"] = dataclasses.replace(
            available["router"],
            command=router_command(extra),
            describe=available["router"].describe + " " + args.router_args,
        )
    targets: list[Target] = []
    for name in args.targets.split(","):
        if name not in available:
            parser.error(f"unknown target {name!r}; choose from {', '.join(available)}")
        if name == "haproxy" and shutil.which("haproxy") is None:
            print(
                "haproxy not installed (apt-get install -y haproxy): skipping it", file=sys.stderr
            )
            continue
        targets.append(available[name])
    for spec in args.router_variant:
        name, _, rest = spec.partition("=")
        src, _, flags = rest.partition("@")
        targets.append(
            Target(
                f"router[{name}]",
                f"router from {src} {flags}".strip(),
                router_command(extra + tuple(flags.split())),
                env={"PYTHONPATH": str(Path(src).resolve())},
            )
        )

    # 5,000 idle connections cost this process 2 fds each (client + backend side).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * timing.idle_connections + 1000:
        print(
            f"warning: RLIMIT_NOFILE hard limit {hard} is low for "
            f"{timing.idle_connections} idle connections",
            file=sys.stderr,
        )

    started = time.monotonic()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(amain(args, targets, timing))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for proc in list(CHILDREN):
            stop_process(proc)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    results = report["results"]
    print()
    print(f"machine: {report['machine']}")
    print(
        f"timing: {report['timing']}, target pinned to its own CPU: {report['pinned']}, "
        f"elapsed {report['elapsed_s']} s"
    )
    print(
        "\nabsolute (conn/s, MB/s = 1e6 B/s, round trips/s, microseconds, "
        "KiB of target RSS per idle connection)"
    )
    print(table(results, None))
    print("\nratio vs direct")
    print(table(results, "direct"))
    if "haproxy" in results:
        print("\nratio vs haproxy")
        print(table(results, "haproxy"))
    print(
        "\ntarget CPU cost (CPU-us per connection at c=64, per round trip; CPU-s per GB uploaded)"
    )
    print(table({n: r for n, r in results.items() if n != "direct"}, None, COST_COLUMNS))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
