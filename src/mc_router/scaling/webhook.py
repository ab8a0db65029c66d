"""Upstream's webhook scaler (`-auto-scale-webhook-url`, spec §6.5), ready checks by status ping.

Every static route gets a waker and a sleeper that POST to one URL:

    POST <url>    Content-Type: application/json, then each configured header set by name
    {"action":"up"|"down","serverAddress":"<route key as written>","backend":"<configured>"}

A transport error or a final status >= 400 is a failure (Q18 kept: a 3xx that is not followed
is a success). Redirects are followed as Go follows them: aiohttp also stops after 10, turns a
POST answered by 301/302/303 into a GET without a body, repeats the POST on 307/308, and drops
`Authorization` (and cookies) when the redirect leaves the origin; custom headers travel on.
The timeout covers the whole exchange, body included; 0 means none.

Scale up reads at most 4096 bytes of the answer: `{"backend": "host:port"}` (key matched
case-insensitively, value trimmed) overrides where to connect. Then, unlike upstream (which
waits for an open TCP port), the effective backend must answer a real status ping within the
wake timeout. Every qualifying login POSTs `up` (Q17 kept: receivers must be idempotent).

Deliberate differences: no scaler functions for an empty backend (Q13 fixed). Header values are
secrets: never logged, never in a repr, and the URL is logged without userinfo or query.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from mc_router.errors import MCRouterError, WakeError
from mc_router.logs import get_logger
from mc_router.protocol.gojson import go_json_bytes
from mc_router.scaling.probe import (
    ATTEMPT_TIMEOUT,
    DEFAULT_PROTOCOL,
    FIRST_INTERVAL,
    ProbeError,
    wait_until_ready,
)
from mc_router.scaling.status_memory import StatusInfo

__all__ = [
    "MAX_RESPONSE_BODY",
    "ScaleError",
    "WebhookScaler",
    "WebhookSleeper",
    "WebhookWaker",
    "canonical_header_key",
    "parse_scale_response_backend",
    "scale_request_body",
]

log = get_logger(__name__)

#: Upstream reads at most this much of a scale-up answer; a longer body is cut and then
#: usually fails to decode, which means "no override" (§6.5 step 2).
MAX_RESPONSE_BODY: Final = 4096

# RFC 7230 token characters: Go canonicalizes a header name only when it is made of these.
_TOKEN_RE: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

OnReady = Callable[[str, StatusInfo], None]


class ScaleError(MCRouterError):
    """A scale-down webhook failed (the down-scaler logs it)."""


class _Failure(Exception):
    """The webhook exchange failed; the message follows Go's `*url.Error` wording."""


def canonical_header_key(name: str) -> str:
    """Go's `CanonicalMIMEHeaderKey`: `x-api-key` -> `X-Api-Key`; non-token names unchanged."""
    if not _TOKEN_RE.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def scale_request_body(action: str, server_address: str, backend: str) -> bytes:
    """The request body, byte-exact with Go's `json.Marshal` of upstream's struct."""
    return go_json_bytes({"action": action, "serverAddress": server_address, "backend": backend})


class _Pairs(list[tuple[str, object]]):
    """A decoded JSON object as its member pairs, duplicates kept in order."""


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_scale_response_backend(body: bytes) -> str:
    """The backend override in a scale-up answer, or "" for none (§6.5 step 2).

    Mirrors Go decoding into `struct{ Backend string }`: the member name matches
    case-insensitively (the last one wins, `null` changes nothing), other members are ignored,
    and anything else (not JSON, not an object, a non-string backend) means no override.
    """
    text = body.decode("utf-8", "replace")
    if not text.strip():
        return ""
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(pairs, _Pairs):
        return ""  # not an object (`null` decodes to nothing in Go: no override either)
    backend = ""
    for key, value in pairs:
        if key.casefold() != "backend" or value is None:
            continue
        if not isinstance(value, str):
            return ""
        backend = value
    return backend.strip()


def _safe_url(url: URL) -> str:
    # Tokens hide in userinfo and query strings; neither belongs in a log line.
    return str(url.with_user(None).with_password(None).with_query(None).with_fragment(None))


def _default_session() -> aiohttp.ClientSession:
    # Our own deadline covers each exchange; aiohttp's 5-minute default must not cut "0 =
    # unlimited" short. trust_env: Go's default transport honours HTTP(S)_PROXY/NO_PROXY.
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), trust_env=True)


@dataclass(frozen=True, slots=True)
class WebhookWaker:
    """The `Waker` of one route: POST `up`, then wait for a status answer."""

    # It probes readiness itself (with the scaler's wake timeout and PROXY preamble).
    checks_readiness: ClassVar[bool] = True
    scaler: WebhookScaler = field(repr=False)
    server_address: str
    backend: str

    async def wake(self) -> str:
        return await self.scaler.scale_up(self.server_address, self.backend)


@dataclass(frozen=True, slots=True)
class WebhookSleeper:
    """The `Sleeper` of one route: POST `down`."""

    scaler: WebhookScaler = field(repr=False)
    server_address: str
    backend: str

    async def sleep(self) -> None:
        await self.scaler.scale_down(self.server_address, self.backend)


