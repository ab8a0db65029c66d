"""Metrics (spec §10): every collector defined once here, fed only by lifecycle events.

`make_metrics(name, ...)` picks the backend; the result is an EventBus subscriber
(`bus.subscribe(metrics)`) with `start()`/`aclose()` and the `/metrics` and `/vars` handlers
that the REST API mounts (`metrics.routes()`).

* `discard` (default): records nothing. `/metrics` still serves the process/runtime metrics.
* `prometheus`: upstream's names, labels and help strings (§10.1) in a per-instance
  `CollectorRegistry` (never the global one: several routers may share a process).
* `expvar`: upstream's expvar variables (§10.3) as JSON on `/vars`, labels ignored.
* `influxdb`: refused at startup (not provided by this build). Unknown names act as discard
  with a warning (Q34, upstream is silent).

Exposition. Upstream registers counters WITHOUT a `_total` suffix and serves the classic text
format (promhttp.Handler() never negotiates OpenMetrics), so Prometheus stores e.g.
`mc_router_errors{type="read"}`. prometheus_client's own writer would rename every counter to
`<name>_total` and add `<name>_created` series, breaking dashboards built for upstream. So the
mc-router families are written here in exactly Go's classic form (`# TYPE mc_router_errors
counter` then `mc_router_errors{type="read"} 1`); the runtime collectors go through
prometheus_client's `generate_latest`. prometheus_client's parser reads both (it reports a Go
counter as family `mc_router_errors` with samples `mc_router_errors_total`).

Update rules follow §4.5 step 8 and §4.11: the per-backend active count is keyed by backend
while its gauge is labelled by the raw requested address (Q35 kept), `backend_connections`
is labelled by the normalised address, and bytes are added when a relay ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mc_router.errors import ConfigError
from mc_router.events import (
    BackendConnected,
    ConnectionClosed,
    ErrorObserved,
    Event,
    FrontendAccepted,
    PlayerInfo,
)

log = logging.getLogger(__name__)

#: What promhttp sends for the classic text format.
TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Upstream's `-metrics-rate-limit-period` default (seconds).
DEFAULT_RATE_LIMIT_PERIOD: Final = 1.0
#: Series per family. `server_address` labels come from clients' handshakes, so with a
#: default route a scanner could otherwise grow the registry without bound.
MAX_SERIES_PER_FAMILY: Final = 10_000

# Upstream's metric names (§10.1), as they appear in the classic text format.
ERRORS: Final = "mc_router_errors"
BYTES: Final = "mc_router_bytes"
FRONTEND_CONNECTIONS: Final = "mc_router_frontend_connections"
BACKEND_CONNECTIONS: Final = "mc_router_backend_connections"
ACTIVE_CONNECTIONS: Final = "mc_router_active_connections"
SERVER_ACTIVE_CONNECTIONS: Final = "mc_router_server_active_connections"
SERVER_ACTIVE_PLAYER: Final = "mc_router_server_active_player"
SERVER_LOGINS: Final = "mc_router_server_logins"
RATE_LIMIT_AVAILABLE: Final = "mc_router_rate_limit_available"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric family as upstream declares it."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...] = ()
    const_labels: Labels = ()
    expvar: str = ""  # the expvar variable it feeds (§10.3)


SPECS: Final = {
    spec.name: spec
    for spec in (
        Spec(ERRORS, "counter", "The total number of errors", ("type",), expvar="errors"),
        Spec(BYTES, "counter", "The total number of bytes transmitted", expvar="bytes"),
        Spec(FRONTEND_CONNECTIONS, "counter", "The total number of connections",
             const_labels=(("side", "frontend"),), expvar="connections"),
        Spec(BACKEND_CONNECTIONS, "counter", "The total number of backend connections",
             ("host",), (("side", "backend"),), expvar="connections"),
        Spec(ACTIVE_CONNECTIONS, "gauge", "The number of active connections",
             expvar="active_connections"),
        Spec(SERVER_ACTIVE_CONNECTIONS, "gauge", "The number of active connections per server",
             ("server_address",), expvar="server_active_connections"),
        Spec(SERVER_ACTIVE_PLAYER, "gauge", "Player is active on server",
             ("player_name", "player_uuid", "server_address"), expvar="server_active_player"),
        Spec(SERVER_LOGINS, "counter", "The total number of player logins",
             ("player_name", "player_uuid", "server_address"), expvar="server_logins"),
        Spec(RATE_LIMIT_AVAILABLE, "gauge",
             "The number of available tokens in the rate limit bucket",
             expvar="rate_limit_available"),
    )
}


def clean_label(value: str) -> str:
    """Drop what is not valid UTF-8 (lone surrogates from undecodable bytes), as upstream."""
    return value.encode("utf-8", "ignore").decode("utf-8")


class Metrics:
    """The `discard` backend, and the update rules every backend shares.

    Subclasses override `_add` and `_set`; everything else (which event changes what) lives
    here once.
    """

    backend = "discard"

    def __init__(
        self,
        *,
        record_logins: bool = False,
        rate_limit_available: Callable[[], float] | None = None,
        rate_limit_period: float = DEFAULT_RATE_LIMIT_PERIOD,
    ) -> None:
        self.record_logins = record_logins
        self.rate_limit_available = rate_limit_available
        self.rate_limit_period = rate_limit_period
        self.active = 0
        self.active_by_backend: Counter[str] = Counter()
        # The process/runtime collectors upstream's /metrics always has (Go's go_* and
        # process_*); ours are process_* and python_*.
        self.runtime_registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.runtime_registry)
        PlatformCollector(registry=self.runtime_registry)
        GCCollector(registry=self.runtime_registry)
        self._refresher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start refreshing the rate-limit gauge every period (0 or less disables it)."""
        if (
            self.backend != "discard"
            and self.rate_limit_available is not None
            and self.rate_limit_period > 0
            and self._refresher is None
        ):
            self._refresher = asyncio.create_task(self._refresh(), name="metrics-rate-limit")

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh(self) -> None:
        assert self.rate_limit_available is not None
        while True:
            self.refresh_rate_limit()
            await asyncio.sleep(self.rate_limit_period)

    def refresh_rate_limit(self) -> None:
        """Set the rate-limit gauge now (Go's bucket reports whole tokens, maybe negative)."""
        if self.rate_limit_available is not None:
            self._set(RATE_LIMIT_AVAILABLE, (), math.floor(self.rate_limit_available()))

    # -- EventBus subscriber ---------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, FrontendAccepted):
            self._add(FRONTEND_CONNECTIONS, (), 1)
        elif isinstance(event, ErrorObserved):
            self._add(ERRORS, (event.type,), 1)
        elif isinstance(event, BackendConnected):
            self._connected(event)
        elif isinstance(event, ConnectionClosed) and event.connected:
            self._closed(event)

    def _connected(self, event: BackendConnected) -> None:
        # Spec §4.5 step 8.
        self._add(BACKEND_CONNECTIONS, (event.normalized_address,), 1)
        self.active += 1
        self._set(ACTIVE_CONNECTIONS, (), self.active)
        self.active_by_backend[event.backend] += 1
        # Q35 kept: the value is per backend, the label is the raw requested address.
        self._set(
            SERVER_ACTIVE_CONNECTIONS,
            (event.server_address,),
            self.active_by_backend[event.backend],
        )
        if self.record_logins and event.player is not None:
            log.info(
                "Player attempted to login to server",
                extra={
                    "fields": {
                        "client": str(event.client),
                        "player": _player_text(event.player),
                        "serverAddress": event.server_address,
                    }
                },
            )
            labels = _player_labels(event.player, event.server_address)
            self._set(SERVER_ACTIVE_PLAYER, labels, 1)
            self._add(SERVER_LOGINS, labels, 1)

    def _closed(self, event: ConnectionClosed) -> None:
        # Spec §4.6 (bytes when the relay ends) and §4.11 step 2.
        self._add(BYTES, (), event.bytes_to_backend + event.bytes_to_client)
        self.active = max(0, self.active - 1)
        self._set(ACTIVE_CONNECTIONS, (), self.active)
        remaining = max(0, self.active_by_backend[event.backend] - 1)
        if remaining:
            self.active_by_backend[event.backend] = remaining
        else:
            del self.active_by_backend[event.backend]
        self._set(SERVER_ACTIVE_CONNECTIONS, (event.server_address,), remaining)
        if self.record_logins and event.player is not None:
            self._set(
                SERVER_ACTIVE_PLAYER, _player_labels(event.player, event.server_address), 0
            )

    # -- sinks (no-ops for discard) --------------------------------------------------------

    def _add(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        """Add to a counter series."""

    def _set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        """Set a gauge series."""

    # -- HTTP ------------------------------------------------------------------------------

    def render_text(self) -> bytes:
        """The classic Prometheus text exposition of everything this backend has."""
        return generate_latest(self.runtime_registry)

    def vars(self) -> dict[str, object]:
        """The `/vars` document (Go's expvar always has `cmdline`)."""
        return {"cmdline": list(sys.argv)}

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.render_text(), headers={"Content-Type": TEXT_CONTENT_TYPE}
        )

    async def handle_vars(self, request: web.Request) -> web.Response:
        body = json.dumps(self.vars(), indent=1, sort_keys=True) + "\n"
        return web.Response(
            body=body.encode(), headers={"Content-Type": "application/json; charset=utf-8"}
        )

    def routes(self) -> list[web.RouteDef]:
        """`/metrics` and `/vars`, any method (spec §8.5), for the REST API to mount."""
        return [
            web.route("*", "/metrics", self.handle_metrics),
            web.route("*", "/vars", self.handle_vars),
        ]


