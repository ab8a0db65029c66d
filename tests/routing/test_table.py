"""The pure route table: normalisation, lookup, listeners and source ownership (spec §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.routing import Backend, Route, RoutingTable, normalize_server_address


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def route_added(self, route: Route) -> None:
        self.calls.append(("added", route.server_address, route.backend))

    def route_removed(self, route: Route) -> None:
        self.calls.append(("removed", route.server_address))

    def default_route_set(self, route: Route) -> None:
        self.calls.append(("default-set", route.backend))

    def default_route_removed(self) -> None:
        self.calls.append(("default-removed",))


# Upstream Test_routesImpl_FindBackendForServerAddress (spec §3.3).
@pytest.mark.parametrize(
    ("mapping", "queried", "backend"),
    [
        ("typical.my.domain", "typical.my.domain", "backend:25565"),
        ("forge.my.domain", "forge.my.domain\x00FML2\x00", "backend:25566"),
        ("my.domain", "my.domain.", "backend:25566"),
        ("forge.my.domain", "forge.my.domain.\x00FML2\x00", "backend:25566"),
    ],
)
def test_upstream_lookup_table(mapping: str, queried: str, backend: str) -> None:
    table = RoutingTable()
    table.create_mapping(mapping, backend)
    found = table.lookup(queried)
    assert found.backend == backend
    assert found.server_address == mapping


@pytest.mark.parametrize(
    ("raw", "simplify", "expected"),
    [
        ("MC.Example.COM", False, "mc.example.com"),
        ("a.com..", False, "a.com."),  # only one root-zone dot (Q8)
        ("host\\guid\\1.2.3.4", False, "host"),
        ("mc.example.com///1.2.3.4:5678///1700000000", False, "mc.example.com"),
        ("host.com.///x", False, "host.com."),  # dot trimmed before the TCPShield cut (Q8)
        ("_minecraft._tcp.play.example.com", True, "play.example.com"),
        ("_minecraft._tcp.play.example.com", False, "_minecraft._tcp.play.example.com"),
        ("play._tcp", True, ""),
        ("no-srv.example.com", True, "no-srv.example.com"),
    ],
)
def test_normalisation_order(raw: str, simplify: bool, expected: str) -> None:
    assert normalize_server_address(raw, simplify_srv=simplify) == expected


@given(st.text(max_size=80))
def test_normalised_addresses_carry_no_suffixes_and_are_found(raw: str) -> None:
    key = normalize_server_address(raw, simplify_srv=True)
    assert "\x00" not in key
    assert "\\" not in key
    assert key == key.lower()
    table = RoutingTable(simplify_srv=True)
    table.create_mapping(key, "b:1")
    if key == normalize_server_address(key, simplify_srv=True):
        assert table.lookup(raw).backend == "b:1"


def test_default_route_is_used_for_unknown_hosts_and_never_by_has_route() -> None:
    table = RoutingTable()
    assert table.lookup("x").route is None
    assert table.lookup("x").backend == ""
    table.set_default_route("default:25565")
    assert table.lookup("unknown.example.com").backend == "default:25565"
    assert not table.has_route("unknown.example.com")


def test_has_route_uses_lowercase_only_q7() -> None:
    table = RoutingTable()
    table.create_mapping("MC.example.com", "b:1")
    assert table.has_route("mc.EXAMPLE.com")
    assert not table.has_route("mc.example.com.")  # lookup finds it, has_route does not
    assert table.lookup("mc.example.com.").backend == "b:1"


def test_listeners_hear_every_change_and_are_replayed_on_subscribe() -> None:
    table = RoutingTable()
    table.create_mapping("a.example.com", "a:1")
    table.set_default_route("")
    recorder = Recorder()
    table.subscribe(recorder)
    # Replay: existing mappings, and the default only when its backend is non-empty.
    assert recorder.calls == [("added", "a.example.com", "a:1")]
    table.set_default_route("d:1")
    assert table.remove_mapping("A.example.com")
    assert not table.remove_mapping("nonexistent.example.com")
    table.create_mapping("b.example.com", "b:1")
    table.create_mapping("c.example.com", "c:1")
    table.reset()
    assert recorder.calls[1:] == [
        ("default-set", "d:1"),
        ("removed", "a.example.com"),
        ("added", "b.example.com", "b:1"),
        ("added", "c.example.com", "c:1"),
        ("removed", "b.example.com"),
        ("removed", "c.example.com"),
        ("default-removed",),
    ]
    # Q9 fixed: reset really clears the default.
    assert table.default_route is None


def test_remove_default_route_clears_and_notifies_once() -> None:
    table = RoutingTable()
    recorder = Recorder()
    table.subscribe(recorder)
    assert not table.remove_default_route()
    table.set_default_route("d:1")
    assert table.remove_default_route()
    assert table.lookup("x").route is None
    assert recorder.calls == [("default-set", "d:1"), ("default-removed",)]


def test_unsubscribe_stops_notifications() -> None:
    table = RoutingTable()
    recorder = Recorder()
    unsubscribe = table.subscribe(recorder)
    unsubscribe()
    table.create_mapping("a", "a:1")
    assert recorder.calls == []


def test_operations_without_listeners_or_routes_do_not_fail() -> None:
    table = RoutingTable()
    assert table.default_route is None
    table.reset()
    table.create_mapping("a", "a:1")
    table.set_default_route("")
    assert table.remove_mapping("a")
    table.reset()


def test_sync_source_touches_only_its_own_routes() -> None:
    table = RoutingTable()
    table.create_mapping("flag.example.com", "flag:1", source="mapping")
    recorder = Recorder()
    table.subscribe(recorder)
    recorder.calls.clear()
    result = table.sync_source(
        "automc",
        {
            "A.example.com": Route("a.example.com", "a:1"),
            "flag.example.com": Route("flag.example.com", "other:1"),
        },
    )
    assert result.added == ["a.example.com"]
    assert result.conflicts == ["flag.example.com"]
    assert table.lookup("flag.example.com").backend == "flag:1"
    assert table.get("a.example.com") == Route("a.example.com", "a:1", source="automc")
    # Unchanged desired state: no notifications at all.
    recorder.calls.clear()
    result = table.sync_source("automc", {"a.example.com": Route("a.example.com", "a:1")})
    assert result.changes == 0
    assert recorder.calls == []
    # Change and removal.
    result = table.sync_source("automc", {"b.example.com": Route("b.example.com", "b:2")})
    assert (result.added, result.removed) == (["b.example.com"], ["a.example.com"])
    assert table.lookup("flag.example.com").backend == "flag:1"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("localhost:25565", "localhost", 25565),
        ("10.0.0.5:1", "10.0.0.5", 1),
        ("[::1]:25565", "::1", 25565),
        ("[fe80::1%eth0]:25565", "fe80::1%eth0", 25565),
    ],
)
def test_backend_parse(text: str, host: str, port: int) -> None:
    backend = Backend.parse(text)
    assert (backend.host, backend.port) == (host, port)
    assert str(backend) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",
        "host:",
        "host:0",
        "host:65536",
        ":25565",
        "::1:25565",
        "a b:1",
        "[::1]",
        "[nope]:1",
        "h:port",
        "x" * 300 + ":1",
    ],
)
def test_backend_parse_rejects_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="backend"):
        Backend.parse(text)
