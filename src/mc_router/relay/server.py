"""The relay server: listening sockets, the rate-limited accept loop, sessions and draining.

Owns every live connection: session tasks (routing in progress) and pipes (relaying). On
shutdown the listeners close first, then pipes drain for a bounded grace period, then
whatever is left is cut (spec §4.12 with Q11 fixed: SIGTERM behaves like SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

from mc_router.errors import WakeError
from mc_router.events import ErrorObserved, EventBus, FrontendAccepted, PlayerInfo
from mc_router.protocol import build_proxy_v2
from mc_router.relay.clientfilter import ClientFilter, IPNetwork
from mc_router.relay.pipe import Pipe
from mc_router.relay.ratelimit import TokenBucket
from mc_router.relay.session import ClientConnection, Session
from mc_router.routing import Route, RoutingTable
from mc_router.scaling import WakeCoordinator
from mc_router.scaling.allowdeny import AllowDeny, server_allows_player
from mc_router.scaling.motd import choose_motd
from mc_router.scaling.probe import ProbeError, wait_until_ready
from mc_router.scaling.status_memory import StatusCache, StatusMemory

log = logging.getLogger(__name__)

# A server's status (version, favicon, max players) changes rarely: remembering it from one
# relayed ping per route every 30 s is plenty, and spares parsing every answer's JSON.
SNIFF_INTERVAL = 30.0
# Bound on routes tracked for sniffing; handshake addresses come from clients.
MAX_SNIFFED_ROUTES = 4096
# Pending connections the kernel may queue while the rate limiter holds accepts back.
LISTEN_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the data plane needs from Settings, already parsed and validated."""

    dial_timeout: float = 2.0
    connection_rate_limit: int = 1
    asleep_motd: str = ""
    loading_motd: str = ""
    use_proxy_protocol: bool = False
    receive_proxy_protocol: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()
    client_filter: ClientFilter = field(default_factory=ClientFilter)
    # How long a login waits for a waking server before a friendly "reconnect" kick; the
    # vanilla client gives up on a silent login after about 30 s.
    hold_budget: float = 25.0
    # Readiness after a wake: status pings until the backend answers, for at most this long.
    wake_timeout: float = 60.0
    # Seconds a backend's status may answer pings for an awake route; 0 = off (upstream).
    status_cache_ttl: float = 0.0
    allow_deny: AllowDeny | None = None


