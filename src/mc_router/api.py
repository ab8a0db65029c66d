"""The REST API (spec §8): list, add and delete routes, set the default, plus probes and metrics.

`build_api(table, ...)` returns the aiohttp application; `start_api(app, binding)` serves it and
returns an `ApiServer` whose `addresses` are the bound ones (`127.0.0.1:0` works).

Upstream's shapes and status codes are kept exactly: `404 page not found\\n` for unknown paths,
405 with an empty body for a wrong method (HEAD is not GET), compact sorted JSON with
`Content-Type: application/json` for `GET /routes` (rebuilt through lookup, Q44 kept), 201/200
with empty bodies, and Go's lenient decoding of request bodies (case-insensitive member names,
first JSON value only, `null` means empty). Every mutation is followed by `save` (§7.5),
DELETE even when it answered 404 (Q14 kept).

Additions, on purpose:
* An optional token (`-api-token` / `API_TOKEN`) sent as `Authorization: Bearer <token>` or
  `X-API-Key: <token>`, compared in constant time. It guards every endpoint except `/healthz`,
  `/metrics` and `/vars` included (a Prometheus scrape config can send a bearer token).
  Without a token, an API bound beyond loopback logs a loud warning at startup.
* A `backend` that is not `host:port` is refused with 400 and `{"error": "..."}` instead of
  stored (Q15 changed; an empty backend stays allowed for `POST /defaultRoute`, where it means
  "no default backend", as upstream).
* `GET /healthz` (the process is alive) and `GET /readyz` (every readiness check passes).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from mc_router.errors import ConfigError
from mc_router.protocol.gojson import go_json_bytes as go_json
from mc_router.routing import Backend, Route, RoutingTable

log = logging.getLogger(__name__)

#: `source` tag of routes created through the API.
SOURCE: Final = "api"
#: Go's net/http NotFound body and type.
NOT_FOUND_BODY: Final = b"404 page not found\n"
TEXT_PLAIN: Final = "text/plain; charset=utf-8"
#: Request bodies larger than this are refused (aiohttp answers 413); routes are tiny.
MAX_BODY_SIZE: Final = 64 * 1024
#: How long shutdown waits for in-flight requests.
SHUTDOWN_TIMEOUT: Final = 2.0

#: Called after every mutation (upstream's SaveRoutes). Must not raise.
SaveRoutes = Callable[[], Awaitable[object]]
#: A readiness check: (ok, detail). `detail` must be JSON-serialisable.
ReadinessCheck = Callable[[], tuple[bool, object]]
#: Builds the route for (server_address, backend); "" is the default route.
RouteFactory = Callable[[str, str], Route]

TABLE: Final = web.AppKey("table", RoutingTable)
TOKEN: Final = web.AppKey("token", str)


def api_route(server_address: str, backend: str) -> Route:
    """The default RouteFactory: a plain route tagged `source="api"`."""
    return Route(server_address.lower(), backend, SOURCE)


class RequestError(ValueError):
    """A request body Go's decoder would refuse."""