@dataclass(slots=True)
class _Family:
    spec: Spec
    series: dict[tuple[str, ...], float] = field(default_factory=dict)

    def labels(self, values: tuple[str, ...]) -> Labels:
        return tuple(zip(self.spec.labels, values, strict=True)) + self.spec.const_labels


class PrometheusMetrics(Metrics):
    """The `prometheus` backend (§10.1), in its own registry."""

    backend = "prometheus"

    def __init__(
        self,
        *,
        record_logins: bool = False,
        rate_limit_available: Callable[[], float] | None = None,
        rate_limit_period: float = DEFAULT_RATE_LIMIT_PERIOD,
        max_series: int = MAX_SERIES_PER_FAMILY,
    ) -> None:
        super().__init__(
            record_logins=record_logins,
            rate_limit_available=rate_limit_available,
            rate_limit_period=rate_limit_period,
        )
        self.max_series = max_series
        self.families = {name: _Family(spec) for name, spec in SPECS.items()}
        self._overflow_warned: set[str] = set()
        # For OpenMetrics consumers and tests: registry.get_sample_value("mc_router_errors_total",
        # {"type": "read"}) works as with any prometheus_client collector.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def _series(self, name: str, labels: tuple[str, ...]) -> tuple[_Family, tuple[str, ...]]:
        return self.families[name], tuple(clean_label(value) for value in labels)

    def _admit(self, family: _Family, key: tuple[str, ...]) -> bool:
        if key in family.series or len(family.series) < self.max_series:
            return True
        if family.spec.name not in self._overflow_warned:
            self._overflow_warned.add(family.spec.name)
            log.warning(
                "Metric has too many series; new label values are not recorded",
                extra={"fields": {"metric": family.spec.name, "limit": self.max_series}},
            )
        return False

    def _add(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        family, key = self._series(name, labels)
        if self._admit(family, key):
            family.series[key] = family.series.get(key, 0.0) + amount

    def _set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        family, key = self._series(name, labels)
        if self._admit(family, key):
            family.series[key] = float(value)

    def value(self, name: str, **labels: str) -> float | None:
        """One series' value by upstream name and variable labels (None if never updated)."""
        family = self.families[name]
        return family.series.get(tuple(labels.get(label, "") for label in family.spec.labels))

    # -- prometheus_client Collector protocol ---------------------------------------------

    def collect(self) -> Iterator[Metric]:
        for family in self.families.values():
            if not family.series:
                continue
            names = [label for label, _ in family.labels(next(iter(family.series)))]
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.spec.type == "counter":
                metric = CounterMetricFamily(family.spec.name, family.spec.help, labels=names)
            else:
                metric = GaugeMetricFamily(family.spec.name, family.spec.help, labels=names)
            for key, value in family.series.items():
                metric.add_metric([v for _, v in family.labels(key)], value)
            yield metric

    # -- exposition ------------------------------------------------------------------------

    def render_text(self) -> bytes:
        return self.render_families() + generate_latest(self.runtime_registry)

    def render_families(self) -> bytes:
        """The mc-router families exactly as Go's classic text format writes them."""
        lines: list[str] = []
        for name in sorted(self.families):
            family = self.families[name]
            if not family.series:
                continue  # Go's Gather drops families without series
            lines.append(f"# HELP {name} {_escape_help(family.spec.help)}")
            lines.append(f"# TYPE {name} {family.spec.type}")
            rows = sorted(
                (tuple(sorted(family.labels(key))), value) for key, value in family.series.items()
            )
            for labels, value in rows:
                if labels:
                    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                    lines.append(f"{name}{{{text}}} {go_float(value)}")
                else:
                    lines.append(f"{name} {go_float(value)}")
        return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class ExpvarMetrics(Metrics):
    """The `expvar` backend (§10.3): one number per variable, labels ignored."""

    backend = "expvar"

    def __init__(
        self,
        *,
        record_logins: bool = False,
        rate_limit_available: Callable[[], float] | None = None,
        rate_limit_period: float = DEFAULT_RATE_LIMIT_PERIOD,
    ) -> None:
        super().__init__(
            record_logins=record_logins,
            rate_limit_available=rate_limit_available,
            rate_limit_period=rate_limit_period,
        )
        self.variables: dict[str, float] = {}

    def _add(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        var = SPECS[name].expvar
        self.variables[var] = self.variables.get(var, 0.0) + amount

    def _set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        self.variables[SPECS[name].expvar] = float(value)

    def vars(self) -> dict[str, object]:
        document = super().vars()
        for name, value in self.variables.items():
            document[name] = int(value) if value.is_integer() else value
        return document


def make_metrics(
    backend: str,
    *,
    record_logins: bool = False,
    rate_limit_available: Callable[[], float] | None = None,
    rate_limit_period: float = DEFAULT_RATE_LIMIT_PERIOD,
) -> Metrics:
    """The metrics backend named by `-metrics-backend` (case-insensitive)."""
    name = backend.strip().lower()
    cls: type[Metrics]
    if name == "prometheus":
        cls = PrometheusMetrics
    elif name == "expvar":
        cls = ExpvarMetrics
    elif name == "influxdb":
        raise ConfigError(
            "-metrics-backend influxdb is not supported by this build; use prometheus "
            "(scrape /metrics on -api-binding) or expvar (/vars)"
        )
    else:
        cls = Metrics
        if name not in ("discard", ""):
            # Q34: upstream silently falls back to discard; say so.
            log.warning(
                "Unknown metrics backend %r; metrics are discarded",
                backend,
                extra={"fields": {"metricsBackend": backend}},
            )
    return cls(
        record_logins=record_logins,
        rate_limit_available=rate_limit_available,
        rate_limit_period=rate_limit_period,
    )


def _player_labels(player: PlayerInfo, server_address: str) -> tuple[str, ...]:
    return (player.name, str(player.uuid), server_address)


def _player_text(player: PlayerInfo) -> str:
    return f"{player.name}/{player.uuid}"


def go_float(value: float) -> str:
    """A sample value as Go's strconv.FormatFloat(v, 'g', -1, 64), as promhttp writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # the decimal point's position in `text`
    minus = "-" if sign else ""
    # 'g' with the shortest precision switches to %e below 1e-4 and from 1e6 up (Go's
    # eprec = 6 for the shortest form; promhttp prints 1e+06, 1.234567e+06).
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        power = point - 1
        return f"{minus}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
