"""One client connection, from the first byte to the last (spec §4.4-§4.11, §5).

The hello phase (PROXY header, handshake, Login Start) runs in protocol callbacks, so a
silent or malformed client costs no task. Once the hello is complete, reading pauses and a
short session script runs as a task:

    look up the route -> wake if needed -> dial with a timeout -> replay every byte received
    -> link a Pipe and end the task (the relay itself needs no coroutine)

Status pings for asleep routes are answered here with a predefined status (spec §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mc_router.errors import ProtocolError, WakeError
from mc_router.events import (
    BackendConnected,
    BackendFailed,
    BackendMissing,
    Client,
    ConnectionClosed,
    PlayerInfo,
)
from mc_router.protocol import (
    NEED_DATA,
    PAUSED,
    Frame,
    FrameReader,
    Handshake,
    HandshakeReader,
    LegacyPing,
    LoginStart,
    NextState,
    ProxyHeader,
    UnexpectedPacket,
    build_proxy_v2,
    login_disconnect,
    parse_proxy_header,
    pong,
    status_response,
)
from mc_router.relay.clientfilter import contains, parse_ip
from mc_router.relay.pipe import Pipe, PipeEnd
from mc_router.routing import Route, parse_backend
from mc_router.scaling.probe import ProbeError, fetch_status
from mc_router.scaling.status_memory import StatusInfo, StatusMemory, StatusSniffer

if TYPE_CHECKING:
    from mc_router.relay.server import RelayServer

log = logging.getLogger(__name__)

# Spec §2.10: the handshake and the Login Start share one read deadline of 5 s (Q4 kept).
HANDSHAKE_TIMEOUT = 5.0
# Pre-1.6 legacy pings (`FE`, `FE 01`) never complete; upstream holds them the full 5 s (Q6).
# A real 1.6 client sends its whole ping at once, so one second is plenty to tell them apart.
LEGACY_FORM_TIMEOUT = 1.0
# Spec §5.3: predefined status: wait 3 s for the request, then 2 s for the ping.
STATUS_REQUEST_TIMEOUT = 3.0
STATUS_PING_TIMEOUT = 2.0
# A status exchange is two tiny frames; anything bigger is not a status client.
MAX_STATUS_FRAME = 1024
# A status answer with a 64x64 favicon is ~10-20 KiB; the vanilla cap on the JSON is 32 KiB
# characters. Beyond this we stop sniffing rather than buffer a huge frame.
MAX_SNIFFED_STATUS = 256 * 1024
# PROXY v1 is at most 107 bytes and v2 carries 16 + at most a few KiB of TLVs.
MAX_PROXY_BUFFER = 16 * 1024

_HELD, _HELLO, _ROUTING, _FRAMES, _RELAY, _CLOSED = range(6)


@dataclass(slots=True)
class Hello:
    """What the client said before routing: its addresses, handshake and player."""

    client: Client
    # The address the client connected to: filled from a trusted PROXY header, else looked up
    # only when a PROXY header is sent on (one getsockname() fewer per connection).
    local: Client | None
    server_address: str = ""
    protocol_version: int = 0
    next_state: int = 0
    legacy: bool = False
    player: PlayerInfo | None = None
    handshake_size: int = 0
    received: bytes = field(default=b"", repr=False)

    @property
    def is_status(self) -> bool:
        return self.next_state == NextState.STATUS

    @property
    def is_login(self) -> bool:
        return self.next_state > NextState.STATUS


def _address(client: Client) -> tuple[str, int]:
    return client.host, client.port


def _sockname(conn: PipeEnd) -> object:
    return conn.transport.get_extra_info("sockname") if conn.transport is not None else None


def _client(address: object) -> Client:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        # The kernel gives canonical dotted quads: only IPv6 text needs parsing/unmapping.
        if ":" in host:
            with contextlib.suppress(ValueError):
                host = str(parse_ip(host))
        return Client(host, int(address[1]))
    return Client(str(address), 0)


class BackendConnection(PipeEnd):
    """The router's connection to a backend; a plain pipe end."""

    __slots__ = ()


