"""Event webhooks (spec §9): connection and route events POSTed as JSON to one URL.

The notifier is both an EventBus subscriber (connect/disconnect) and a RouteListener
(route-added, route-removed, default-route-set, default-route-removed). Both paths only build
the payload and put it on a bounded queue; ONE worker task with one HTTP session sends them,
so a slow or dead receiver never delays a connection. When the queue is full the event is
dropped, counted in `dropped` and logged (rate-limited). No retries, as upstream.

Payloads match upstream byte for byte in shape (§9.3): members in the order event,
timestamp, status, client, server, player, backend, error, with upstream's omitempty rules,
`"status":"success"` on route events and `"server":""` on default-route events (Q27 kept).

Differences from upstream, on purpose:
* One worker sends in order (upstream starts one goroutine per event, unordered); the queue
  bounds memory when the receiver is slow.
* On shutdown the queue gets a short bounded flush, so the `disconnect` events of drained
  connections are delivered (Q28: upstream sends them with a cancelled context, so they fail).
* The URL's credentials and query never reach the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
from yarl import URL

from mc_router.errors import ConfigError
from mc_router.events import (
    BackendConnected,
    BackendFailed,
    BackendMissing,
    Client,
    ConnectionClosed,
    Event,
    PlayerInfo,
)
from mc_router.protocol.gojson import go_json_bytes as go_json
from mc_router.routing import Route

log = logging.getLogger(__name__)

CONNECT: Final = "connect"
DISCONNECT: Final = "disconnect"
ROUTE_ADDED: Final = "route-added"
ROUTE_REMOVED: Final = "route-removed"
DEFAULT_ROUTE_SET: Final = "default-route-set"
DEFAULT_ROUTE_REMOVED: Final = "default-route-removed"
EVENT_TYPES: Final = (
    CONNECT,
    DISCONNECT,
    ROUTE_ADDED,
    ROUTE_REMOVED,
    DEFAULT_ROUTE_SET,
    DEFAULT_ROUTE_REMOVED,
)

STATUS_SUCCESS: Final = "success"
STATUS_MISSING_BACKEND: Final = "missing-backend"
STATUS_FAILED_BACKEND_CONNECTION: Final = "failed-backend-connection"
#: Upstream's error text for the missing-backend branch (§9.4).
NO_BACKEND_FOUND: Final = "No backend found"

#: Upstream's default `-webhook-timeout` (seconds).
DEFAULT_TIMEOUT: Final = 30.0
#: Events waiting to be sent. At a handful of events per connection this absorbs a burst of
#: a few hundred connections while the receiver is slow, and bounds memory when it is dead.
DEFAULT_QUEUE_SIZE: Final = 1024
#: How long `aclose()` keeps sending what is queued before giving up.
DEFAULT_FLUSH_TIMEOUT: Final = 2.0
#: At most one "dropped" warning per this many seconds (the count is in the message).
DROP_LOG_INTERVAL: Final = 10.0

Payload = dict[str, Any]


def rfc3339_nano(ns: int) -> str:
    """Go's time.RFC3339Nano in the local zone: trailing zeros trimmed, `Z` for UTC."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    local = datetime.fromtimestamp(seconds, tz=UTC).astimezone()
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    offset = local.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def client_json(client: Client) -> dict[str, Any]:
    """`{"host","port"}`: IPv4-mapped IPv6 prints as IPv4 and any zone is dropped (§9.3)."""
    host = client.host.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        host = str(address)
    return {"host": host, "port": client.port}


def payload(
    event: str,
    timestamp: str,
    *,
    status: str = STATUS_SUCCESS,
    client: Client | None = None,
    server: str = "",
    player: PlayerInfo | None = None,
    backend: str = "",
    error: str = "",
) -> Payload:
    """One webhook body, members in upstream's order with its omitempty rules (§9.3)."""
    body: Payload = {"event": event, "timestamp": timestamp, "status": status}
    if client is not None:
        body["client"] = client_json(client)
    body["server"] = server
    if player is not None:
        body["player"] = {"name": player.name, "uuid": str(player.uuid)}
    if backend:
        body["backend"] = backend
    if error:
        body["error"] = error
    return body


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to log."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "<invalid url>"


