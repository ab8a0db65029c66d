"""THE wiring: build every part from Settings, run them, stop them in order.

Startup (spec §1.3): validate settings -> route table and its sources -> observers (metrics,
webhooks) -> relay listener. Shutdown: stop accepting, drain connections under a deadline,
then close services in reverse order. Only this module and `cli` know every concrete class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from mc_router import automc
from mc_router.api import ApiServer, ReadinessCheck, build_api, start_api
from mc_router.errors import ConfigError
from mc_router.events import EventBus
from mc_router.metrics import make_metrics
from mc_router.relay.clientfilter import ClientFilter, parse_networks
from mc_router.relay.server import RelayConfig, RelayServer
from mc_router.routing import Backend, Route, RoutingTable, Sleeper, Waker
from mc_router.scaling.allowdeny import load_allow_deny
from mc_router.scaling.idle import IdleTracker
from mc_router.scaling.webhook import WebhookScaler
from mc_router.settings import Settings
from mc_router.sources.routes_file import RoutesFile
from mc_router.webhooks import WebhookNotifier

log = logging.getLogger(__name__)

# Spec §1.2: a dial timeout <= 0 keeps the 2 s default.
DEFAULT_DIAL_TIMEOUT = 2.0


def unsupported(settings: Settings) -> list[str]:
    """Flags whose features this build does not provide: refuse them rather than ignore them."""
    problems = []
    checks: list[tuple[bool, str]] = [
        (
            settings.in_kube_cluster or bool(settings.kube_config),
            "-in-kube-cluster/-kube-config (Kubernetes discovery)",
        ),
        (settings.in_docker, "-in-docker (Docker discovery)"),
        (settings.in_docker_swarm, "-in-docker-swarm (Docker Swarm discovery)"),
        (bool(settings.ngrok_token), "-ngrok-token (ngrok tunnels)"),
    ]
    for bad, what in checks:
        if bad:
            problems.append(f"{what} is not supported yet")
    return problems


def relay_config(settings: Settings) -> RelayConfig:
    """Parse and validate what the data plane needs; ConfigError names the bad value."""
    trusted = (
        parse_networks(settings.trusted_proxies, "trusted proxy")
        if settings.receive_proxy_protocol
        else ()
    )
    for entry in settings.trusted_proxies if settings.receive_proxy_protocol else ():
        if "/" not in entry:
            raise ConfigError(f"could not parse trusted proxy CIDR block: {entry!r}")
    try:
        client_filter = ClientFilter.from_lists(settings.clients_to_allow, settings.clients_to_deny)
    except ConfigError as exc:
        raise ConfigError(f"could not create client filter: {exc}") from None
    return RelayConfig(
        dial_timeout=settings.backend_dial_timeout
        if settings.backend_dial_timeout > 0
        else DEFAULT_DIAL_TIMEOUT,
        connection_rate_limit=max(1, settings.connection_rate_limit),
        asleep_motd=settings.auto_scale_asleep_motd,
        loading_motd=settings.auto_scale_loading_motd,
        use_proxy_protocol=settings.use_proxy_protocol,
        receive_proxy_protocol=settings.receive_proxy_protocol,
        trusted_proxies=trusted,
        client_filter=client_filter,
        hold_budget=settings.auto_scale_hold_budget,
        wake_timeout=settings.auto_scale_webhook_wake_timeout,
        status_cache_ttl=settings.status_cache_ttl,
        allow_deny=(
            load_allow_deny(settings.auto_scale_allow_deny)
            if settings.auto_scale_allow_deny
            else None
        ),
    )


class RouteLog:
    """Logs every route change, with upstream's messages (spec §1.4)."""

    def route_added(self, route: Route) -> None:
        log.info(
            "Created route mapping",
            extra={
                "fields": {
                    "serverAddress": route.server_address,
                    "backend": route.backend,
                    "source": route.source,
                }
            },
        )

    def route_removed(self, route: Route) -> None:
        log.info("Deleting route", extra={"fields": {"serverAddress": route.server_address}})

    def default_route_set(self, route: Route) -> None:
        log.info("Using default route", extra={"fields": {"backend": route.backend}})

    def default_route_removed(self) -> None:
        log.info("Removed default route")


