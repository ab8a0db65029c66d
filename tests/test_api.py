"""The REST API (spec §8) over real HTTP: upstream's shapes and codes, and our additions."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mc_router.api import build_api, decode_fields, parse_binding, start_api
from mc_router.errors import ConfigError
from mc_router.metrics import make_metrics
from mc_router.routing import RoutingTable
from mc_router.sources.routes_file import RoutesFile
from tests.mgmt_helpers import RunningApi, running_api

TOKEN = "s3cret-token"


@dataclass
class Api:
    running: RunningApi
    table: RoutingTable
    saves: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.running.url

    async def call(
        self, method: str, path: str, body: bytes | str | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        async with self.running.http.request(
            method, self.url + path, data=body, headers=headers
        ) as response:
            return response.status, dict(response.headers), await response.read()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    table = RoutingTable()
    saves: list[int] = []

    async def save() -> None:
        saves.append(len(table))

    async with running_api(build_api(table, save=save)) as running:
        yield Api(running, table, saves)


# -- GET /routes (§8.1, upstream Test_apiServer_routesListHandler) ---------------------------


@pytest.mark.parametrize(("scaling_key", "shown"), [("sc1", "sc1"), ("", "")])
async def test_routes_list_matches_upstream(api: Api, scaling_key: str, shown: str) -> None:
    api.table.create_mapping("mc.example.com", "backend:25565", scaling_key=scaling_key)
    status, headers, body = await api.call("GET", "/routes")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    expected = {"mc.example.com": {"backend": "backend:25565", "scalingTarget": shown}}
    assert json.loads(body) == expected
    assert body == json.dumps(expected, separators=(",", ":")).encode()


async def test_routes_list_empty_sorted_and_without_default(api: Api) -> None:
    status, _, body = await api.call("GET", "/routes")
    assert (status, body) == (200, b"{}")
    api.table.set_default_route("d:1")
    api.table.create_mapping("b.example", "b:1")
    api.table.create_mapping("A.example", "a:1")
    _, _, body = await api.call("GET", "/routes")
    assert body == (
        b'{"a.example":{"backend":"a:1","scalingTarget":""},'
        b'"b.example":{"backend":"b:1","scalingTarget":""}}'
    )


async def test_routes_list_reruns_lookup_q44() -> None:
    table = RoutingTable(simplify_srv=True)
    table.create_mapping("_minecraft._tcp.play.example", "stored:1")
    table.set_default_route("fallback:1")
    async with running_api(build_api(table)) as running, running.http.get(
        running.url + "/routes"
    ) as response:
        body = await response.read()
    # Shown under its normalised name, resolved to what that name reaches: the default.
    assert json.loads(body) == {"play.example": {"backend": "fallback:1", "scalingTarget": ""}}


async def test_routes_list_escapes_like_go(api: Api) -> None:
    api.table.create_mapping("x<y>&z", "h:1")
    _, _, body = await api.call("GET", "/routes")
    assert body == b'{"x\\u003cy\\u003e\\u0026z":{"backend":"h:1","scalingTarget":""}}'


# -- POST /routes (§8.2) ----------------------------------------------------------------------


async def test_create_route(api: Api) -> None:
    status, headers, body = await api.call(
        "POST", "/routes", '{"serverAddress":"A.Example.com","backend":"a:25565"}'
    )
    assert (status, body) == (201, b"")
    assert "Content-Type" not in headers
    route = api.table.get("a.example.com")
    assert route is not None
    assert (route.server_address, route.backend, route.source) == (
        "a.example.com",
        "a:25565",
        "api",
    )
    assert api.saves == [1]


@pytest.mark.parametrize(
    "body",
    [
        '{"SERVERADDRESS":"x.example","Backend":"x:1"}',  # member names fold
        '{"serverAddress":"x.example","backend":"x:1"} trailing garbage',  # first value only
        '  \n{"serverAddress":"x.example","backend":"x:1","extra":[1,2]}',  # unknown ignored
        '{"serverAddress":"x.example","backend":"old:1","BACKEND":"x:1"}',  # last one wins
    ],
)
async def test_create_route_go_decoding(api: Api, body: str) -> None:
    status, _, _ = await api.call("POST", "/routes", body)
    assert status == 201
    route = api.table.get("x.example")
    assert route is not None
    assert route.backend == "x:1"


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"[]", b'"text"', b"5", b'{"backend":5}', b'{"serverAddress":true}',
     b'{"backend":NaN}'],
)
async def test_create_route_bad_json_is_400_empty(api: Api, body: bytes) -> None:
    status, _, response = await api.call("POST", "/routes", body)
    assert (status, response) == (400, b"")
    assert len(api.table) == 0
    assert api.saves == []


@pytest.mark.parametrize(
    "backend", ["", "no-port", "host:", "host:99999", "host:port", "::1:25565", "a b:1"]
)
async def test_create_route_rejects_backend_that_is_not_host_port(api: Api, backend: str) -> None:
    payload = json.dumps({"serverAddress": "x.example", "backend": backend})
    status, headers, body = await api.call("POST", "/routes", payload)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert "backend" in json.loads(body)["error"]
    assert len(api.table) == 0
    assert api.saves == []


async def test_null_body_is_an_empty_backend_and_refused(api: Api) -> None:
    # Upstream stores "" -> "" (Q15); we refuse the empty backend instead.
    status, _, body = await api.call("POST", "/routes", "null")
    assert status == 400
    assert "error" in json.loads(body)


# -- POST /defaultRoute (§8.3) ----------------------------------------------------------------


async def test_default_route(api: Api) -> None:
    status, _, body = await api.call("POST", "/defaultRoute", '{"Backend":"d:25565"}')
    assert (status, body) == (200, b"")
    assert api.table.default_route is not None
    assert (api.table.default_route.backend, api.table.default_route.source) == ("d:25565", "api")
    # An empty backend is allowed: "no default backend", as upstream.
    status, _, _ = await api.call("POST", "/defaultRoute", '{"backend":""}')
    assert status == 200
    assert api.table.default_route.backend == ""
    assert api.saves == [0, 0]
    status, _, body = await api.call("POST", "/defaultRoute", '{"backend":"nope"}')
    assert status == 400
    assert "error" in json.loads(body)
    status, _, body = await api.call("POST", "/defaultRoute", "{bad")
    assert (status, body) == (400, b"")
    assert api.saves == [0, 0]


# -- DELETE /routes/{serverAddress} (§8.4) ---------------------------------------------------


async def test_delete_route_saves_even_on_404(api: Api) -> None:
    api.table.create_mapping("a.example.com", "a:1")
    assert (await api.call("DELETE", "/routes/A.EXAMPLE.COM"))[:3:2] == (200, b"")
    assert api.table.get("a.example.com") is None
    assert (await api.call("DELETE", "/routes/A.EXAMPLE.COM"))[:3:2] == (404, b"")
    assert api.saves == [0, 0]


async def test_delete_with_encoded_slash_is_no_such_endpoint(api: Api) -> None:
    status, _, body = await api.call("DELETE", "/routes/a%2Fb")
    assert (status, body) == (404, b"404 page not found\n")
    assert api.saves == []


# -- errors shaped like Go's mux --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/routes/", "/Routes", "/routes/a/b"])
async def test_unknown_path_is_go_404(api: Api, path: str) -> None:
    method = "DELETE" if path.startswith("/routes/") else "GET"
    status, headers, body = await api.call(method, path)
    assert (status, body) == (404, b"404 page not found\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/routes"), ("DELETE", "/routes"), ("HEAD", "/routes"), ("GET", "/defaultRoute"),
     ("GET", "/routes/x"), ("POST", "/healthz")],
)
async def test_wrong_method_is_405_empty(api: Api, method: str, path: str) -> None:
    status, _, body = await api.call(method, path)
    assert (status, body) == (405, b"")


async def test_example_session_from_spec(api: Api) -> None:
    api.table.create_mapping("localhost", "mc:25565")
    calls = [
        ("GET", "/routes", None, 200),
        ("POST", "/routes", '{"serverAddress":"A.example.com","backend":"a:25565"}', 201),
        ("GET", "/routes", None, 200),
        ("DELETE", "/routes/A.EXAMPLE.COM", None, 200),
        ("DELETE", "/routes/A.EXAMPLE.COM", None, 404),
        ("POST", "/defaultRoute", '{"backend":"d:25565"}', 200),
    ]
    bodies = []
    for method, path, body, expected in calls:
        status, _, response = await api.call(method, path, body)
        assert status == expected, (method, path)
        bodies.append(response)
    assert json.loads(bodies[2]).keys() == {"a.example.com", "localhost"}


# -- token -----------------------------------------------------------------------------------


async def test_token_is_required_everywhere_but_healthz() -> None:
    table = RoutingTable()
    metrics = make_metrics("prometheus")
    app = build_api(table, token=TOKEN, metrics_routes=metrics.routes())
    async with running_api(app) as running:
        api = Api(running, table)
        for method, path in [("GET", "/routes"), ("POST", "/routes"), ("GET", "/readyz"),
                             ("GET", "/metrics"), ("GET", "/vars"), ("GET", "/nope")]:
            status, headers, body = await api.call(method, path)
            assert status == 401, path
            assert json.loads(body) == {"error": "missing or invalid API token"}
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert (await api.call("GET", "/routes", Authorization="Bearer wrong"))[0] == 401
        assert (await api.call("GET", "/routes", Authorization=TOKEN))[0] == 401
        assert (await api.call("GET", "/routes", **{"X-API-Key": "wrong"}))[0] == 401
        assert (await api.call("GET", "/routes", Authorization=f"Bearer {TOKEN}"))[0] == 200
        assert (await api.call("GET", "/routes", Authorization=f"bearer {TOKEN}"))[0] == 200
        assert (await api.call("GET", "/routes", **{"X-API-Key": TOKEN}))[0] == 200
        assert (await api.call("GET", "/metrics", Authorization=f"Bearer {TOKEN}"))[0] == 200
        assert (await api.call("GET", "/healthz"))[0] == 200
        status, _, _ = await api.call(
            "POST", "/routes", '{"serverAddress":"a","backend":"a:1"}', **{"X-API-Key": TOKEN}
        )
        assert status == 201


async def test_loud_warning_when_exposed_without_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mc_router.api")
    async with running_api(build_api(RoutingTable()), "127.0.0.1:0"):
        pass
    assert not [r for r in caplog.records if "WITHOUT A TOKEN" in r.getMessage()]
    async with running_api(build_api(RoutingTable(), token=TOKEN), "0.0.0.0:0"):
        pass
    assert not [r for r in caplog.records if "WITHOUT A TOKEN" in r.getMessage()]
    async with running_api(build_api(RoutingTable()), "0.0.0.0:0"):
        pass
    warnings = [r for r in caplog.records if "WITHOUT A TOKEN" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_listen_failure_is_a_config_error() -> None:
    async with running_api(build_api(RoutingTable())) as running:
        host, port = running.server.addresses[0]
        with pytest.raises(ConfigError, match="could not start the API server"):
            await start_api(build_api(RoutingTable()), f"{host}:{port}")


@pytest.mark.parametrize(
    ("binding", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), (":25580", (None, 25580)),
     ("[::1]:0", ("::1", 0)), ("localhost:1", ("localhost", 1))],
)
def test_parse_binding(binding: str, expected: tuple[str | None, int]) -> None:
    assert parse_binding(binding) == expected


@pytest.mark.parametrize("binding", ["8080", "host:", "host:http", "h:70000"])
def test_parse_binding_rejects(binding: str) -> None:
    with pytest.raises(ConfigError):
        parse_binding(binding)


# -- probes ----------------------------------------------------------------------------------


async def test_healthz_and_readyz() -> None:
    state = {"listening": True}

    def listener() -> tuple[bool, object]:
        return state["listening"], {"addresses": ["127.0.0.1:25565"]}

    def broken() -> tuple[bool, object]:
        raise RuntimeError("boom")

    app = build_api(RoutingTable(), checks={"listener": listener})
    async with running_api(app) as running:
        api = Api(running, RoutingTable())
        status, headers, body = await api.call("GET", "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert headers["Content-Type"] == "application/json"
        status, _, body = await api.call("GET", "/readyz")
        assert status == 200
        assert json.loads(body) == {
            "status": "ready",
            "checks": {"listener": {"ok": True, "detail": {"addresses": ["127.0.0.1:25565"]}}},
        }
        state["listening"] = False
        status, _, body = await api.call("GET", "/readyz")
        assert status == 503
        assert json.loads(body)["status"] == "not ready"
    async with (
        running_api(build_api(RoutingTable(), checks={"x": broken})) as running,
        running.http.get(running.url + "/readyz") as response,
    ):
        assert response.status == 503
        assert "boom" in (await response.json())["checks"]["x"]["detail"]


async def test_readyz_follows_the_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text('{"mappings":{"a":"a:1"}}')
    table = RoutingTable()
    routes = RoutesFile(str(path))
    routes.apply_initial(table)
    app = build_api(table, checks={"routesFile": routes.readiness})
    async with running_api(app) as running:
        async with running.http.get(running.url + "/readyz") as response:
            assert response.status == 200
        path.write_text("{broken")
        assert routes.reload(table) is False
        async with running.http.get(running.url + "/readyz") as response:
            assert response.status == 503
            detail = (await response.json())["checks"]["routesFile"]["detail"]
            assert "line 1, column 2" in detail["error"]


# -- saving through the real routes file (§7.5) ----------------------------------------------


async def test_api_changes_are_saved_to_the_routes_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = RoutingTable()
    table.create_mapping("cli.example", "cli:1", source="mapping")
    routes = RoutesFile(str(path))
    app = build_api(table, save=lambda: routes.save(table))
    async with running_api(app) as running:
        api = Api(running, table)
        await api.call("POST", "/routes", '{"serverAddress":"New.Example","backend":"n:2"}')
        assert path.read_bytes() == (
            b'{"default-server":"","mappings":{"cli.example":"cli:1","new.example":"n:2"}}'
        )
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o664 & ~_umask())
        await api.call("POST", "/defaultRoute", '{"backend":"d:3"}')
        await api.call("DELETE", "/routes/nothing-here")
        assert path.read_bytes() == (
            b'{"default-server":"d:3","mappings":{"cli.example":"cli:1","new.example":"n:2"}}'
        )


async def test_metrics_endpoints_accept_any_method() -> None:
    metrics = make_metrics("discard")
    async with running_api(build_api(RoutingTable(), metrics_routes=metrics.routes())) as running:
        for method in ("GET", "POST", "PUT"):
            async with running.http.request(method, running.url + "/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert b"process_" in await response.read()
        async with running.http.get(running.url + "/vars") as response:
            assert "cmdline" in await response.json()


def test_decode_fields_unit() -> None:
    assert decode_fields(b"null", ("backend",)) == {"backend": ""}
    assert decode_fields(b'{"backend":null}', ("backend",)) == {"backend": ""}
    assert decode_fields(b'{"backend":"\xff"}', ("backend",)) == {"backend": "\ufffd"}


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
