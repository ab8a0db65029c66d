"""The route table: server address -> Route, plus an optional default route (spec §3).

Pure data with synchronous subscribers. Every writer (flags, routes file, REST API, automc)
goes through the same five methods, so listeners (webhooks, the routes-file saver, metrics)
see every change exactly once, and a listener that subscribes late is replayed the current
routes first (spec §3.2 `with_listener`).

Lookup is O(1): one normalisation and one dict access. Keys are stored lower-cased.

Deliberate differences from upstream (spec §13):
* Q9: `remove_default_route()` and `reset()` really clear the default route (upstream only
  notifies and keeps routing to the old default).
* Q16: removing a route never dereferences a missing scaling target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from mc_router.routing.address import normalize_server_address


class Waker(Protocol):
    """Makes a sleeping backend ready; returns the address to dial ("" = the route's own)."""

    async def wake(self) -> str: ...


class Sleeper(Protocol):
    """Puts a backend to sleep."""

    async def sleep(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Route:
    """One route: where a server address goes, and how to wake or idle it.

    `source` names the writer that owns the route ("mapping", "default", "file", "api",
    "automc", ...): a source may replace or remove only what it owns (see `sync_source`).
    """

    server_address: str
    backend: str
    source: str = "static"
    waker: Waker | None = field(default=None, compare=False)
    sleeper: Sleeper | None = field(default=None, compare=False)
    scaling_key: str = ""
    asleep_motd: str = ""
    loading_motd: str = ""
    # What players call the server in kick messages (automc's `name`); "" = server_address.
    label: str = ""

    @property
    def display_name(self) -> str:
        return self.label or self.server_address or "the server"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of resolving a handshake address: the route (or None) and the key used."""

    route: Route | None
    server_address: str

    @property
    def backend(self) -> str:
        return self.route.backend if self.route is not None else ""


class RouteListener(Protocol):
    """Told about every change to the table (upstream's RoutesListener, with Route values)."""

    def route_added(self, route: Route) -> None: ...

    def route_removed(self, route: Route) -> None: ...

    def default_route_set(self, route: Route) -> None: ...

    def default_route_removed(self) -> None: ...


class RoutingTable:
    """Mappings from lower-cased server address to Route, and an optional default Route."""

    __slots__ = ("_default", "_listeners", "_mappings", "simplify_srv")

    def __init__(self, *, simplify_srv: bool = False) -> None:
        self._mappings: dict[str, Route] = {}
        self._default: Route | None = None
        self._listeners: list[RouteListener] = []
        self.simplify_srv = simplify_srv

    # -- reading ---------------------------------------------------------------------------

    def lookup(self, raw_server_address: str) -> Lookup:
        """Resolve a handshake address (spec §3.3): exact mapping, else the default route."""
        key = normalize_server_address(raw_server_address, simplify_srv=self.simplify_srv)
        route = self._mappings.get(key)
        return Lookup(route if route is not None else self._default, key)

    def has_route(self, raw_server_address: str) -> bool:
        """Lower-case exact match against the mappings only, never the default (Q7, §3.4)."""
        return raw_server_address.lower() in self._mappings

    def get(self, server_address: str) -> Route | None:
        """The mapping stored under a lower-cased key, if any (no normalisation, no default)."""
        return self._mappings.get(server_address.lower())

    @property
    def default_route(self) -> Route | None:
        return self._default

    def mappings(self) -> dict[str, Route]:
        """A copy of every mapping (never the default)."""
        return dict(self._mappings)

    def __len__(self) -> int:
        return len(self._mappings)

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self._mappings.values()))

    # -- writing ---------------------------------------------------------------------------

    def create_mapping(
        self,
        server_address: str,
        backend: str,
        *,
        source: str = "static",
        waker: Waker | None = None,
        sleeper: Sleeper | None = None,
        scaling_key: str = "",
    ) -> Route:
        """Add or replace the mapping for `server_address` (lower-cased); notify listeners."""
        return self.put(Route(server_address.lower(), backend, source, waker, sleeper, scaling_key))

    def put(self, route: Route) -> Route:
        """Add or replace a ready-made Route; notify listeners."""
        if route.server_address != route.server_address.lower():
            route = replace(route, server_address=route.server_address.lower())
        self._mappings[route.server_address] = route
        for listener in list(self._listeners):
            listener.route_added(route)
        return route

    def remove_mapping(self, server_address: str) -> bool:
        """Remove a mapping; True if it existed. Listeners hear only of real removals."""
        route = self._mappings.pop(server_address.lower(), None)
        if route is None:
            return False
        for listener in list(self._listeners):
            listener.route_removed(route)
        return True

    def set_default_route(
        self,
        backend: str,
        *,
        source: str = "static",
        waker: Waker | None = None,
        sleeper: Sleeper | None = None,
        scaling_key: str = "",
    ) -> Route:
        """Replace the default route (backend may be ""); always notify (spec §3.2)."""
        return self.put_default(Route("", backend, source, waker, sleeper, scaling_key))

    def put_default(self, route: Route) -> Route:
        """Replace the default route with a ready-made Route; always notify."""
        if route.server_address:
            route = replace(route, server_address="")
        self._default = route
        for listener in list(self._listeners):
            listener.default_route_set(route)
        return route

    def remove_default_route(self) -> bool:
        """Clear the default route (Q9: upstream forgets to clear it); notify if there was one."""
        if self._default is None:
            return False
        self._default = None
        for listener in list(self._listeners):
            listener.default_route_removed()
        return True

    def reset(self) -> None:
        """Drop every mapping and the default (SIGHUP reload, spec §7.3)."""
        removed = list(self._mappings.values())
        self._mappings.clear()
        self._default = None
        for route in removed:
            for listener in list(self._listeners):
                listener.route_removed(route)
        # Upstream notifies default-route-removed on every reset, set or not (§3.2).
        for listener in list(self._listeners):
            listener.default_route_removed()

    def sync_source(self, source: str, desired: Mapping[str, Route]) -> SyncResult:
        """Make the routes owned by `source` equal `desired` (keys lower-cased).

        Only routes whose `source` is `source` are replaced or removed; a key held by another
        source is left alone and reported in `conflicts`. Unchanged routes are not touched, so
        listeners hear only real differences.
        """
        wanted = {key.lower(): route for key, route in desired.items()}
        result = SyncResult()
        for key, route in list(self._mappings.items()):
            if route.source == source and key not in wanted:
                self.remove_mapping(key)
                result.removed.append(key)
        for key, route in wanted.items():
            new = route if route.server_address == key else replace(route, server_address=key)
            if new.source != source:
                new = replace(new, source=source)
            current = self._mappings.get(key)
            if current is not None and current.source != source:
                result.conflicts.append(key)
                continue
            if current is not None and _same(current, new):
                continue
            self.put(new)
            (result.changed if current is not None else result.added).append(key)
        return result

    # -- listeners -------------------------------------------------------------------------

    def subscribe(self, listener: RouteListener) -> Callable[[], None]:
        """Add a listener, replay the current routes to it, and return an unsubscribe function.

        The default is replayed only when its backend is non-empty (spec §3.2 `with_listener`).
        """
        self._listeners.append(listener)
        for route in list(self._mappings.values()):
            listener.route_added(route)
        if self._default is not None and self._default.backend:
            listener.default_route_set(self._default)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


@dataclass(slots=True)
class SyncResult:
    """What `RoutingTable.sync_source` changed."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.changed) + len(self.removed)


def _same(a: Route, b: Route) -> bool:
    # Wakers and sleepers compare by identity: a new waker object is a real change.
    return a == b and a.waker is b.waker and a.sleeper is b.sleeper