class Router:
    """A running router: `async with Router(settings) as router:` starts and stops it all."""

    def __init__(self, settings: Settings) -> None:
        problems = unsupported(settings)
        if problems:
            raise ConfigError("; ".join(problems))
        self.settings = settings
        self.table = RoutingTable(simplify_srv=settings.simplify_srv)
        self.bus = EventBus()
        self.table.subscribe(RouteLog())
        self.relay = RelayServer(relay_config(settings), self.table, self.bus)
        self._stack = contextlib.AsyncExitStack()
        # Upstream's webhook scaler for static routes (spec §6.5), and its idle down-scaler
        # (§6.4: it exists exactly when the scaler does, since discovery is not provided).
        self.scaler = (
            WebhookScaler(
                settings.auto_scale_webhook_url,
                headers=settings.auto_scale_webhook_headers,
                timeout=settings.auto_scale_webhook_timeout,
                wake_timeout=settings.auto_scale_webhook_wake_timeout,
                on_ready=self.relay.memory.remember,
                probe_preamble=self.relay.probe_preamble,
            )
            if settings.auto_scale_webhook_url
            else None
        )
        self.idle = (
            IdleTracker(settings.auto_scale_down_after, is_waking=self.relay.wakes.is_waking)
            if self.scaler is not None
            else None
        )
        if settings.auto_scale_up or settings.auto_scale_down:
            log.warning(
                "-auto-scale-up/-auto-scale-down act on Docker, Swarm and Kubernetes discovery, "
                "which this build does not provide; static routes scale with "
                "-auto-scale-webhook-url"
            )
        if settings.cpu_profile:
            log.warning("-cpu-profile is accepted for compatibility and ignored")
        # §1.3 step 3: the metrics backend (influxdb -> ConfigError; unknown -> discard + warning).
        self.metrics = make_metrics(
            settings.metrics_backend,
            record_logins=settings.record_logins,
            rate_limit_available=lambda: self.relay.bucket.available,
            rate_limit_period=settings.metrics_rate_limit_period,
        )
        # The discard backend only listens for -record-logins' log line.
        if self.metrics.backend != "discard" or settings.record_logins:
            self.bus.subscribe(self.metrics)
        if self.metrics.backend == "prometheus" and not settings.api_binding:
            log.warning(
                "-metrics-backend prometheus is served on /metrics of -api-binding, "
                "which is not set: nothing will expose the metrics"
            )
        self.routes_file = (
            RoutesFile(settings.routes_config, route_factory=self.route_factory("file"))
            if settings.routes_config
            else None
        )
        # §1.3 step 12, built here so a bad URL fails before anything starts.
        self.notifier = (
            WebhookNotifier(
                settings.webhook_url,
                settings.webhook_events,
                settings.webhook_require_user,
                settings.webhook_timeout,
            )
            if settings.webhook_url
            else None
        )
        # The automc extension: one call; a no-op without AUTOMC_DSN (issue #3).
        self.automc = automc.wire(settings, self.table)
        self.api: ApiServer | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.relay.addresses

    @property
    def port(self) -> int:
        return self.relay.addresses[0][1]

    def _register_static_routes(self) -> None:
        # Spec §3.6: routes file, then -mapping, then -default (later overwrites earlier).
        if self.routes_file is not None:
            self.routes_file.apply_initial(self.table)  # ConfigError names file and place
            if self.settings.routes_config_watch:
                self.routes_file.check_watchable()  # only a missing directory is fatal
        mapping_route = self.route_factory("mapping")
        for server_address, backend in self.settings.mapping.items():
            _warn_if_unusable(server_address, backend)
            self.table.put(mapping_route(server_address, backend))
        if self.settings.default:
            _warn_if_unusable("default", self.settings.default)
            route = self.route_factory("default")("", self.settings.default)
            self.table.put_default(route)

    def route_factory(self, source: str) -> Callable[[str, str], Route]:
        """Builds static routes of one source, with the webhook scaler's functions if any."""
        scaler, idle = self.scaler, self.idle

        def make(server_address: str, backend: str) -> Route:
            waker: Waker | None = None
            sleeper: Sleeper | None = None
            key = ""
            if scaler is not None:
                # `server_address` as written: upstream's webhook body carries it (§6.5).
                waker, sleeper, key = scaler.route_functions(server_address, backend)
                if waker is not None and idle is not None:
                    waker = idle.guarded(key, waker)
            return Route(server_address.lower(), backend, source, waker, sleeper, key)

        return make

    async def __aenter__(self) -> Router:
        try:
            await self._start_services()
            try:
                self.relay.bind(self.settings.listen_host, self.settings.port)
            except OSError as exc:
                raise ConfigError(f"could not listen on port {self.settings.port}: {exc}") from None
        except BaseException:
            # `async with` never calls __aexit__ when __aenter__ fails: stop what started.
            await self._stack.aclose()
            raise
        await self.relay.start()
        log.info(
            "Listening for Minecraft client connections",
            extra={"fields": {"listenAddress": _listen_text(self.relay.addresses)}},
        )
        return self

    async def _start_services(self) -> None:
        """Spec §1.3 order; the exit stack closes them in reverse (API first, metrics last)."""
        if self.scaler is not None:
            self._stack.push_async_callback(self.scaler.aclose)
            log.info("Using webhook autoscaler for static routes")
        if self.idle is not None:
            idle = self.idle
            self._stack.push_async_callback(idle.aclose)
            self.bus.subscribe(idle)
            self._stack.callback(self.table.subscribe(idle))
            self.relay.wakes.on_start.append(lambda route: idle.wake_started(route.scaling_key))
            self.relay.wakes.on_finish.append(lambda route: idle.wake_finished(route.scaling_key))
        self._register_static_routes()
        await self.metrics.start()
        self._stack.push_async_callback(self.metrics.aclose)
        if self.notifier is not None:
            await self.notifier.start()
            self._stack.push_async_callback(self.notifier.aclose)
            self.bus.subscribe(self.notifier)
            # Replays route-added for every mapping and a non-empty default (§1.3 step 12).
            self._stack.callback(self.table.subscribe(self.notifier))
        await self._stack.enter_async_context(self.automc)
        if self.routes_file is not None and self.settings.routes_config_watch:
            watch = asyncio.create_task(self.routes_file.watch(self.table), name="routes-watch")
            self._stack.push_async_callback(_cancel, watch)
        if self.settings.api_binding:
            routes_file = self.routes_file
            app = build_api(
                self.table,
                route_factory=self.route_factory("api"),
                token=self.settings.api_token,
                save=(lambda: routes_file.save(self.table)) if routes_file is not None else None,
                checks=self._readiness_checks(),
                metrics_routes=self.metrics.routes(),
            )
            self.api = await start_api(app, self.settings.api_binding)  # ConfigError if busy
            self._stack.push_async_callback(self.api.aclose)

    def _readiness_checks(self) -> dict[str, ReadinessCheck]:
        def listener() -> tuple[bool, object]:
            addresses = self.relay.addresses
            return bool(addresses), {"addresses": _listen_text(addresses)}

        checks: dict[str, ReadinessCheck] = {"listener": listener}
        if self.routes_file is not None:
            checks["routesFile"] = self.routes_file.readiness
        if self.automc.enabled:
            checks["automc"] = lambda: (
                self.automc.in_sync,
                {"inSync": self.automc.in_sync, "connected": self.automc.connected},
            )
        return checks

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self, drain_timeout: float | None = None) -> None:
        timeout = self.settings.drain_timeout if drain_timeout is None else drain_timeout
        await self.relay.drain(timeout)
        await self._stack.aclose()

    def reload(self) -> None:
        """SIGHUP: reload the routes file (Q10 fixed: without one, log instead of crashing)."""
        if self.routes_file is None:
            log.info("Received SIGHUP, but no routes config file is configured; nothing to reload")
            return
        self.routes_file.reload(self.table)  # logs and keeps the routes on any error


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("Background task failed", extra={"fields": {"task": task.get_name()}})


def _warn_if_unusable(server_address: str, backend: str) -> None:
    try:
        Backend.parse(backend)
    except ValueError as exc:
        log.warning(
            "Route has an unusable backend; connections to it will fail: %s",
            exc,
            extra={"fields": {"serverAddress": server_address}},
        )


def _listen_text(addresses: list[tuple[str, int]]) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in addresses)


async def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    router = Router(settings)
    # Handlers go in before the listener opens, so no signal can find the default action.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, router.reload)
    try:
        async with router:
            await stop.wait()
            log.info("Stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, measured in bench/
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(settings: Settings) -> int:
    """Entry point used by the CLI: run the router on the best available event loop."""
    if sys.platform == "win32":  # pragma: no cover
        raise ConfigError("mc-router runs on POSIX systems")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(settings))