def decode_fields(body: bytes, names: Sequence[str]) -> dict[str, str]:
    """Decode a JSON object into string fields as Go's json.Decoder into a struct does.

    Only the first JSON value counts (trailing data is ignored); member names match
    case-insensitively and the last matching member wins; unknown members are ignored;
    `null` (the body or a member) leaves a field empty. Anything else raises RequestError.
    """
    fields = dict.fromkeys(names, "")
    folded = {name.casefold(): name for name in names}
    text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
    if not text:
        raise RequestError("empty body")
    decoder = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    try:
        value, _ = decoder.raw_decode(text)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if value is None:
        return fields
    if not isinstance(value, _Pairs):
        raise RequestError("the body is not a JSON object")
    for key, member in value:
        name = folded.get(key.casefold())
        if name is None or member is None:
            continue
        if not isinstance(member, str):
            raise RequestError(f"{name} must be a string")
        fields[name] = member
    return fields


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its ordered members."""


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid JSON literal {name}")


def _json(status: int, document: object) -> web.Response:
    return web.Response(
        status=status, body=go_json(document), headers={"Content-Type": "application/json"}
    )


def _not_found() -> web.Response:
    return web.Response(status=404, body=NOT_FOUND_BODY, headers={"Content-Type": TEXT_PLAIN})


@web.middleware
async def _upstream_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Go's mux answers: its 404 text, and 405 with an empty body."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _not_found()
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405)


def _token_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode("utf-8")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/healthz" or _authorized(request, expected):
            return await handler(request)
        response = _json(401, {"error": "missing or invalid API token"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="mc-router"'
        return response

    return require_token


def _authorized(request: web.Request, expected: bytes) -> bool:
    offered: list[str] = []
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    api_key = request.headers.get("X-API-Key")
    if api_key is not None:
        offered.append(api_key.strip())
    # compare_digest on every candidate: no early exit that would time the comparison.
    results = [hmac.compare_digest(c.encode("utf-8"), expected) for c in offered]
    return any(results)


class _Handlers:
    def __init__(
        self,
        table: RoutingTable,
        save: SaveRoutes | None,
        checks: Mapping[str, ReadinessCheck],
        route_factory: RouteFactory,
    ) -> None:
        self.table = table
        self.save_routes = save
        self.checks = checks
        self.route_factory = route_factory

    async def _save(self) -> None:
        if self.save_routes is None:
            return
        try:
            await self.save_routes()
        except Exception:
            # Upstream logs and carries on; the API change itself stands.
            log.exception("Could not save the routes config file")

    async def list_routes(self, request: web.Request) -> web.Response:
        """§8.1: every mapping, re-resolved through lookup (Q44 kept)."""
        routes: dict[str, dict[str, str]] = {}
        for key in self.table.mappings():
            found = self.table.lookup(key)
            routes[found.server_address] = {
                "backend": found.backend,
                "scalingTarget": found.route.scaling_key if found.route is not None else "",
            }
        return web.Response(
            body=go_json(routes, sort_keys=True), headers={"Content-Type": "application/json"}
        )

    async def create_route(self, request: web.Request) -> web.Response:
        """§8.2: 201 on success, 400 with an empty body when the JSON is unusable."""
        try:
            fields = decode_fields(await request.read(), ("serverAddress", "backend"))
        except RequestError as exc:
            log.warning("Unable to get request body: %s", exc)
            return web.Response(status=400)
        server_address, backend = fields["serverAddress"], fields["backend"]
        try:
            Backend.parse(backend)
        except ValueError as exc:
            return _json(400, {"error": f"invalid backend: {exc}"})
        # The table's listeners log "Created route mapping" and send webhooks.
        self.table.put(self.route_factory(server_address, backend))
        await self._save()
        return web.Response(status=201)

    async def set_default_route(self, request: web.Request) -> web.Response:
        """§8.3: 200 on success; an empty backend is allowed (no default backend)."""
        try:
            fields = decode_fields(await request.read(), ("backend",))
        except RequestError as exc:
            log.warning("Unable to parse request: %s", exc)
            return web.Response(status=400)
        backend = fields["backend"]
        if backend:
            try:
                Backend.parse(backend)
            except ValueError as exc:
                return _json(400, {"error": f"invalid backend: {exc}"})
        route = self.route_factory("", backend)
        self.table.put_default(route)
        await self._save()
        return web.Response(status=200)

    async def delete_route(self, request: web.Request) -> web.Response:
        """§8.4: 200 if it existed, else 404 (empty bodies); saved in both cases (Q14)."""
        server_address = request.match_info["serverAddress"]
        if "/" in server_address:
            # Go routes on the decoded path, so `a%2Fb` is two segments: no such endpoint.
            return _not_found()
        removed = self.table.remove_mapping(server_address)
        await self._save()
        return web.Response(status=200 if removed else 404)

    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        results: dict[str, dict[str, object]] = {}
        ready = True
        for name, check in self.checks.items():
            try:
                ok, detail = check()
            except Exception as exc:
                ok, detail = False, f"check failed: {exc}"
            results[name] = {"ok": ok, "detail": detail}
            ready = ready and ok
        status = "ready" if ready else "not ready"
        return _json(200 if ready else 503, {"status": status, "checks": results})


def build_api(
    table: RoutingTable,
    *,
    token: str = "",
    save: SaveRoutes | None = None,
    checks: Mapping[str, ReadinessCheck] | None = None,
    metrics_routes: Sequence[web.RouteDef] = (),
    route_factory: RouteFactory = api_route,
) -> web.Application:
    """The API application. `save` runs after every mutation; `metrics_routes` adds
    `/metrics` and `/vars` (see `Metrics.routes()`)."""
    middlewares: list[Any] = [_upstream_errors]
    if token:
        middlewares.append(_token_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_SIZE)
    app[TABLE] = table
    app[TOKEN] = token
    handlers = _Handlers(table, save, dict(checks or {}), route_factory)
    app.add_routes(
        [
            web.get("/routes", handlers.list_routes, allow_head=False),
            web.post("/routes", handlers.create_route),
            web.post("/defaultRoute", handlers.set_default_route),
            web.delete("/routes/{serverAddress}", handlers.delete_route),
            web.get("/healthz", handlers.healthz, allow_head=False),
            web.get("/readyz", handlers.readyz, allow_head=False),
            *metrics_routes,
        ]
    )
    return app


@dataclass
class ApiServer:
    """A started API: `addresses` are the bound (host, port) pairs; `aclose()` stops it."""

    runner: web.AppRunner
    binding: str

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(address[0]), int(address[1])) for address in self.runner.addresses]

    @property
    def url(self) -> str:
        host, port = self.addresses[0]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def aclose(self) -> None:
        await self.runner.cleanup()


def parse_binding(binding: str) -> tuple[str | None, int]:
    """`host:port`, `[v6]:port` or `:port` (every interface) -> (host or None, port)."""
    host, sep, port_text = binding.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"invalid -api-binding {binding!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port_text)


async def start_api(app: web.Application, binding: str) -> ApiServer:
    """Serve `app` on `binding`; ConfigError if it cannot listen (upstream: fatal)."""
    host, port = parse_binding(binding)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"could not start the API server on {binding}: {exc}") from None
    server = ApiServer(runner, binding)
    token_set = bool(app.get(TOKEN, ""))
    exposed = [address for address in server.addresses if not _is_loopback(address[0])]
    if exposed and not token_set:
        log.warning(
            "THE REST API IS REACHABLE BEYOND LOOPBACK WITHOUT A TOKEN: anyone who can reach "
            "it can change every route. Set -api-token (API_TOKEN) or bind to 127.0.0.1.",
            extra={"fields": {"apiBinding": binding}},
        )
    log.info(
        "Serving the REST API",
        extra={
            "fields": {
                "apiBinding": binding,
                "addresses": server.addresses,
                "auth": "token" if token_set else "none",
            }
        },
    )
    return server


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"