class WebhookScaler:
    """Builds per-route wakers and sleepers that share one URL and one HTTP session.

    `timeout`: seconds for one webhook exchange, 0 = none. `wake_timeout`: seconds for the
    backend to answer a status ping after `up`. `on_ready(key, status)` is told the status
    the readiness probe saw (key = the lower-cased route key) so the router can remember it.
    `probe_preamble` is written before each probe's handshake (a PROXY header when backends
    require one). Close with `aclose()`.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        wake_timeout: float = 60.0,
        session_factory: Callable[[], aiohttp.ClientSession] = _default_session,
        on_ready: OnReady | None = None,
        probe_preamble: bytes = b"",
        probe_protocol: int = DEFAULT_PROTOCOL,
        probe_interval: float = FIRST_INTERVAL,
        probe_attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.wake_timeout = wake_timeout
        self.on_ready = on_ready
        self.probe_preamble = probe_preamble
        self.probe_protocol = probe_protocol
        self.probe_interval = probe_interval
        self.probe_attempt_timeout = probe_attempt_timeout
        # Private: the URL may carry credentials; only `_safe_url` of it is ever shown.
        self._url = URL(url) if url else None
        self._headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
        for name, value in (headers or {}).items():
            # Go's Header.Set: canonical name, replaces any value already there.
            self._headers[canonical_header_key(name)] = value
        if (
            self._url is not None
            and self._url.user is not None
            and "Authorization" in self._headers
        ):
            # Go sets basic auth from the URL's userinfo only without an Authorization header;
            # aiohttp refuses to get both, so the configured header wins, as in Go.
            self._url = self._url.with_user(None)
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        shown = _safe_url(self._url) if self._url is not None else ""
        return f"WebhookScaler({shown!r}, headers={sorted(self._headers)!r})"

    @property
    def enabled(self) -> bool:
        return self._url is not None

    # -- per-route functions (upstream's `WebhookScalerFuncs`) -----------------------------

    def waker(self, server_address: str, backend: str) -> WebhookWaker | None:
        """The route's waker; None without a URL, or for an empty backend (Q13 fixed)."""
        if not self.enabled or not backend:
            return None
        return WebhookWaker(self, server_address, backend)

    def sleeper(self, server_address: str, backend: str) -> WebhookSleeper | None:
        """The route's sleeper; None without a URL, or for an empty backend (Q13 fixed)."""
        if not self.enabled or not backend:
            return None
        return WebhookSleeper(self, server_address, backend)

    def route_functions(
        self, server_address: str, backend: str
    ) -> tuple[WebhookWaker | None, WebhookSleeper | None, str]:
        """(waker, sleeper, scaling key) for a route; the key is the configured backend."""
        waker = self.waker(server_address, backend)
        if waker is None:
            return None, None, ""
        return waker, self.sleeper(server_address, backend), backend

    # -- the two actions -------------------------------------------------------------------

    async def scale_up(self, server_address: str, backend: str) -> str:
        """POST `up`, apply an override, wait for a status answer; the backend to dial."""
        log.debug("Scaling up backend via webhook", serverAddress=server_address, backend=backend)
        try:
            body = await self._post("up", server_address, backend, read_body=True)
        except _Failure as exc:
            raise WakeError(f"scale-up webhook failed: {exc}") from None
        override = parse_scale_response_backend(body)
        effective = override or backend
        if override:
            log.info("Webhook chose the backend", serverAddress=server_address, backend=override)
        try:
            status = await wait_until_ready(
                effective,
                server_address=server_address or effective.rpartition(":")[0].strip("[]"),
                deadline_seconds=self.wake_timeout,
                protocol_version=self.probe_protocol,
                interval=self.probe_interval,
                attempt_timeout=self.probe_attempt_timeout,
                preamble=self.probe_preamble,
            )
        except ProbeError as exc:
            # The detail (attempts, last failure) goes to the log; the error keeps upstream's
            # short wording, since sessions may show it to the player.
            log.warning(
                "Backend did not answer status after scale-up",
                serverAddress=server_address,
                backend=effective,
                error=str(exc),
            )
            raise WakeError(f"timeout waiting for backend to become ready at {effective}") from None
        if self.on_ready is not None:
            self.on_ready(server_address.lower(), status)
        return effective

    async def scale_down(self, server_address: str, backend: str) -> None:
        """POST `down`; the answer's body is ignored."""
        log.debug("Scaling down backend via webhook", serverAddress=server_address, backend=backend)
        try:
            await self._post("down", server_address, backend, read_body=False)
        except _Failure as exc:
            raise ScaleError(f"scale-down webhook failed: {exc}") from None

    async def _post(
        self, action: str, server_address: str, backend: str, *, read_body: bool
    ) -> bytes:
        assert self._url is not None
        if self._closed:
            raise _Failure("the webhook scaler is closed")
        if self._session is None:
            self._session = self._session_factory()
        shown = _safe_url(self._url)
        data = scale_request_body(action, server_address, backend)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if self.timeout > 0 else None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.post(self._url, data=data, headers=self._headers)
        except TimeoutError:
            raise _Failure(f'Post "{shown}": timeout after {self.timeout:g}s') from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise _Failure(f'Post "{shown}": {_describe(exc)}') from None
        try:
            if response.status >= 400:
                raise _Failure(f"webhook responded with status {response.status}")
            if not read_body:
                return b""
            try:
                # Same deadline: Go's client timeout covers reading the body. A failed read
                # is not a failed scale-up, only "no override" (§6.5 step 2).
                async with asyncio.timeout_at(deadline):
                    return await _read_at_most(response, MAX_RESPONSE_BODY)
            except (TimeoutError, aiohttp.ClientError, OSError):
                return b""
        finally:
            response.release()

    async def aclose(self) -> None:
        """Close the HTTP session; later calls fail."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < limit:
        chunk = await response.content.read(limit - len(chunks))
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


def _describe(exc: BaseException) -> str:
    # aiohttp's messages name the host and the OS error; never request headers.
    text = str(exc)
    return text or type(exc).__name__
