"""Metrics (spec §10): events in, `/metrics` scraped over HTTP and parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mc_router.api import build_api
from mc_router.errors import ConfigError
from mc_router.events import (
    BackendConnected,
    Client,
    ConnectionClosed,
    ErrorObserved,
    EventBus,
    FrontendAccepted,
    PlayerInfo,
)
from mc_router.metrics import (
    ExpvarMetrics,
    Metrics,
    PrometheusMetrics,
    go_float,
    make_metrics,
)
from mc_router.routing import RoutingTable
from tests.mgmt_helpers import running_api

CLIENT = Client("192.0.2.1", 40000)
STEVE = PlayerInfo("Steve", uuid.UUID("8667ba71-b85a-4004-af54-457a9734eed7"))


def connected(raw: str, backend: str, player: PlayerInfo | None = None) -> BackendConnected:
    return BackendConnected(CLIENT, raw, raw.lower().rstrip("."), player, backend, True, "")


def closed(
    raw: str, backend: str, player: PlayerInfo | None = None, sent: int = 0, received: int = 0
) -> ConnectionClosed:
    return ConnectionClosed(CLIENT, raw, player, backend, True, True, "", sent, received)


async def scrape(metrics: Metrics, *, token: str = "") -> str:
    app = build_api(RoutingTable(), token=token, metrics_routes=metrics.routes())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with running_api(app) as running, running.http.get(
        running.url + "/metrics", headers=headers
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return await response.text()


def samples(text: str) -> dict[str, list[Sample]]:
    return {
        family.name: family.samples
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mc_router_")
    }


def value(text: str, family: str, **labels: str) -> float:
    for sample in samples(text)[family]:
        if sample.labels == labels:
            return sample.value
    raise AssertionError(f"no {family}{labels} in {samples(text).get(family)}")


@pytest.fixture
async def prometheus() -> AsyncIterator[tuple[PrometheusMetrics, EventBus]]:
    metrics = make_metrics("prometheus")
    assert isinstance(metrics, PrometheusMetrics)
    bus = EventBus()
    bus.subscribe(metrics)
    await metrics.start()
    yield metrics, bus
    await metrics.aclose()


async def test_upstream_names_without_total_in_classic_text(
    prometheus: tuple[PrometheusMetrics, EventBus],
) -> None:
    metrics, bus = prometheus
    bus.publish(FrontendAccepted())
    bus.publish(FrontendAccepted())
    bus.publish(ErrorObserved("read"))
    bus.publish(ErrorObserved("missing_backend"))
    bus.publish(ErrorObserved("read"))
    text = await scrape(metrics)
    assert "# HELP mc_router_errors The total number of errors\n" in text
    assert "# TYPE mc_router_errors counter\n" in text
    assert 'mc_router_errors{type="read"} 2\n' in text
    assert 'mc_router_errors{type="missing_backend"} 1\n' in text
    assert "# TYPE mc_router_frontend_connections counter\n" in text
    assert 'mc_router_frontend_connections{side="frontend"} 2\n' in text
    lines = [line for line in text.splitlines() if line.startswith("mc_router")]
    assert not [line for line in lines if "_total" in line or "_created" in line]
    # prometheus_client's parser reads Go's counters as family NAME, samples NAME_total.
    assert value(text, "mc_router_errors", type="read") == 2
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["mc_router_errors"].type == "counter"
    assert families["mc_router_errors"].documentation == "The total number of errors"


async def test_series_appear_only_after_their_first_update(
    prometheus: tuple[PrometheusMetrics, EventBus],
) -> None:
    metrics, bus = prometheus
    assert samples(await scrape(metrics)) == {}
    bus.publish(ErrorObserved("relay"))
    assert set(samples(await scrape(metrics))) == {"mc_router_errors"}


async def test_connection_lifecycle(prometheus: tuple[PrometheusMetrics, EventBus]) -> None:
    metrics, bus = prometheus
    bus.publish(connected("Survival.Example.net.", "10.0.0.7:25565"))
    bus.publish(connected("survival.example.net", "10.0.0.7:25565"))
    bus.publish(connected("creative.example.net", "10.0.0.8:25565"))
    text = await scrape(metrics)
    assert value(text, "mc_router_active_connections") == 3
    # backend_connections is labelled by the normalised requested address (Q35).
    assert value(text, "mc_router_backend_connections", host="survival.example.net",
                 side="backend") == 2
    assert 'mc_router_backend_connections{host="survival.example.net",side="backend"} 2' in text
    # server_active_connections: the raw address as label, the per-backend count as value.
    assert value(text, "mc_router_server_active_connections",
                 server_address="Survival.Example.net.") == 1
    assert value(text, "mc_router_server_active_connections",
                 server_address="survival.example.net") == 2
    assert value(text, "mc_router_server_active_connections",
                 server_address="creative.example.net") == 1
    assert "mc_router_bytes" not in samples(text)

    bus.publish(closed("survival.example.net", "10.0.0.7:25565", sent=1000, received=234_567))
    bus.publish(ConnectionClosed(CLIENT, "x", None, "", False, True, ""))  # never connected
    text = await scrape(metrics)
    assert value(text, "mc_router_active_connections") == 2
    assert value(text, "mc_router_server_active_connections",
                 server_address="survival.example.net") == 1
    assert value(text, "mc_router_bytes") == 235_567
    assert "mc_router_bytes 235567\n" in text

    for _ in range(3):  # more closes than opens: clamped at 0
        bus.publish(closed("creative.example.net", "10.0.0.8:25565"))
    text = await scrape(metrics)
    assert value(text, "mc_router_server_active_connections",
                 server_address="creative.example.net") == 0
    assert value(text, "mc_router_active_connections") == 0
    assert "mc_router_server_active_player" not in samples(text)


async def test_record_logins(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mc_router.metrics")
    metrics = PrometheusMetrics(record_logins=True)
    bus = EventBus()
    bus.subscribe(metrics)
    bus.publish(connected("Mc.Example", "b:1", STEVE))
    bus.publish(connected("mc.example", "b:1"))  # a status ping: no player, not recorded
    labels = {
        "player_name": "Steve", "player_uuid": str(STEVE.uuid), "server_address": "Mc.Example"
    }
    text = await scrape(metrics)
    assert value(text, "mc_router_server_active_player", **labels) == 1
    assert value(text, "mc_router_server_logins", **labels) == 1
    assert len(samples(text)["mc_router_server_logins"]) == 1
    bus.publish(closed("Mc.Example", "b:1", STEVE))
    text = await scrape(metrics)
    assert value(text, "mc_router_server_active_player", **labels) == 0
    assert value(text, "mc_router_server_logins", **labels) == 1
    logins = [r for r in caplog.records if r.getMessage() == "Player attempted to login to server"]
    assert len(logins) == 1
    assert logins[0].fields["serverAddress"] == "Mc.Example"  # type: ignore[attr-defined]


async def test_rate_limit_gauge_is_refreshed_every_period() -> None:
    calls = 0
    refreshed = asyncio.Event()

    def available() -> float:
        nonlocal calls
        calls += 1
        if calls >= 3:
            refreshed.set()
        return 2.5 - calls

    metrics = PrometheusMetrics(rate_limit_available=available, rate_limit_period=0.01)
    await metrics.start()
    try:
        async with asyncio.timeout(5):
            await refreshed.wait()
    finally:
        await metrics.aclose()
    text = await scrape(metrics)
    # Whole tokens, as Go's bucket reports them (negative while callers wait).
    assert value(text, "mc_router_rate_limit_available") == math.floor(2.5 - calls)
    assert calls >= 3 and math.floor(2.5 - calls) < 0  # negative values pass through


async def test_rate_limit_refresh_disabled_by_zero_period() -> None:
    metrics = PrometheusMetrics(rate_limit_available=lambda: 1.0, rate_limit_period=0)
    await metrics.start()
    await metrics.aclose()
    assert metrics.value("mc_router_rate_limit_available") is None


async def test_token_guards_metrics(prometheus: tuple[PrometheusMetrics, EventBus]) -> None:
    metrics, bus = prometheus
    bus.publish(ErrorObserved("read"))
    assert 'mc_router_errors{type="read"} 1' in await scrape(metrics, token="t0k")


async def test_registries_are_per_instance() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first(ErrorObserved("read"))
    assert first.registry.get_sample_value("mc_router_errors_total", {"type": "read"}) == 1
    assert second.registry.get_sample_value("mc_router_errors_total", {"type": "read"}) is None
    assert REGISTRY.get_sample_value("mc_router_errors_total", {"type": "read"}) is None
    assert "mc_router_errors" not in (await scrape(second))


async def test_discard_is_the_default_and_serves_runtime_metrics() -> None:
    metrics = make_metrics("discard")
    assert type(metrics) is Metrics
    metrics(ErrorObserved("read"))
    metrics(connected("a", "b:1"))
    text = await scrape(metrics)
    assert "mc_router_" not in text
    assert "process_" in text or "python_info" in text


@pytest.mark.parametrize("name", ["Prometheus", "PROMETHEUS", " prometheus "])
def test_backend_name_is_case_insensitive(name: str) -> None:
    assert isinstance(make_metrics(name), PrometheusMetrics)


def test_influxdb_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match="influxdb is not supported"):
        make_metrics("influxdb")


def test_unknown_backend_is_discard_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.metrics")
    assert type(make_metrics("graphite")) is Metrics
    assert "Unknown metrics backend 'graphite'" in caplog.text


async def test_expvar_vars() -> None:
    metrics = make_metrics("expvar", record_logins=True)
    assert isinstance(metrics, ExpvarMetrics)
    metrics(FrontendAccepted())
    metrics(connected("a", "b:1", STEVE))
    metrics(ErrorObserved("read"))
    metrics(closed("a", "b:1", STEVE, 10, 5))
    app = build_api(RoutingTable(), metrics_routes=metrics.routes())
    async with running_api(app) as running, running.http.post(running.url + "/vars") as response:
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        document = json.loads(await response.read())
    assert isinstance(document.pop("cmdline"), list)
    assert document == {
        "connections": 2,  # frontend and backend share one counter
        "errors": 1,
        "bytes": 15,
        "active_connections": 0,
        "server_active_connections": 0,
        "server_active_player": 0,
        "server_logins": 1,
    }


def test_label_values_drop_invalid_utf8() -> None:
    metrics = PrometheusMetrics()
    raw = b"bad\xffname".decode("utf-8", "surrogateescape")
    metrics(connected(raw, "b:1"))
    assert metrics.value("mc_router_server_active_connections", server_address="badname") == 1


def test_label_values_are_escaped() -> None:
    metrics = PrometheusMetrics()
    metrics(connected('q"uo\\te\nx', "b:1"))
    text = metrics.render_families().decode()
    assert 'server_address="q\\"uo\\\\te\\nx"' in text
    parsed = samples(text)["mc_router_server_active_connections"]
    assert parsed[0].labels == {"server_address": 'q"uo\\te\nx'}


def test_series_are_capped() -> None:
    metrics = PrometheusMetrics(max_series=2)
    for index in range(5):
        metrics(ErrorObserved(f"type{index}"))
    assert len(metrics.families["mc_router_errors"].series) == 2


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0"), (1, "1"), (2.5, "2.5"), (123456, "123456"), (1e6, "1e+06"),
     (1234567, "1.234567e+06"), (0.0001, "0.0001"), (0.00001, "1e-05"), (-3, "-3"),
     (float("inf"), "+Inf"), (float("nan"), "NaN")],
)
def test_go_float(number: float, text: str) -> None:
    assert go_float(number) == text