class _SniffingBackend(BackendConnection):
    """A backend end that also reads the status answer it relays into the status memory."""

    __slots__ = ("_key", "_memory", "_sniffer")

    def __init__(self, memory: StatusMemory, key: str) -> None:
        super().__init__()
        self._memory = memory
        self._key = key
        self._sniffer: StatusSniffer | None = StatusSniffer(MAX_SNIFFED_STATUS)

    def data_received(self, data: bytes) -> None:
        sniffer = self._sniffer
        if sniffer is not None:
            info = sniffer.feed(data)  # never raises: bad data just ends the sniffing
            if info is not None:
                self._memory.remember(self._key, info)
            if sniffer.done:
                self._sniffer = None
        super().data_received(data)


def _sniffing_backend(memory: StatusMemory, key: str) -> Callable[[], BackendConnection]:
    return lambda: _SniffingBackend(memory, key)


class ClientConnection(PipeEnd):
    """A client connection: parses the hello in callbacks, then becomes a pipe end."""

    __slots__ = (
        "_deadline",
        "_frame_waiter",
        "_frames",
        "_proxy_buffer",
        "_reader",
        "hello",
        "phase",
        "server",
    )

    def __init__(self, server: RelayServer) -> None:
        super().__init__()
        self.server = server
        self.phase = _HELLO
        self.hello: Hello | None = None
        self._reader: HandshakeReader | None = HandshakeReader()
        self._proxy_buffer: bytes | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._frames: FrameReader | None = None
        self._frame_waiter: asyncio.Future[None] | None = None

    # -- hello phase -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.hello = Hello(_client(transport.get_extra_info("peername")), None)
        self.server.greeting.add(self)
        wait = self.server.admit()
        if wait < 0:
            log.debug("Too many clients waiting for the rate limit; closing one")
            self.close(abort=True)
        elif wait > 0:
            # Held unread until its rate-limit token exists (spec §4.1).
            self.phase = _HELD
            self.transport.pause_reading()
            self._deadline = asyncio.get_running_loop().call_later(wait, self._admitted)
        else:
            self._start_hello()

    def _admitted(self) -> None:
        self._deadline = None
        self._release_hold()
        assert self.transport is not None
        self.transport.resume_reading()
        self._start_hello()
        if self.pending and self.phase == _HELLO:
            pending, self.pending = bytes(self.pending), None
            self._hello_data(pending)

    def _release_hold(self) -> None:
        if self.phase == _HELD:
            self.server.held -= 1
            self.phase = _HELLO

    def _start_hello(self) -> None:
        assert self.hello is not None
        if self.server.config.receive_proxy_protocol:
            self._proxy_buffer = b""
        elif not self.server.config.client_filter.allows(self.hello.client.host):
            self._blocked()
            return
        self._deadline = asyncio.get_running_loop().call_later(
            HANDSHAKE_TIMEOUT, self._hello_timeout
        )

    def data_received(self, data: bytes) -> None:
        if self.phase == _RELAY:
            PipeEnd.data_received(self, data)
        elif self.phase == _HELLO:
            self._hello_data(data)
        elif self.phase == _FRAMES:
            assert self._frames is not None
            self._frames.feed(data)
            self._wake_frame_waiter()
        elif self.phase == _HELD:
            # Reading is paused while held; keep anything that was already read.
            self.pending = bytearray(data) if self.pending is None else self.pending + data
        # _ROUTING: reading is paused; a stray chunk is impossible. _CLOSED: discard.

    def _hello_data(self, data: bytes) -> None:
        if self._proxy_buffer is not None:
            data = self._proxy(data)
            if not data:
                return
        try:
            reader = self._reader
            assert reader is not None
            reader.feed(data)
            while True:
                event = reader.next_event()
                if event is NEED_DATA:
                    if reader.awaiting_legacy:
                        self._reschedule_deadline(LEGACY_FORM_TIMEOUT)
                    return
                if event is PAUSED:
                    self._hello_complete()
                    return
                self._hello_event(event)
        except UnexpectedPacket as exc:
            self._reject("unexpected_content", exc)
        except ProtocolError as exc:
            self._reject("read", exc)

    def _hello_event(self, event: object) -> None:
        hello = self.hello
        assert hello is not None
        if isinstance(event, Handshake):
            hello.server_address = event.server_address
            hello.protocol_version = event.protocol_version
            hello.next_state = event.next_state
        elif isinstance(event, LegacyPing):
            hello.server_address = event.server_address
            hello.next_state = NextState.STATUS
            hello.legacy = True
        elif isinstance(event, LoginStart) and event.player is not None:
            hello.player = PlayerInfo(event.player.name, event.player.uuid)

    def _proxy(self, data: bytes) -> bytes:
        """Strip an optional PROXY header (spec §4.2); return the bytes after it."""
        assert self._proxy_buffer is not None and self.hello is not None
        buffer = self._proxy_buffer + data
        try:
            header = parse_proxy_header(buffer)
        except ProtocolError as exc:
            self._reject("read", exc)
            return b""
        if header is NEED_DATA:
            if len(buffer) > MAX_PROXY_BUFFER:
                self._reject("read", ProtocolError("PROXY header too long"))
                return b""
            self._proxy_buffer = buffer
            return b""
        self._proxy_buffer = None
        if isinstance(header, ProxyHeader):
            buffer = buffer[header.size :]
            if self._trusts_proxy() and header.source is not None:
                self.hello.client = _client(header.source)
                if header.destination is not None:
                    self.hello.local = _client(header.destination)
        if not self.server.config.client_filter.allows(self.hello.client.host):
            self._blocked()
            return b""
        return buffer

    def _trusts_proxy(self) -> bool:
        trusted = self.server.config.trusted_proxies
        if not trusted:
            return True
        assert self.transport is not None
        peer = _client(self.transport.get_extra_info("peername"))
        try:
            return contains(trusted, parse_ip(peer.host))
        except ValueError:
            return False

    def eof_received(self) -> bool | None:
        if self.phase == _RELAY:
            return super().eof_received()
        self.eof = True
        if self.phase == _HELLO:
            hello = self.hello
            # Spec §2.6: a clean EOF right after a login handshake continues with no player.
            if (
                hello is not None
                and hello.next_state == NextState.LOGIN
                and self._reader is not None
                and not self._reader.trailing_data
            ):
                self._hello_complete()
                return True
            self._reject("read", ProtocolError("client closed before the handshake completed"))
        elif self.phase == _FRAMES:
            self._wake_frame_waiter()
        return None

    def _hello_complete(self) -> None:
        assert self.transport is not None and self.hello is not None
        self._cancel_deadline()
        self.phase = _ROUTING
        if not self.eof:
            self.transport.pause_reading()
        hello = self.hello
        self.server.greeting.discard(self)
        reader, self._reader = self._reader, None  # done with it: keep idle relays small
        assert reader is not None
        hello.received = reader.received
        hello.handshake_size = reader.handshake_size
        self.server.start_session(self)

    def _hello_timeout(self) -> None:
        self._deadline = None
        self._reject("read", ProtocolError("timed out waiting for the handshake"))

    def _reschedule_deadline(self, seconds: float) -> None:
        self._cancel_deadline()
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._hello_timeout)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _blocked(self) -> None:
        assert self.hello is not None
        log.debug("Client is blocked", extra={"fields": {"client": str(self.hello.client)}})
        self.close(abort=True)

    def _reject(self, error_type: str, exc: Exception) -> None:
        """A client that broke the protocol: count it, log why, close without a word."""
        assert self.hello is not None
        self.server.error(error_type)
        log.debug(
            "Closing client: %s",
            exc,
            extra={"fields": {"client": str(self.hello.client), "error": error_type}},
        )
        self.close(abort=True)

    def close(self, *, abort: bool = False) -> None:
        self.server.greeting.discard(self)
        self._cancel_deadline()
        self._release_hold()
        self.phase = _CLOSED
        if self.transport is not None and not self.lost:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.greeting.discard(self)
        self._release_hold()
        self._cancel_deadline()
        if self.phase != _RELAY:
            self.phase = _CLOSED
        self._wake_frame_waiter()
        super().connection_lost(exc)

    # -- frames after the hello (predefined status) -----------------------------------------

    def start_frames(self, initial: bytes) -> None:
        assert self.transport is not None
        self.phase = _FRAMES
        self._frames = FrameReader(MAX_STATUS_FRAME)
        self._frames.feed(initial)
        if not self.eof and not self.lost:
            self.transport.resume_reading()

    async def read_frame(self, timeout: float) -> Frame | None:
        """The next frame, or None on EOF, timeout or a malformed frame."""
        assert self._frames is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._frames.next_event()
                    if isinstance(event, Frame):
                        return event
                    if self.eof or self.lost:
                        return None
                    self._frame_waiter = asyncio.get_running_loop().create_future()
                    await self._frame_waiter
        except (TimeoutError, ProtocolError):
            return None
        finally:
            self._frame_waiter = None

    def _wake_frame_waiter(self) -> None:
        waiter = self._frame_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)


