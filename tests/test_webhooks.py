"""Event webhooks (spec §9) against a real local receiver, a slow one and a dead one."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from mc_router.errors import ConfigError
from mc_router.events import (
    BackendConnected,
    BackendFailed,
    BackendMissing,
    Client,
    ConnectionClosed,
    EventBus,
    FrontendAccepted,
    PlayerInfo,
)
from mc_router.routing import RoutingTable
from mc_router.webhooks import (
    EVENT_TYPES,
    WebhookNotifier,
    client_json,
    payload,
    redact_url,
    rfc3339_nano,
)
from tests.mgmt_helpers import Receiver, dead_port

ALL = EVENT_TYPES
CLIENT = Client("203.0.113.7", 50123)
ALEX = PlayerInfo("Alex", uuid.UUID(int=0))
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def connected(server: str = "Survival.example.net", player: PlayerInfo | None = ALEX) -> (
    BackendConnected
):
    return BackendConnected(CLIENT, server, server.lower(), player, "10.0.0.7:25565", True, "")


def closed(backend: str = "10.0.0.7:25565", player: PlayerInfo | None = ALEX) -> ConnectionClosed:
    return ConnectionClosed(CLIENT, "Survival.example.net", player, backend, True, True, "")


# -- payloads (§9.3) -------------------------------------------------------------------------


def test_timestamp_utc(utc: None) -> None:
    assert rfc3339_nano(1_767_323_045_123_456_789) == "2026-01-02T03:04:05.123456789Z"
    assert rfc3339_nano(1_767_323_045_500_000_000) == "2026-01-02T03:04:05.5Z"
    assert rfc3339_nano(1_767_323_045_000_000_000) == "2026-01-02T03:04:05Z"
    assert rfc3339_nano(1_767_323_045_000_000_100) == "2026-01-02T03:04:05.0000001Z"


def test_timestamp_local_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    try:
        assert rfc3339_nano(1_767_323_045_123_456_700) == "2026-01-01T22:04:05.1234567-05:00"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("host", "shown"),
    [("203.0.113.7", "203.0.113.7"), ("::ffff:192.0.2.1", "192.0.2.1"),
     ("fe80::1%eth0", "fe80::1"), ("2001:db8::1", "2001:db8::1")],
)
def test_client_host(host: str, shown: str) -> None:
    assert client_json(Client(host, 1)) == {"host": shown, "port": 1}


def test_connect_success_payload_matches_upstream_example() -> None:
    body = payload(
        "connect", "2026-01-02T03:04:05.123456789Z", client=CLIENT,
        server="Survival.example.net", player=ALEX, backend="10.0.0.7:25565",
    )
    assert json.dumps(body, separators=(",", ":")) == (
        '{"event":"connect","timestamp":"2026-01-02T03:04:05.123456789Z","status":"success",'
        '"client":{"host":"203.0.113.7","port":50123},"server":"Survival.example.net",'
        '"player":{"name":"Alex","uuid":"00000000-0000-0000-0000-000000000000"},'
        '"backend":"10.0.0.7:25565"}'
    )


def test_default_route_removed_payload_matches_upstream_example() -> None:
    body = payload("default-route-removed", "2026-01-02T03:04:05.5Z")
    assert json.dumps(body, separators=(",", ":")) == (
        '{"event":"default-route-removed","timestamp":"2026-01-02T03:04:05.5Z",'
        '"status":"success","server":""}'
    )


# -- end to end with a real receiver (§9.1, §9.4) --------------------------------------------


async def test_every_event_reaches_the_receiver(utc: None) -> None:
    async with Receiver() as receiver, WebhookNotifier(receiver.url, ALL) as notifier:
        bus = EventBus()
        bus.subscribe(notifier)
        table = RoutingTable()
        table.subscribe(notifier)
        bus.publish(FrontendAccepted())  # not a webhook event
        bus.publish(connected())
        bus.publish(BackendMissing(CLIENT, "Nowhere.example", None))
        bus.publish(BackendFailed(CLIENT, "x.example", ALEX, "x:1", "connection refused"))
        bus.publish(closed(backend=""))
        table.create_mapping("A.example", "a:1")
        table.remove_mapping("a.example")
        table.set_default_route("")
        table.set_default_route("d:1")
        table.reset()
        got = [(await receiver.next()) for _ in range(9)]
        await notifier.drain()
        assert receiver.deliveries.empty()
    assert {d.headers["Content-Type"] for d in got} == {"application/json"}
    bodies = [d.json for d in got]
    for body in bodies:
        assert RFC3339_UTC.match(body.pop("timestamp")), body
    client = {"host": "203.0.113.7", "port": 50123}
    alex = {"name": "Alex", "uuid": "00000000-0000-0000-0000-000000000000"}
    assert bodies == [
        {"event": "connect", "status": "success", "client": client,
         "server": "Survival.example.net", "player": alex, "backend": "10.0.0.7:25565"},
        {"event": "connect", "status": "missing-backend", "client": client,
         "server": "Nowhere.example", "error": "No backend found"},
        {"event": "connect", "status": "failed-backend-connection", "client": client,
         "server": "x.example", "player": alex, "backend": "x:1",
         "error": "connection refused"},
        {"event": "disconnect", "status": "success", "client": client,
         "server": "Survival.example.net", "player": alex},
        {"event": "route-added", "status": "success", "server": "a.example", "backend": "a:1"},
        {"event": "route-removed", "status": "success", "server": "a.example"},
        {"event": "default-route-set", "status": "success", "server": ""},
        {"event": "default-route-set", "status": "success", "server": "", "backend": "d:1"},
        # reset() always notifies default-route-removed (§3.2).
        {"event": "default-route-removed", "status": "success", "server": ""},
    ]


async def test_member_order_on_the_wire() -> None:
    async with Receiver() as receiver, WebhookNotifier(receiver.url) as notifier:
        notifier(connected())
        raw = (await receiver.next()).body
    keys = list(json.loads(raw, object_pairs_hook=lambda pairs: pairs))
    assert [k for k, _ in keys] == [
        "event", "timestamp", "status", "client", "server", "player", "backend"
    ]
    assert b" " not in raw and not raw.endswith(b"\n")


async def test_default_filter_is_connect_and_disconnect() -> None:
    async with Receiver() as receiver, WebhookNotifier(receiver.url) as notifier:
        table = RoutingTable()
        table.subscribe(notifier)
        table.create_mapping("a", "a:1")
        table.set_default_route("d:1")
        notifier(closed())
        assert (await receiver.next()).json["event"] == "disconnect"
        await notifier.drain()
        assert receiver.deliveries.empty()
        assert notifier.sent == 1


async def test_require_user_skips_connection_events_without_player() -> None:
    events = ("connect", "disconnect", "route-added")
    async with Receiver() as receiver, WebhookNotifier(
        receiver.url, events, require_user=True
    ) as notifier:
        notifier(BackendMissing(CLIENT, "status.example", None))
        notifier(closed(player=None))
        notifier(connected(player=None))
        notifier.route_added(RoutingTable().create_mapping("r", "r:1"))  # not affected
        notifier(connected())
        first, second = await receiver.next(), await receiver.next()
        await notifier.drain()
        assert receiver.deliveries.empty()
    assert first.json["event"] == "route-added"
    assert second.json["player"]["name"] == "Alex"


async def test_replay_when_attached_to_a_table() -> None:
    table = RoutingTable()
    table.create_mapping("a", "a:1")
    table.set_default_route("")  # an empty default is not replayed (§3.2)
    other = RoutingTable()
    other.set_default_route("d:2")
    async with Receiver() as receiver, WebhookNotifier(receiver.url, ALL) as notifier:
        table.subscribe(notifier)
        other.subscribe(notifier)
        first, second = await receiver.next(), await receiver.next()
        await notifier.drain()
        assert receiver.deliveries.empty()
    assert (first.json["event"], first.json["server"], first.json["backend"]) == (
        "route-added", "a", "a:1"
    )
    assert (second.json["event"], second.json["backend"]) == ("default-route-set", "d:2")


# -- slow and dead receivers ------------------------------------------------------------------


async def test_slow_receiver_never_blocks_publish_and_drops_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.webhooks")
    async with Receiver() as receiver, WebhookNotifier(
        receiver.url, queue_size=2, flush_timeout=5
    ) as notifier:
        receiver.gate.clear()
        bus = EventBus()
        bus.subscribe(notifier)
        bus.publish(closed())
        await receiver.arrived.wait()  # the worker is now stuck inside the first request
        started = time.monotonic()
        for _ in range(10):
            bus.publish(closed())
        assert time.monotonic() - started < 0.5  # publishing only enqueues
        assert notifier.pending == 2
        assert notifier.dropped == 8
        drop_logs = [r for r in caplog.records if "Dropped" in r.getMessage()]
        assert len(drop_logs) == 1  # rate-limited
        receiver.gate.set()
        for _ in range(3):
            await receiver.next()
        await notifier.drain()
        assert notifier.sent == 3


async def test_dead_receiver_is_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.webhooks")
    url = f"http://user:hunter2@127.0.0.1:{dead_port()}/hook?token=abc123"
    async with WebhookNotifier(url, timeout=5) as notifier:
        started = time.monotonic()
        notifier(closed())
        notifier(closed())
        assert time.monotonic() - started < 0.1
        await notifier.drain()
        assert (notifier.failed, notifier.sent) == (2, 0)
    failures = [r for r in caplog.records if "Failed to send webhook" in r.getMessage()]
    assert len(failures) == 2
    text = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert "hunter2" not in text and "abc123" not in text


async def test_error_status_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.webhooks")
    async with Receiver(status=500) as receiver, WebhookNotifier(receiver.url) as notifier:
        notifier(closed())
        await receiver.next()
        await notifier.drain()
        assert notifier.failed == 1
    assert "webhook receiver responded with an error" in caplog.text


async def test_timeout_applies_to_the_whole_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.webhooks")
    async with Receiver() as receiver, WebhookNotifier(receiver.url, timeout=0.2) as notifier:
        receiver.gate.clear()
        notifier(closed())
        await notifier.drain()
        assert notifier.failed == 1
    assert "timed out after 0.2s" in caplog.text


async def test_close_flushes_the_queue() -> None:
    async with Receiver() as receiver:
        notifier = WebhookNotifier(receiver.url)
        await notifier.start()
        for _ in range(5):
            notifier(closed())
        await notifier.aclose()
        assert receiver.deliveries.qsize() == 5
        assert notifier.sent == 5
        notifier(closed())  # after close: dropped, not queued
        assert notifier.dropped == 1


async def test_close_is_bounded_with_a_stuck_receiver() -> None:
    async with Receiver() as receiver:
        receiver.gate.clear()
        notifier = WebhookNotifier(receiver.url, flush_timeout=0.2)
        await notifier.start()
        for _ in range(3):
            notifier(closed())
        started = time.monotonic()
        await notifier.aclose()
        assert time.monotonic() - started < 2
        assert notifier.dropped == 2  # the one in flight is cancelled, two were still queued


def test_invalid_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="webhook-url"):
        WebhookNotifier("ftp://example.com/x")
    with pytest.raises(ConfigError):
        WebhookNotifier("not a url")


def test_redact_url() -> None:
    assert redact_url("https://u:p@h.example:8443/p/a?x=1#f") == "https://h.example:8443/p/a"
