"""The routes file (spec §7): parsing, startup load, SIGHUP reload, watching, atomic saving."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mc_router.errors import ConfigError
from mc_router.protocol.gojson import go_json_bytes as go_json
from mc_router.routing import Route, RoutingTable
from mc_router.sources.routes_file import RoutesFile, parse_routes_config

EXAMPLE = """{
  "default-server": "lobby:25565",
  "mappings": {
    "survival.example.net": "survival:25565",
    "Creative.Example.net": "10.1.2.3:25570"
  }
}
"""


@dataclass
class Recorder:
    """A RouteListener that records what it hears."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def route_added(self, route: Route) -> None:
        self.events.append(("added", route.server_address, route.backend))

    def route_removed(self, route: Route) -> None:
        self.events.append(("removed", route.server_address, ""))

    def default_route_set(self, route: Route) -> None:
        self.events.append(("default-set", "", route.backend))

    def default_route_removed(self) -> None:
        self.events.append(("default-removed", "", ""))


def backends(table: RoutingTable) -> dict[str, str]:
    return {key: route.backend for key, route in table.mappings().items()}


# -- parsing (§7.1) --------------------------------------------------------------------------


def test_parse_example() -> None:
    mappings, default = parse_routes_config(EXAMPLE)
    assert default == "lobby:25565"
    assert mappings == {
        "survival.example.net": "survival:25565",
        "Creative.Example.net": "10.1.2.3:25570",
    }


