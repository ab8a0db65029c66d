"""The HTTP waker: ask the control plane to start a server, then poll until it runs.

Contract (docs/AUTOMC.md):

    POST {url}/servers/{name}/start      2xx or 409 (already starting) = fine, else an error
    GET  {url}/servers/{name}            at once, then every 2 s, until
                                         {"state": "running", "address": "host:port"}

The address returned replaces the route's backend for that one connection. Every request
carries `X-API-Key` when a token is configured. Each failure raises `WakeError` whose message
is fit to show a player; the log line carries the detail (status, body excerpt).

Single flight: concurrent `wake(name)` calls share one in-flight task, so one POST serves every
waiting login. The task is shielded: a caller that gives up (client disconnected) does not
cancel the wake for the others. The slot is cleared when the task ends, so the next login
after a failure tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from mc_router.errors import ConfigError, WakeError
from mc_router.logs import get_logger
from mc_router.routing import Backend

log = get_logger(__name__)

#: Polling period and overall deadline of the contract.
POLL_INTERVAL: Final = 2.0
WAKE_TIMEOUT: Final = 90.0
# One slow request must not eat the whole wake budget silently; the overall deadline still
# applies on top of this.
REQUEST_TIMEOUT: Final = 10.0
# Bodies are read only to parse a small JSON object; anything bigger is not our contract.
MAX_BODY: Final = 64 * 1024
# How much of an unexpected body goes to the log.
_EXCERPT: Final = 200


def parse_base_url(text: str) -> URL:
    """Validate AUTOMC_WAKER_URL: an absolute http(s) URL; ConfigError otherwise."""
    url = URL(text.strip())
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"AUTOMC_WAKER_URL must be an http:// or https:// URL, got {text!r}")
    return url


class ServerWaker:
    """The `Waker` of one automc route: `wake()` starts server `name` via the control plane.

    Kept per server name across resyncs: the route table compares wakers by identity.
    """

    __slots__ = ("_plane", "name")

    def __init__(self, plane: ControlPlane, name: str) -> None:
        self._plane = plane
        self.name = name

    async def wake(self) -> str:
        return await self._plane.wake(self.name)

    def __repr__(self) -> str:
        return f"ServerWaker({self.name!r})"


class ControlPlane:
    """A client of the waker control plane; use as `async with ControlPlane(url, token):`."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        poll_interval: float = POLL_INTERVAL,
        timeout: float = WAKE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.base_url = parse_base_url(base_url)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.request_timeout = request_timeout
        # Sent on every request; kept out of every log line and repr.
        self._headers = {"X-API-Key": token} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._closed = False
        #: Number of POST /start requests sent (tests and metrics).
        self.starts = 0

    async def __aenter__(self) -> ControlPlane:
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel wakes in flight (their callers get WakeError) and close the HTTP session."""
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def waker(self, name: str) -> ServerWaker:
        return ServerWaker(self, name)

    def _url(self, name: str, *suffix: str) -> URL:
        # quote(safe=""): a `/` or `?` in a server name must stay inside its path segment.
        path = "/".join(["servers", quote(name, safe=""), *suffix])
        return URL(f"{str(self.base_url).rstrip('/')}/{path}", encoded=True)

    async def wake(self, name: str) -> str:
        """Start server `name` (or join the start in flight) and return the address to dial."""
        if self._closed or self._session is None:
            raise WakeError("automc is not running")
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.create_task(self._wake(name), name=f"automc-wake {name}")
            self._inflight[name] = task
            task.add_done_callback(lambda done: self._finished(name, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _current_task_cancelling():
                # The shared wake itself was cancelled (shutdown), not our caller.
                raise WakeError("automc is shutting down") from None
            raise

    def _finished(self, name: str, task: asyncio.Task[str]) -> None:
        if self._inflight.get(name) is task:
            del self._inflight[name]
        # Retrieve the outcome so a wake whose callers all left never warns "never retrieved".
        if not task.cancelled():
            task.exception()

    async def _wake(self, name: str) -> str:
        bound = log.with_fields(server=name)
        bound.info("automc: starting server")
        try:
            async with asyncio.timeout(self.timeout):
                address = await self._start_and_poll(name)
        except TimeoutError:
            error = WakeError(f"server did not start within {self.timeout:g} s")
            bound.warning("automc: wake failed", error=str(error))
            raise error from None
        except WakeError as exc:
            bound.warning("automc: wake failed", error=str(exc), detail=_detail(exc))
            raise
        bound.info("automc: server is running", backend=address)
        return address

    async def _start(self, name: str) -> None:
        self.starts += 1
        status, body = await self._request("POST", self._url(name, "start"))
        if 200 <= status < 300 or status == 409:
            return
        raise _http_error("start", status, body)

    async def _start_and_poll(self, name: str) -> str:
        """POST start and the first GET overlap, so an already running server costs one
        control-plane round trip; both must succeed before the address is used."""
        start = asyncio.create_task(self._start(name))
        try:
            address = await self._status(name)
            await start
        finally:
            if not start.done():
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, WakeError):
                    await start
        while address is None:
            await asyncio.sleep(self.poll_interval)
            address = await self._status(name)
        return address

    async def _status(self, name: str) -> str | None:
        """One GET: the address when the server is running, else None."""
        status, body = await self._request("GET", self._url(name))
        if not 200 <= status < 300:
            raise _http_error("status", status, body)
        try:
            document = json.loads(body)
        except ValueError:
            raise _WakeFailure("control plane sent invalid JSON", body) from None
        if not isinstance(document, dict):
            raise _WakeFailure("control plane sent JSON that is not an object", body)
        if document.get("state") == "running":
            return _running_address(document.get("address"), body)
        return None

    async def _request(self, method: str, url: URL) -> tuple[int, bytes]:
        assert self._session is not None
        try:
            async with self._session.request(method, url) as response:
                return response.status, await _read_body(response)
        except TimeoutError as exc:
            # aiohttp's per-request timeout (the overall deadline arrives as a cancellation).
            raise _WakeFailure(
                f"control plane did not answer within {self.request_timeout:g} s",
                repr(exc).encode(),
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise _WakeFailure("control plane unreachable", repr(exc).encode()) from None
        except aiohttp.ClientError as exc:
            raise _WakeFailure("control plane request failed", repr(exc).encode()) from None


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    while len(body) <= MAX_BODY:
        chunk = await response.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise _WakeFailure(f"control plane sent more than {MAX_BODY} bytes", bytes(body))


class _WakeFailure(WakeError):
    """A WakeError that keeps what the control plane said, for the log only."""

    def __init__(self, message: str, body: bytes) -> None:
        super().__init__(message)
        self.body = body


def _detail(exc: WakeError) -> str:
    body = exc.body if isinstance(exc, _WakeFailure) else b""
    return body[:_EXCERPT].decode("utf-8", "replace")


def _http_error(what: str, status: int, body: bytes) -> WakeError:
    return _WakeFailure(f"control plane answered {status} to the {what} request", body)


def _running_address(address: object, body: bytes) -> str:
    if not isinstance(address, str) or not address:
        raise _WakeFailure("control plane reported running without an address", body)
    try:
        Backend.parse(address)
    except ValueError as exc:
        raise _WakeFailure(f"control plane reported an unusable address: {exc}", body) from None
    return address


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


__all__ = ["POLL_INTERVAL", "WAKE_TIMEOUT", "ControlPlane", "ServerWaker", "parse_base_url"]
