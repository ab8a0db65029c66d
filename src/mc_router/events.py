"""Lifecycle events of client connections, and the synchronous bus that fans them out.

Sessions publish; metrics, webhooks and the idle down-scaler subscribe. Publishing is a plain
function call per subscriber: subscribers must be quick and must not raise (a webhook
subscriber only enqueues). Events carry what upstream's webhooks and metrics need (spec §4.7,
§9, §10) and nothing per packet.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Client:
    """A client's address as seen by the router (the PROXY-provided one when trusted)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PlayerInfo:
    name: str
    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class FrontendAccepted:
    """A client TCP connection was accepted (counted before filtering, spec §4.4)."""


@dataclass(frozen=True, slots=True)
class ErrorObserved:
    """An error of one of upstream's `mc_router_errors{type}` kinds (spec §10.1)."""

    type: str


@dataclass(frozen=True, slots=True)
class BackendMissing:
    """No backend for the address (or the route is asleep / waking): `connect` missing-backend."""

    client: Client
    server_address: str
    player: PlayerInfo | None


@dataclass(frozen=True, slots=True)
class BackendFailed:
    """The backend dial failed: `connect` failed-backend-connection."""

    client: Client
    server_address: str
    player: PlayerInfo | None
    backend: str
    error: str


@dataclass(frozen=True, slots=True)
class BackendConnected:
    """A backend connection was established, before the replay: `connect` success."""

    client: Client
    server_address: str
    normalized_address: str
    player: PlayerInfo | None
    backend: str
    login: bool
    scaling_key: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """A routed connection ended, on every exit path after routing began (spec §4.11)."""

    client: Client
    server_address: str
    player: PlayerInfo | None
    backend: str
    connected: bool
    login: bool
    scaling_key: str
    bytes_to_backend: int = 0
    bytes_to_client: int = 0


Event = (
    FrontendAccepted
    | ErrorObserved
    | BackendMissing
    | BackendFailed
    | BackendConnected
    | ConnectionClosed
)


class EventBus:
    """Fans events out to subscribers, synchronously and in subscription order."""

    __slots__ = ("_subscribers", "active")

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []
        # Whether anyone listens: publishers on the hot path skip building unheard events.
        # A plain attribute, not __bool__: a method call per check costs more than the check.
        self.active = False

    def subscribe(self, subscriber: Callable[[Event], None]) -> None:
        self._subscribers.append(subscriber)
        self.active = True

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                # A broken observer must never break a player's connection.
                log.exception("event subscriber failed", extra={"fields": {"event": event}})