@pytest.mark.parametrize(
    ("text", "mappings", "default"),
    [
        ('{"Default-Server":"d:1","MAPPINGS":{"a":"a:1"}}', {"a": "a:1"}, "d:1"),
        ('{"default-server":null,"mappings":null}', {}, ""),
        ("{}", {}, ""),
        ("null", {}, ""),
        ('{"mappings":{"a":null}}', {"a": ""}, ""),
        ('{"unknown":[1,{"x":2}],"mappings":{"a":"a:1"},"extra":true}', {"a": "a:1"}, ""),
        ('{"default-server":"old:1","DEFAULT-SERVER":"new:1"}', {}, "new:1"),
        ('{"mappings":{"a":"a:1"},"Mappings":{"b":"b:1"}}', {"a": "a:1", "b": "b:1"}, ""),
        (b'{"mappings":{"a":"\xff:1"}}', {"a": "\ufffd:1"}, ""),
    ],
)
def test_parse_like_go(text: str | bytes, mappings: dict[str, str], default: str) -> None:
    assert parse_routes_config(text) == (mappings, default)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "mappings": {\n    "a": "a:1",\n  }\n}', "invalid JSON at line 4, column 3"),
        ("", "invalid JSON at line 1, column 1"),
        ('{"mappings":{}} trailing', "invalid JSON at line 1, column 17: Extra data"),
        ('{"default-server": 25565}', "at default-server: expected a string, got a number (25565)"),
        ('{"mappings":{"a.com":1}}', 'at mappings["a.com"]: expected a string, got a number (1)'),
        ('{"Mappings":{"a.com":true}}', 'at Mappings["a.com"]: expected a string, got a boolean'),
        ('{"mappings":["a"]}', "at mappings: expected an object, got an array"),
        ('["a"]', "expected a JSON object at the top level, got an array"),
        ('"text"', "expected a JSON object at the top level, got a string"),
    ],
)
def test_parse_errors_name_the_problem_and_place(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes_config(text, origin="routes.json")
    assert str(caught.value).startswith("routes.json: ")
    assert message in str(caught.value)


# -- startup (§7.2) --------------------------------------------------------------------------


def test_initial_load(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(EXAMPLE)
    table = RoutingTable()
    RoutesFile(str(path)).apply_initial(table)
    assert backends(table) == {
        "survival.example.net": "survival:25565",
        "creative.example.net": "10.1.2.3:25570",
    }
    assert {route.source for route in table} == {"file"}
    assert table.default_route is not None
    assert (table.default_route.backend, table.default_route.source) == ("lobby:25565", "file")


def test_initial_load_always_sets_a_default(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"mappings":{}}')
    table = RoutingTable()
    recorder = Recorder()
    table.subscribe(recorder)
    RoutesFile(str(path)).apply_initial(table)
    assert table.default_route is not None and table.default_route.backend == ""
    assert recorder.events == [("default-set", "", "")]


def test_missing_file_at_startup_is_fine(tmp_path: Path) -> None:
    table = RoutingTable()
    routes = RoutesFile(str(tmp_path / "absent.json"))
    routes.apply_initial(table)
    assert len(table) == 0
    assert table.default_route is None
    assert routes.in_sync


def test_bad_file_at_startup_stops_with_place(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{\n  "mappings": {"a": "a:1",,}\n}')
    with pytest.raises(ConfigError) as caught:
        RoutesFile(str(path)).apply_initial(RoutingTable())
    message = str(caught.value)
    assert message.startswith("could not load routes config file: ")
    assert str(path) in message
    assert "line 2, column 27" in message


def test_unreadable_file_at_startup_stops(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not load routes config file"):
        RoutesFile(str(tmp_path)).apply_initial(RoutingTable())  # a directory


def test_route_factory_lets_the_wiring_decorate_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"default-server":"d:1","mappings":{"A":"a:1"}}')
    table = RoutingTable()

    def factory(server_address: str, backend: str) -> Route:
        return Route(server_address.lower(), backend, "file", scaling_key=backend)

    RoutesFile(str(path), route_factory=factory).apply_initial(table)
    assert table.get("a") == Route("a", "a:1", "file", scaling_key="a:1")
    assert table.default_route is not None and table.default_route.scaling_key == "d:1"


# -- SIGHUP reload (§7.3) --------------------------------------------------------------------


def test_reload_resets_then_registers(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"default-server":"d:1","mappings":{"a":"a:1","b":"b:1"}}')
    table = RoutingTable()
    routes = RoutesFile(str(path))
    routes.apply_initial(table)
    table.create_mapping("from-api", "api:1", source="api")
    table.set_default_route("cli:1", source="default")
    path.write_text('{"mappings":{"a":"a:2"}}')
    recorder = Recorder()
    table.subscribe(recorder)
    recorder.events.clear()
    assert routes.reload(table) is True
    # Q12: every source is wiped (API route, CLI default), then the file is registered.
    assert backends(table) == {"a": "a:2"}
    assert table.default_route is not None and table.default_route.backend == ""
    assert recorder.events[-2:] == [("added", "a", "a:2"), ("default-set", "", "")]
    assert ("default-removed", "", "") in recorder.events
    assert {e[1] for e in recorder.events if e[0] == "removed"} == {"a", "b", "from-api"}


@pytest.mark.parametrize("breakage", ["invalid", "missing"])
def test_bad_reload_keeps_routes_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, breakage: str
) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.sources.routes_file")
    path = tmp_path / "routes.json"
    path.write_text('{"default-server":"d:1","mappings":{"a":"a:1"}}')
    table = RoutingTable()
    routes = RoutesFile(str(path))
    routes.apply_initial(table)
    if breakage == "invalid":
        path.write_text('{"mappings": {"a": 5}}')
    else:
        path.unlink()
    assert routes.reload(table) is False
    assert backends(table) == {"a": "a:1"}
    assert table.default_route is not None and table.default_route.backend == "d:1"
    assert "Could not re-read the routes config file" in caplog.text
    assert not routes.in_sync
    ok, detail = routes.readiness()
    assert not ok and isinstance(detail, dict) and detail["error"]
    path.write_text('{"mappings":{"a":"a:3"}}')
    assert routes.reload(table) is True
    assert routes.in_sync


# -- watching (§7.4) -------------------------------------------------------------------------


@dataclass
class Watching:
    routes: RoutesFile
    table: RoutingTable
    path: Path
    loads: asyncio.Queue[bool]

    async def next_load(self, timeout: float = 10.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.loads.get()


@contextlib.asynccontextmanager
async def watching(path: Path, debounce: float = 0.2) -> AsyncIterator[Watching]:
    table = RoutingTable()
    routes = RoutesFile(str(path))
    routes.apply_initial(table)
    loads: asyncio.Queue[bool] = asyncio.Queue()
    started = asyncio.Event()
    task = asyncio.create_task(
        routes.watch(table, debounce=debounce, started=started, loaded=loads.put_nowait)
    )
    try:
        async with asyncio.timeout(5):
            await started.wait()
        yield Watching(routes, table, path, loads)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_watch_loads_changes_without_reset(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"default-server":"d:1","mappings":{"a":"a:1","b":"b:1"}}')
    async with watching(path) as w:
        w.table.create_mapping("from-api", "api:1", source="api")
        path.write_text('{"mappings":{"a":"a:2"}}')
        assert await w.next_load() is True
        # Q12 kept: no reset, so `b` (deleted from the file) and the API route stay.
        assert backends(w.table) == {"a": "a:2", "b": "b:1", "from-api": "api:1"}
        assert w.table.default_route is not None and w.table.default_route.backend == ""


async def test_watch_survives_rename_over_and_late_creation(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"  # does not exist yet: upstream would refuse to watch
    async with watching(path) as w:
        for generation in range(1, 4):
            temp = tmp_path / f".routes.json.{generation}.swp"
            temp.write_text(json.dumps({"mappings": {"a": f"a:{generation}"}}))
            os.replace(temp, path)  # how many editors save
            assert await w.next_load() is True
            assert backends(w.table) == {"a": f"a:{generation}"}


async def test_watch_debounces_a_burst_of_writes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text("{}")
    async with watching(path, debounce=0.3) as w:
        for index in range(5):
            path.write_text(json.dumps({"mappings": {"a": f"a:{index}"}}))
        assert await w.next_load() is True
        # The first load after the burst already sees the last write.
        assert backends(w.table) == {"a": "a:4"}
        assert w.loads.empty()


async def test_watch_keeps_routes_on_a_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.sources.routes_file")
    path = tmp_path / "routes.json"
    path.write_text('{"mappings":{"a":"a:1"}}')
    async with watching(path) as w:
        path.write_text('{"mappings":')
        assert await w.next_load() is False
        assert backends(w.table) == {"a": "a:1"}
        assert "Could not re-read the routes config file" in caplog.text
        assert not w.routes.in_sync
        path.write_text('{"mappings":{"a":"a:5"}}')
        assert await w.next_load() is True
        assert w.routes.in_sync


async def test_our_own_save_triggers_no_route_events(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"default-server":"d:1","mappings":{"a":"a:1"}}')
    async with watching(path) as w:
        w.table.create_mapping("new", "n:1", source="api")
        recorder = Recorder()
        w.table.subscribe(recorder)
        recorder.events.clear()
        assert await w.routes.save(w.table) is True
        assert await w.next_load() is True
        assert recorder.events == []  # unchanged routes are not re-registered
        route = w.table.get("new")
        assert route is not None and route.source == "api"


async def test_watch_needs_the_directory(tmp_path: Path) -> None:
    routes = RoutesFile(str(tmp_path / "no-such-dir" / "routes.json"))
    with pytest.raises(ConfigError, match="does not exist"):
        routes.check_watchable()
    with pytest.raises(ConfigError):
        await routes.watch(RoutingTable())


# -- saving (§7.5) ---------------------------------------------------------------------------


def table_with_routes(count: int = 2, default: str | None = "d:1") -> RoutingTable:
    table = RoutingTable()
    for index in range(count):
        table.create_mapping(f"Host{index}.Example", f"b{index}:25565", source="mapping")
    if default is not None:
        table.set_default_route(default)
    return table


async def test_save_writes_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = RoutesFile(str(path))
    assert await routes.save(table_with_routes()) is True
    assert path.read_bytes() == (
        b'{"default-server":"d:1","mappings":'
        b'{"host0.example":"b0:25565","host1.example":"b1:25565"}}'
    )
    assert await routes.save(RoutingTable()) is True  # no default: must not fail
    assert path.read_bytes() == b'{"default-server":"","mappings":{}}'
    assert os.listdir(tmp_path) == ["routes.json"]  # no temporary file left behind


async def test_save_round_trips_through_load(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    source = table_with_routes(5)
    source.create_mapping("a<b>&c", "x:1")
    await RoutesFile(str(path)).save(source)
    assert b"\\u003c" in path.read_bytes()
    loaded = RoutingTable()
    RoutesFile(str(path)).apply_initial(loaded)
    assert backends(loaded) == backends(source)


async def test_save_modes(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    await RoutesFile(str(path)).save(table_with_routes())
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o664 & ~umask
    path.chmod(0o640)
    inode = path.stat().st_ino
    await RoutesFile(str(path)).save(table_with_routes(3))
    assert path.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place


async def test_save_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "routes.json"
    target.write_text("{}")
    link = tmp_path / "routes.json"
    link.symlink_to(target)
    await RoutesFile(str(link)).save(table_with_routes(1))
    assert link.is_symlink()
    assert json.loads(target.read_text())["mappings"] == {"host0.example": "b0:25565"}


async def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = RoutesFile(str(path))
    big = table_with_routes(2000)  # ~60 KB: a non-atomic write would be observed half done
    small = table_with_routes(1)
    await routes.save(big)
    expected = {routes.render(big), routes.render(small)}
    stop = threading.Event()
    seen: set[bytes] = set()
    bad: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if data in expected:
                seen.add(data)
            else:
                bad.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index in range(60):
            await routes.save(big if index % 2 else small)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    assert bad == []
    assert seen  # the reader really ran


async def test_concurrent_saves_end_with_the_latest_table(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = RoutesFile(str(path))
    table = RoutingTable()
    saves = []
    for index in range(20):
        table.create_mapping(f"h{index}", f"b{index}:1")
        saves.append(asyncio.create_task(routes.save(table)))
    assert all(await asyncio.gather(*saves))
    assert len(json.loads(path.read_text())["mappings"]) == 20


async def test_save_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="mc_router.sources.routes_file")
    routes = RoutesFile(str(tmp_path / "missing-dir" / "routes.json"))
    assert await routes.save(table_with_routes()) is False
    assert "Could not save the routes config file" in caplog.text


async def test_falls_back_to_in_place_when_rename_is_impossible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A single file bind-mounted into a container cannot be renamed over: EBUSY.
    caplog.set_level(logging.WARNING, logger="mc_router.sources.routes_file")
    path = tmp_path / "routes.json"
    path.write_text("{}")
    inode = path.stat().st_ino

    def busy(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "replace", busy)
    routes = RoutesFile(str(path))
    assert await routes.save(table_with_routes(1)) is True
    assert await routes.save(table_with_routes(2)) is True
    assert path.stat().st_ino == inode
    assert json.loads(path.read_text())["mappings"].keys() == {"host0.example", "host1.example"}
    assert caplog.text.count("rewriting it in place") == 1
    assert os.listdir(tmp_path) == ["routes.json"]


def test_render_uses_lowercased_keys_and_every_source() -> None:
    table = RoutingTable()
    table.create_mapping("CLI.Example", "c:1", source="mapping")
    table.create_mapping("api.example", "a:1", source="api")
    rendered = RoutesFile("unused.json").render(table)
    assert rendered == (
        b'{"default-server":"","mappings":{"api.example":"a:1","cli.example":"c:1"}}'
    )




def test_go_json_matches_go_marshal() -> None:
    undecodable = b"x\xffy".decode("utf-8", "surrogateescape")
    assert go_json({"b": "<&>\u2028", "a": undecodable}, sort_keys=True) == (
        b'{"a":"x\xef\xbf\xbdy","b":"\\u003c\\u0026\\u003e\\u2028"}'
    )
    assert go_json({"z": 1, "a": "\u00e9"}) == '{"z":1,"a":"\u00e9"}'.encode()