class Session:
    """The routing script for one client whose hello is complete."""

    __slots__ = ("backend", "conn", "hello", "refused_wake", "route", "server")

    def __init__(self, server: RelayServer, conn: ClientConnection) -> None:
        assert conn.hello is not None
        self.server = server
        self.conn = conn
        self.hello = conn.hello
        self.backend = ""
        self.route: Route | None = None
        self.refused_wake = False

    def _fields(self, **extra: object) -> dict[str, object]:
        fields: dict[str, object] = {
            "client": str(self.hello.client),
            "serverAddress": self.hello.server_address,
        }
        if self.hello.player is not None:
            fields["player"] = self.hello.player.name
        if self.backend:
            fields["backend"] = self.backend
        fields.update(extra)
        return fields

    async def run(self) -> None:
        server, hello = self.server, self.hello
        lookup = server.table.lookup(hello.server_address)
        self.route = route = lookup.route
        self.backend = backend = lookup.backend
        handed_over = False
        try:
            if route is not None and route.waker is not None and hello.is_login:
                if server.allows_wake(hello.server_address, hello.player):
                    woken = await self._wake(route)
                    if woken is None:
                        return
                    self.backend = backend = woken
                else:
                    # Spec §6.6: a refused player skips the wake and is routed as is.
                    log.info("Player may not wake this server", extra={"fields": self._fields()})
                    self.refused_wake = True
            elif (
                route is not None
                and hello.is_status
                and not hello.legacy
                and server.cache is not None
                and backend
                and server.wakes.current(route) is None
                and await self._serve_cached_status(route, backend)
            ):
                return

            waking = server.wakes.current(route) is not None
            if not backend or (waking and hello.is_status):
                if route is None or route.waker is None:
                    log.warning(
                        "Unable to find registered backend", extra={"fields": self._fields()}
                    )
                    server.error("missing_backend")
                server.bus.publish(BackendMissing(hello.client, hello.server_address, hello.player))
                # Path A (spec §5.1): only for a mapping matching the lower-cased raw address.
                if hello.is_status and server.table.has_route(hello.server_address):
                    await self._serve_status(server.table.get(hello.server_address))
                return

            handed_over = await self._connect(lookup.server_address, backend)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The session boundary: one bad connection never stops the router.
            log.exception("Session failed", extra={"fields": self._fields()})
        finally:
            if not handed_over:
                self.conn.close()
                self._closed(connected=False)

    async def _wake(self, route: Route) -> str | None:
        """Wake the backend for a login (spec §4.5 step 3); None when the player was kicked.

        The login joins the route's wake in flight (or starts one) and waits at most the hold
        budget; then it is kicked with a message saying the server is starting, while the wake
        goes on so the player's next attempt connects at once (issue #3 §6).
        """
        assert route.waker is not None
        server = self.server
        name = route.display_name
        wake = server.wakes.begin(route, route.waker, name)
        log.info("Scaling up backend server", extra={"fields": self._fields()})
        try:
            async with asyncio.timeout(server.config.hold_budget):
                address = await asyncio.shield(wake.task)
        except TimeoutError:
            remaining = wake.remaining(server.wakes.now())
            log.info(
                "Backend still starting after the hold budget; asking the player to reconnect",
                extra={"fields": self._fields(eta=remaining)},
            )
            self.kick(starting_message(name, remaining))
            return None
        except WakeError as exc:
            log.warning("failed to wake up backend: %s", exc, extra={"fields": self._fields()})
            server.error("wakeup_failed")
            self.kick(f"{name} could not be started: {exc}")
            return None
        if not address:
            log.warning("Waker returned no address", extra={"fields": self._fields()})
            server.error("wakeup_no_address")
            self.kick(f"{name} could not be started: no address to connect to")
            return None
        log.info("Woke up backend server", extra={"fields": self._fields(backend=address)})
        return address

    async def _connect(self, normalized: str, backend: str) -> bool:
        """Dial, replay and hand the connection to a Pipe; True once the pipe owns it."""
        server, hello, conn = self.server, self.hello, self.conn
        # One info line per connection, at its end (with byte counts); this one is debug.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Connecting to backend", extra={"fields": self._fields()})
        try:
            target = parse_backend(backend)
            loop = asyncio.get_running_loop()
            factory: Callable[[], BackendConnection] = BackendConnection
            route = self.route
            if (
                hello.is_status
                and not hello.legacy
                and route is not None
                and server.should_sniff(route.server_address)
            ):
                factory = _sniffing_backend(server.memory, route.server_address)
            async with asyncio.timeout(server.config.dial_timeout):
                transport, backend_conn = await loop.create_connection(
                    factory, target.host, target.port
                )
        except (OSError, TimeoutError, ValueError) as exc:
            reason = _dial_error(backend, exc)
            log.warning(
                "Unable to connect to backend: %s", reason, extra={"fields": self._fields()}
            )
            server.error("backend_failed")
            server.bus.publish(
                BackendFailed(hello.client, hello.server_address, hello.player, backend, reason)
            )
            route = self.route
            if hello.is_status and route is not None and route.waker is not None:
                # Path B (spec §5.1): the route's waker says it can be woken: say it sleeps.
                await self._serve_status(route)
            elif self.refused_wake and route is not None:
                self.kick(f"{route.display_name} is asleep, and you may not wake it")
            return False

        if conn.lost:
            transport.close()
            return False
        scaling_key = self.route.scaling_key if self.route is not None else ""
        if server.bus.active:
            server.bus.publish(
                BackendConnected(
                    hello.client,
                    hello.server_address,
                    normalized,
                    hello.player,
                    backend,
                    hello.is_login,
                    scaling_key,
                )
            )
        pipe = Pipe(conn, backend_conn, self._pipe_closed)
        conn.phase = _RELAY
        server.add_pipe(pipe)
        if server.config.use_proxy_protocol:
            try:
                transport.write(
                    build_proxy_v2(
                        _address(hello.client),
                        _address(hello.local or _client(_sockname(conn))),
                    )
                )
            except ProtocolError as exc:
                log.warning(
                    "Failed to write PROXY header: %s", exc, extra={"fields": self._fields()}
                )
                server.error("proxy_write")
                pipe.close()
                return True
        # Spec §4.10: replay every byte the client sent, read-ahead included, unmodified.
        transport.write(hello.received)
        hello.received = b""  # replayed: no need to hold it for the connection's lifetime
        pipe.start()
        if conn.eof:
            # The client half-closed before routing finished (right after its handshake).
            pipe.half_closed(conn)
        return True

    def _pipe_closed(self, pipe: Pipe) -> None:
        self.server.remove_pipe(pipe)
        if pipe.error is not None and not isinstance(pipe.error, ConnectionResetError):
            log.debug(
                "Error observed on connection relay: %s",
                pipe.error,
                extra={"fields": self._fields()},
            )
            self.server.error("relay")
        self._closed(
            connected=True,
            to_backend=pipe.client.bytes_read,
            to_client=pipe.backend.bytes_read,
        )

    def _closed(self, *, connected: bool, to_backend: int = 0, to_client: int = 0) -> None:
        hello = self.hello
        if connected and log.isEnabledFor(logging.INFO):
            log.info(
                "Closed connection to backend",
                extra={"fields": self._fields(bytesToBackend=to_backend, bytesToClient=to_client)},
            )
        if not self.server.bus.active:
            return
        self.server.bus.publish(
            ConnectionClosed(
                hello.client,
                hello.server_address,
                hello.player,
                self.backend,
                connected,
                hello.is_login,
                self.route.scaling_key if self.route is not None else "",
                to_backend,
                to_client,
            )
        )

    async def _serve_status(self, route: Route | None) -> None:
        """Answer a status ping with the asleep/loading MOTD (spec §5), then close."""
        server, hello, conn = self.server, self.hello, self.conn
        motd = server.motd_for(route)
        if not motd:
            return
        key = route.server_address if route is not None else ""
        if hello.legacy:
            conn.send(server.memory.legacy_response(key, motd))
            return
        await self._answer_status(server.memory.status_json(key, motd, hello.protocol_version))

    async def _answer_status(self, json_text: str) -> None:
        """Spec §5.3: read the request (3 s), answer, then pong a ping (2 s) if one comes."""
        hello, conn = self.hello, self.conn
        # Q2 fixed: skip exactly the bytes the handshake frame took.
        conn.start_frames(hello.received[hello.handshake_size :])
        pending: bytes | None = None
        frame = await conn.read_frame(STATUS_REQUEST_TIMEOUT)
        if frame is not None and frame.packet_id == 0x01:
            pending = frame.payload[:8]
        conn.send(status_response(json_text))
        if pending is None:
            frame = await conn.read_frame(STATUS_PING_TIMEOUT)
            if frame is not None and frame.packet_id == 0x01:
                pending = frame.payload[:8]
        if pending is not None and len(pending) == 8:
            conn.send(pong(pending))

    async def _serve_cached_status(self, route: Route, backend: str) -> bool:
        """Answer a ping from the status cache (issue #5 §7); False to route it normally."""
        server, hello = self.server, self.hello
        assert server.cache is not None

        async def fetch() -> StatusInfo:
            info = await fetch_status(
                backend,
                server_address=hello.server_address,
                protocol_version=hello.protocol_version,
                timeout=server.config.dial_timeout + STATUS_REQUEST_TIMEOUT,
            )
            server.memory.remember(route.server_address, info)
            return info

        try:
            info = await server.cache.get(route.server_address, hello.protocol_version, fetch)
        except (ProbeError, OSError) as exc:
            log.debug("Status cache could not fetch: %s", exc, extra={"fields": self._fields()})
            return False
        await self._answer_status(info.text)
        return True

    def kick(self, reason: str) -> None:
        """Refuse a login with a Login Disconnect the player can read."""
        self.conn.send(login_disconnect(reason))


def starting_message(name: str, remaining: float | None) -> str:
    """The kick text for a login that outlived the hold budget."""
    if remaining is None:
        return f"{name} is starting \u2014 please reconnect in a moment"
    return f"{name} is starting \u2014 about {round(remaining)} s left, please reconnect"


def _dial_error(backend: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"dial tcp {backend}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"dial tcp {backend}: lookup failed: {exc.strerror}"
    if isinstance(exc, OSError):
        return f"dial tcp {backend}: {exc.strerror or exc}"
    return f"dial tcp {backend}: {exc}"