class RelayServer:
    """Accepts clients and runs their sessions against a routing table."""

    def __init__(self, config: RelayConfig, table: RoutingTable, bus: EventBus) -> None:
        self.config = config
        self.table = table
        self.bus = bus
        self.bucket = TokenBucket(config.connection_rate_limit)
        self.sessions: set[asyncio.Task[None]] = set()
        self.pipes: set[Pipe] = set()
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self.held = 0  # accepted clients waiting for a rate-limit token
        # Clients not yet routed (held or in the hello): closed at once on shutdown, since
        # upstream does not wait for them either (spec §4.12).
        self.greeting: set[ClientConnection] = set()
        self.memory = StatusMemory()
        self._sniffed: dict[str, float] = {}
        self.cache = StatusCache(config.status_cache_ttl) if config.status_cache_ttl > 0 else None
        self.wakes = WakeCoordinator(ready=self._ready)
        self.wakes.on_start.append(self._wake_started)
        self._idle = asyncio.Event()
        self._idle.set()

    # -- listening -------------------------------------------------------------------------

    def bind(self, host: str, port: int) -> list[tuple[str, int]]:
        """Bind the listening socket(s); return the bound (host, port) pairs.

        `host == ""` means every interface, dual-stack where IPv6 exists (upstream `:port`).
        """
        if host in ("", "::", "[::]"):
            sock = _dual_stack_socket(port)
        else:
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
            sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if infos[0][0] == socket.AF_INET6:
                # `::ffff:127.0.0.1` binds a dual-stack socket that sees IPv4 clients as mapped.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(infos[0][4])
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._sockets.append(sock)
        return [sock.getsockname()[:2] for sock in self._sockets]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [sock.getsockname()[:2] for sock in self._sockets]

    async def start(self) -> None:
        """Serve every listening socket; the event loop accepts (uvloop does it in C)."""
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            self._servers.append(
                await loop.create_server(
                    lambda: ClientConnection(self), sock=sock, backlog=LISTEN_BACKLOG
                )
            )

    def admit(self) -> float:
        """Rate-limit one accepted client (spec §4.1): seconds it must wait before it is read.

        Upstream leaves excess clients in the kernel backlog; we accept them and hold them
        unread until their token exists, which a client cannot tell apart. The kernel backlog's
        bound stays: past `LISTEN_BACKLOG` held clients, a new one is closed at once.
        """
        if self.bus.active:
            self.bus.publish(FrontendAccepted())
        wait = self.bucket.take()
        if wait > 0:
            if self.held >= LISTEN_BACKLOG:
                self.bucket.give_back()
                return -1.0
            self.held += 1
        return wait

    # -- sessions --------------------------------------------------------------------------

    def start_session(self, conn: ClientConnection) -> None:
        task = asyncio.create_task(Session(self, conn).run())
        self.sessions.add(task)
        self._idle.clear()
        task.add_done_callback(self._session_done)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self.sessions.discard(task)
        self._check_idle()

    def add_pipe(self, pipe: Pipe) -> None:
        self.pipes.add(pipe)
        self._idle.clear()

    def remove_pipe(self, pipe: Pipe) -> None:
        self.pipes.discard(pipe)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.pipes and not self.sessions:
            self._idle.set()


    def error(self, error_type: str) -> None:
        self.bus.publish(ErrorObserved(error_type))

    def should_sniff(self, key: str) -> bool:
        """Whether to read this relayed status answer into the memory: at most once per
        SNIFF_INTERVAL per route, so a ping flood does not parse every answer's JSON."""
        now = time.monotonic()
        if now - self._sniffed.get(key, -SNIFF_INTERVAL) < SNIFF_INTERVAL:
            return False
        if len(self._sniffed) >= MAX_SNIFFED_ROUTES:
            self._sniffed.clear()
        self._sniffed[key] = now
        return True

    def allows_wake(self, server_address: str, player: PlayerInfo | None) -> bool:
        """Spec §6.6 (Q22 fixed: a login without player info matches no entry)."""
        return server_allows_player(self.config.allow_deny, server_address, player)

    def motd_for(self, route: Route | None) -> str:
        """The predefined-status MOTD for a route (spec §5.2): loading while it wakes."""
        wake = self.wakes.current(route)
        now = self.wakes.now()
        return choose_motd(
            route_asleep=route.asleep_motd if route is not None else "",
            route_loading=route.loading_motd if route is not None else "",
            global_asleep=self.config.asleep_motd,
            global_loading=self.config.loading_motd,
            waking=wake is not None,
            now=now,
            eta=wake.remaining(now) if wake is not None else None,
        )

    async def _ready(self, route: Route, address: str) -> None:
        """After a wake: ping until the backend really answers status (issue #5 §3)."""
        host = address.rpartition(":")[0].strip("[]")
        try:
            status = await wait_until_ready(
                address,
                server_address=route.server_address or host,
                deadline_seconds=self.config.wake_timeout,
                preamble=self.probe_preamble,
            )
        except ProbeError as exc:
            raise WakeError(f"the server did not answer at {address}: {exc}") from None
        self.memory.remember(route.server_address, status)

    @property
    def probe_preamble(self) -> bytes:
        """What a readiness probe sends first: a PROXY header when backends require one."""
        if self.config.use_proxy_protocol:
            return build_proxy_v2(("127.0.0.1", 0), ("127.0.0.1", 0))
        return b""

    def _wake_started(self, route: Route) -> None:
        if self.cache is not None:
            self.cache.invalidate(route.server_address)

    # -- shutdown --------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        for conn in list(self.greeting):
            conn.close(abort=True)
        for server in self._servers:
            server.close()
        self._servers.clear()
        self._sockets.clear()

    async def drain(self, timeout: float) -> None:
        """Wait for active connections to finish for up to `timeout`, then cut the rest."""
        self.stop_accepting()
        if self.pipes or self.sessions:
            log.info(
                "Router server stopping. Waiting for connections to complete...",
                extra={"fields": {"connections": len(self.pipes) + len(self.sessions)}},
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._idle.wait()
        for task in list(self.sessions):
            task.cancel()
        for pipe in list(self.pipes):
            pipe.abort()
        if self.sessions:
            await asyncio.gather(*self.sessions, return_exceptions=True)
        await self.wakes.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        # Let connection_lost callbacks of aborted transports run.
        await asyncio.sleep(0)
        log.info("Router server stopped")


def _dual_stack_socket(port: int) -> socket.socket:
    if socket.has_ipv6:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:
            pass
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
            return sock
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    return sock