class WebhookNotifier:
    """Sends §9 events to `url` through a bounded queue and one worker."""

    def __init__(
        self,
        url: str,
        events: Iterable[str] = (CONNECT, DISCONNECT),
        require_user: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"-webhook-url must be an http(s) URL, got {redact_url(url)!r}")
        self.url = url
        self.safe_url = redact_url(url)
        # Unknown names are ignored, as upstream (Q33: not validated).
        self.events = frozenset(events)
        self.require_user = require_user
        # Q47: 0 means no timeout.
        self.timeout = timeout
        self.flush_timeout = flush_timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: asyncio.Queue[Payload] = asyncio.Queue(maxsize=max(1, queue_size))
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._drops_since_log = 0
        self._last_drop_log = float("-inf")

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the worker."""
        return self._queue.qsize()

    async def drain(self) -> None:
        """Wait until every queued event has been handled (sent or failed); needs `start()`."""
        await self._queue.join()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and start the worker (call inside the running loop)."""
        if self._worker is not None:
            return
        timeout = aiohttp.ClientTimeout(total=self.timeout if self.timeout > 0 else None)
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._worker = asyncio.create_task(self._run(), name="webhook-notifier")
        log.info("Sending event webhooks", extra={"fields": {"url": self.safe_url}})

    async def aclose(self) -> None:
        """Stop taking events, send what is queued for up to `flush_timeout`, then stop."""
        self._closed = True
        if self._worker is not None:
            if not self._worker.done():
                try:
                    async with asyncio.timeout(self.flush_timeout):
                        await self._queue.join()
                except TimeoutError:
                    left = self._queue.qsize()
                    if left:
                        log.warning(
                            "Dropping %d webhook notification(s) at shutdown",
                            left,
                            extra={"fields": {"url": self.safe_url}},
                        )
                        self.dropped += left
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WebhookNotifier:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- EventBus subscriber ---------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """EventBus subscriber: connection events become `connect`/`disconnect` (§9.4)."""
        if isinstance(event, BackendConnected):
            self._connection(CONNECT, event.client, event.server_address, event.player,
                             backend=event.backend)
        elif isinstance(event, BackendMissing):
            self._connection(CONNECT, event.client, event.server_address, event.player,
                             status=STATUS_MISSING_BACKEND, error=NO_BACKEND_FOUND)
        elif isinstance(event, BackendFailed):
            self._connection(CONNECT, event.client, event.server_address, event.player,
                             status=STATUS_FAILED_BACKEND_CONNECTION, backend=event.backend,
                             error=event.error)
        elif isinstance(event, ConnectionClosed):
            self._connection(DISCONNECT, event.client, event.server_address, event.player,
                             backend=event.backend)

    def _connection(
        self,
        kind: str,
        client: Client,
        server: str,
        player: PlayerInfo | None,
        *,
        status: str = STATUS_SUCCESS,
        backend: str = "",
        error: str = "",
    ) -> None:
        if kind not in self.events or (self.require_user and player is None):
            return
        self._enqueue(
            payload(kind, _now(), status=status, client=client, server=server, player=player,
                    backend=backend, error=error)
        )

    # -- RouteListener ---------------------------------------------------------------------

    def route_added(self, route: Route) -> None:
        if ROUTE_ADDED in self.events:
            self._enqueue(
                payload(ROUTE_ADDED, _now(), server=route.server_address, backend=route.backend)
            )

    def route_removed(self, route: Route) -> None:
        if ROUTE_REMOVED in self.events:
            self._enqueue(payload(ROUTE_REMOVED, _now(), server=route.server_address))

    def default_route_set(self, route: Route) -> None:
        if DEFAULT_ROUTE_SET in self.events:
            self._enqueue(payload(DEFAULT_ROUTE_SET, _now(), backend=route.backend))

    def default_route_removed(self) -> None:
        if DEFAULT_ROUTE_REMOVED in self.events:
            self._enqueue(payload(DEFAULT_ROUTE_REMOVED, _now()))

    # -- queue and worker ------------------------------------------------------------------

    def _enqueue(self, body: Payload) -> None:
        if self._closed:
            self._drop(body, "shutting down")
            return
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self._drop(body, "queue full")

    def _drop(self, body: Payload, why: str) -> None:
        self.dropped += 1
        self._drops_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.warning(
                "Dropped %d webhook notification(s): %s",
                self._drops_since_log,
                why,
                extra={
                    "fields": {"event": body["event"], "url": self.safe_url,
                               "droppedTotal": self.dropped}
                },
            )
            self._drops_since_log = 0
            self._last_drop_log = now

    async def _run(self) -> None:
        while True:
            body = await self._queue.get()
            try:
                await self._send(body)
            finally:
                self._queue.task_done()

    async def _send(self, body: Payload) -> None:
        assert self._session is not None
        fields = {"event": body["event"], "url": self.safe_url}
        try:
            async with self._session.post(
                self.url,
                data=go_json(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                status = response.status
        except Exception as exc:
            # The worker is a long-lived service: any failure of one delivery is logged and
            # the next event is sent (DESIGN rule 7).
            self.failed += 1
            log.warning(
                "Failed to send webhook notification: %s",
                self._describe(exc),
                extra={"fields": fields},
            )
            return
        if status >= 400:
            self.failed += 1
            log.warning(
                "webhook receiver responded with an error",
                extra={"fields": {**fields, "status": status}},
            )
            return
        self.sent += 1
        log.debug("Sent webhook notification", extra={"fields": {**fields, "status": status}})

    def _describe(self, exc: Exception) -> str:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            text = f"timed out after {self.timeout:g}s"
        # aiohttp puts the full URL into some messages; never log its secrets.
        return text.replace(self.url, self.safe_url)


def _now() -> str:
    return rfc3339_nano(time.time_ns())
