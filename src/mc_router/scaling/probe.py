"""Readiness as a real status ping, not an open port (issue #5 §3).

`fetch_status` is one client-side status exchange: Handshake (next state 1) with the given
server address, Status Request, Status Response parsed into a `StatusInfo`, and optionally a
Ping/Pong. `wait_until_ready` repeats it until a backend answers with valid status JSON, within
a deadline. A port that accepts but says nothing, closes, or answers garbage is not ready:
servers bind late but proxies (Docker's userland proxy, a Kubernetes Service, Velocity) accept
long before the Minecraft server behind them can answer.

Every failure is a `ProbeError` with a reason fit for a log line. The codec is sans-I/O
(`mc_router.protocol`); only this module touches the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Final

from mc_router.errors import MCRouterError, ProtocolError
from mc_router.logs import get_logger
from mc_router.protocol import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    Frame,
    FrameReader,
    encode_handshake,
    ping,
    status_request,
)
from mc_router.routing import Backend
from mc_router.scaling.status_memory import StatusInfo, status_from_frame

__all__ = [
    "ATTEMPT_TIMEOUT",
    "DEFAULT_PROTOCOL",
    "FIRST_INTERVAL",
    "MAX_INTERVAL",
    "ProbeError",
    "StatusInfo",
    "fetch_status",
    "wait_until_ready",
]

log = get_logger(__name__)

#: The protocol number probes announce: 1.21.4. Servers answer status whatever the number;
#: a current one keeps ViaVersion-style servers from answering in a downgraded format.
DEFAULT_PROTOCOL: Final = 769
#: First wait between readiness attempts, doubled after each failure up to MAX_INTERVAL. The
#: gap between "really ready" and "player connected" is at most one interval (bench/
#: wake_bench.py measured ~0.75 s with 0.25..1 s), while an attempt on a closed or busy port
#: costs one refused connect or one small read, so polling 4x a second stays cheap.
FIRST_INTERVAL: Final = 0.1
MAX_INTERVAL: Final = 0.25
#: One attempt's budget. A live server answers status in milliseconds even while busy (the
#: network threads answer it); longer silence means "not ready", so try again.
ATTEMPT_TIMEOUT: Final = 3.0
_READ_CHUNK: Final = 64 * 1024
_MIN_ATTEMPT: Final = 0.05


class ProbeError(MCRouterError):
    """A backend did not answer a status request with valid status JSON."""


async def fetch_status(
    address: str,
    *,
    server_address: str,
    server_port: int | None = None,
    protocol_version: int = DEFAULT_PROTOCOL,
    timeout: float,
    preamble: bytes = b"",
    with_ping: bool = False,
) -> StatusInfo:
    """One status exchange with the backend at `address` (`host:port`), within `timeout` s.

    The handshake carries `server_address` and `server_port` (default: the backend's port), as
    a client that typed that address would send them, so a backend routing by hostname (a
    proxy, another router) answers for the right server. `preamble` is written first: a PROXY
    header when backends require one. `with_ping` also checks the Ping/Pong round trip.
    """
    try:
        backend = Backend.parse(address)
    except ValueError as exc:
        raise ProbeError(str(exc)) from None
    port = backend.port if server_port is None else server_port
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            writer.write(
                preamble
                + encode_handshake(protocol_version, server_address, port, 1)
                + status_request()
            )
            frames = FrameReader(MAX_FRAME_LENGTH)
            status = status_from_frame(await _read_frame(reader, frames, address))
            if with_ping:
                payload = os.urandom(8)
                writer.write(ping(payload))
                frame = await _read_frame(reader, frames, address)
                if frame.packet_id != 0x01 or frame.payload != payload:
                    raise ProbeError(f"{address} answered the ping with something else")
            return status
    except TimeoutError:
        raise ProbeError(f"{address} did not answer the status request in time") from None
    except ProtocolError as exc:
        raise ProbeError(f"{address} sent an invalid status response: {exc}") from None
    except OSError as exc:
        raise ProbeError(f"{address}: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            writer.close()
            # The peer may be gone already; closing is best-effort and must not hang.
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


async def _read_frame(reader: asyncio.StreamReader, frames: FrameReader, address: str) -> Frame:
    while True:
        event = frames.next_event()
        if event is not NEED_DATA:
            return event
        data = await reader.read(_READ_CHUNK)
        if not data:
            raise ProbeError(f"{address} closed the connection without answering")
        frames.feed(data)


async def wait_until_ready(
    address: str,
    *,
    server_address: str,
    server_port: int | None = None,
    deadline_seconds: float,
    protocol_version: int = DEFAULT_PROTOCOL,
    interval: float = FIRST_INTERVAL,
    max_interval: float = MAX_INTERVAL,
    attempt_timeout: float = ATTEMPT_TIMEOUT,
    preamble: bytes = b"",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> StatusInfo:
    """Probe `address` until it answers status, for at most `deadline_seconds`.

    Waits `interval` after the first failed attempt, doubling up to `max_interval`. At least
    one attempt is made, even with a deadline of 0. Each attempt gets `attempt_timeout`, cut
    to the time left. Raises `ProbeError` (with the last failure) when the deadline passes.
    """
    deadline = clock() + deadline_seconds
    wait = interval
    attempts = 0
    while True:
        attempts += 1
        left = deadline - clock()
        # The one attempt a deadline of 0 still gets has the full attempt budget; later ones
        # end with the deadline (give or take a floor that lets a loopback connect finish).
        if attempts == 1 and left <= 0:
            budget = attempt_timeout
        else:
            budget = max(min(attempt_timeout, left), _MIN_ATTEMPT)
        try:
            return await fetch_status(
                address,
                server_address=server_address,
                server_port=server_port,
                protocol_version=protocol_version,
                timeout=budget,
                preamble=preamble,
            )
        except ProbeError as exc:
            last = exc
        left = deadline - clock()
        if left <= 0:
            raise ProbeError(
                f"backend {address} not ready after {deadline_seconds:g}s "
                f"({attempts} attempts): {last}"
            ) from None
        log.debug("Backend not ready yet", backend=address, reason=str(last))
        await sleep(min(wait, left))
        wait = min(wait * 2, max_interval)
