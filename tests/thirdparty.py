"""Real third-party Minecraft implementations for tests.

Two independent implementations talk to the code under test here, so that "passes our own
tests" also means "works with what players and status sites actually run":

* the npm package ``minecraft-protocol`` (node), in ``tests/js``: a real server
  (:func:`mc_server`), a real client that logs in (:func:`mc_login`) and its status ping
  (:func:`mc_ping_node`);
* the PyPI package ``mcstatus``: status pings (:func:`mcstatus_ping`,
  :func:`mcstatus_legacy_ping`) and its MOTD parser (:func:`mcstatus_motd_text`).

Every helper binds or connects to the addresses it is given (tests use 127.0.0.1 only),
reports what the third-party code reported, and never leaves a process behind: the node
server is stopped when its ``async with`` block ends, the client and ping scripts exit on
their own deadline and are killed if they outlive it.

The node packages must be installed first: ``npm ci --prefix tests/js``. Missing node or
missing packages raise :class:`HarnessError`; nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from mcstatus.motd import Motd
from mcstatus.responses import JavaStatusResponse, LegacyStatusResponse

__all__ = [
    "DEFAULT_MC_VERSION",
    "DEFAULT_PROTOCOL",
    "JS_DIR",
    "HarnessError",
    "MCServer",
    "mc_login",
    "mc_ping_node",
    "mc_server",
    "mcstatus_legacy_ping",
    "mcstatus_motd_text",
    "mcstatus_ping",
    "node_available",
    "require_node",
    "status_summary",
]

JS_DIR = Path(__file__).parent / "js"
"""The node harness: package.json, package-lock.json and the scripts."""

_VERSIONS: dict[str, Any] = json.loads((JS_DIR / "versions.json").read_text(encoding="utf-8"))
DEFAULT_MC_VERSION: str = _VERSIONS["default"]
"""Minecraft version the node server and client speak unless told otherwise."""
DEFAULT_PROTOCOL: int = int(_VERSIONS["protocol"])
"""Protocol number of :data:`DEFAULT_MC_VERSION` (what a client of that version sends)."""

_NPM_HINT = "run `npm ci --prefix tests/js` (node and npm are needed for the third-party tests)"
_STDERR_KEEP = 16_000  # characters of a script's stderr kept for error messages
_LINE_LIMIT = 1 << 22  # a status event may carry a favicon data URL


class HarnessError(RuntimeError):
    """The harness itself could not do its job (node missing, script crashed, no answer)."""


# --------------------------------------------------------------------------- node / npm


def node_available() -> bool:
    """True when ``node`` is on PATH and ``tests/js/node_modules`` holds minecraft-protocol."""
    return (
        shutil.which("node") is not None
        and (JS_DIR / "node_modules" / "minecraft-protocol" / "package.json").is_file()
    )


def require_node() -> str:
    """Return the path of ``node``, or raise :class:`HarnessError` saying how to get it ready."""
    node = shutil.which("node")
    if node is None:
        raise HarnessError(f"`node` is not on PATH: install Node.js, then {_NPM_HINT}")
    if not (JS_DIR / "node_modules" / "minecraft-protocol" / "package.json").is_file():
        raise HarnessError(f"{JS_DIR / 'node_modules'} is missing or incomplete: {_NPM_HINT}")
    return node


async def _spawn(
    script: str, config: Mapping[str, Any], *, stdin: int
) -> asyncio.subprocess.Process:
    node = require_node()
    return await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / script),
        json.dumps(dict(config)),
        cwd=str(JS_DIR),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=_LINE_LIMIT,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )


async def _reap(proc: asyncio.subprocess.Process, *, grace: float = 3.0) -> None:
    """Make sure ``proc`` is gone: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    events: list[dict[str, Any]] = []
    noise: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            noise.append(line)
            continue
        if isinstance(obj, dict):
            events.append(obj)
        else:
            noise.append(line)
    return events, noise


async def _run_once(script: str, config: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run a one-shot script (client.js / ping.js) and return its single outcome line.

    The script enforces ``config["timeoutMs"]`` itself; ``timeout`` is the outer bound after
    which the process is killed and :class:`HarnessError` raised.
    """
    proc = await _spawn(script, config, stdin=asyncio.subprocess.DEVNULL)
    try:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            raise HarnessError(
                f"{script} did not finish within {timeout:.1f}s (config {dict(config)!r})"
            ) from None
    finally:
        await _reap(proc)
    events, noise = _parse_lines(out)
    if not events:
        raise HarnessError(
            f"{script} exited {proc.returncode} without an outcome line; "
            f"stdout={noise!r} stderr={err.decode('utf-8', 'replace')[-_STDERR_KEEP:]!r}"
        )
    return events[0]


# --------------------------------------------------------------------------- node server


@dataclass
class MCServer:
    """A running minecraft-protocol server (see ``tests/js/server.js`` for its events).

    ``events`` holds every JSON event the server printed, in order, the ``listening`` one
    first. Wait for events with :meth:`wait_for` (searches the whole history, so it cannot
    miss an event that came early) or :meth:`next_event` (a cursor: each event once).
    """

    host: str
    port: int
    version: str
    protocol: int
    process: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    stderr: str = ""
    _cursor: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _eof: bool = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every event so far whose ``event`` is ``kind``."""
        return [e for e in self.events if e.get("event") == kind]

    async def wait_for(self, kind: str, *, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first event (from the start) of ``kind`` whose fields equal ``fields``.

        Waits up to ``timeout`` seconds for it; raises :class:`HarnessError` on timeout or if
        the server exits first.
        """

        def match(e: dict[str, Any]) -> bool:
            return e.get("event") == kind and all(e.get(k) == v for k, v in fields.items())

        return await self._wait(
            lambda: next((e for e in self.events if match(e)), None),
            timeout,
            f"event {kind!r} {fields or ''}",
        )

    async def next_event(self, kind: str | None = None, *, timeout: float = 10.0) -> dict[str, Any]:
        """The next event not yet returned by ``next_event``; with ``kind``, skip to one of it.

        Skipped events stay in :attr:`events`.
        """

        def take() -> dict[str, Any] | None:
            while self._cursor < len(self.events):
                e = self.events[self._cursor]
                self._cursor += 1
                if kind is None or e.get("event") == kind:
                    return e
            return None

        return await self._wait(take, timeout, f"next event {kind or ''}")

    async def _wait(
        self, probe: Callable[[], dict[str, Any] | None], timeout: float, what: str
    ) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            async with self._changed:
                while True:
                    found = probe()
                    if found is not None:
                        return found
                    if self._eof:
                        raise HarnessError(
                            f"node server exited ({self.process.returncode}) before {what}; "
                            f"events={self.events!r} stderr={self.stderr[-_STDERR_KEEP:]!r}"
                        )
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise HarnessError(
                f"no {what} from the node server within {timeout:.1f}s; events={self.events!r}"
            ) from None

    async def _add(self, event: dict[str, Any] | None, *, eof: bool = False) -> None:
        async with self._changed:
            if event is not None:
                self.events.append(event)
            if eof:
                self._eof = True
            self._changed.notify_all()


async def _pump_stdout(srv: MCServer, stream: asyncio.StreamReader) -> None:
    try:
        while line := await stream.readline():
            events, noise = _parse_lines(line)
            srv.noise.extend(noise)
            for e in events:
                await srv._add(e)
    finally:
        await srv._add(None, eof=True)


async def _pump_stderr(srv: MCServer, stream: asyncio.StreamReader) -> None:
    while chunk := await stream.read(65536):
        srv.stderr = (srv.stderr + chunk.decode("utf-8", "replace"))[-_STDERR_KEEP:]


@contextlib.asynccontextmanager
async def mc_server(
    *,
    version: str = DEFAULT_MC_VERSION,
    motd: str = "A Minecraft Server",
    description: Any = None,
    max_players: int = 20,
    favicon: str | None = None,
    kick_on_login: str | Mapping[str, Any] | None = None,
    kick_on_login_raw: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
) -> AsyncIterator[MCServer]:
    """Run a real minecraft-protocol server (offline mode) for the ``async with`` block.

    * ``motd``: plain text; the status ``description`` is ``{"text": motd}``.
    * ``description``: a full chat component (dict/list/str) for the status description,
      overriding ``motd`` there.
    * ``favicon``: a ``data:image/png;base64,...`` string, sent verbatim in the status.
    * ``kick_on_login``: text or chat component; every login is then refused in the LOGIN
      state (a login ``disconnect`` packet right after Login Start), and the server reports
      a ``kick`` event instead of ``login``.
    * ``kick_on_login_raw``: send the ``kick_on_login`` string verbatim as the reason
      instead of ``{"text": ...}`` JSON (a malformed reason, as a buggy router might send).

    The server is listening when the block starts (``srv.port``); it is stopped (stdin
    closed, SIGTERM, SIGKILL after 3 s) when the block ends, whatever happened.
    """
    config: dict[str, Any] = {
        "version": version,
        "host": host,
        "port": port,
        "motd": motd,
        "maxPlayers": max_players,
    }
    if description is not None:
        config["description"] = description
    if favicon is not None:
        config["favicon"] = favicon
    if kick_on_login is not None:
        config["kickOnLogin"] = (
            kick_on_login if isinstance(kick_on_login, str) else dict(kick_on_login)
        )
        config["kickOnLoginRaw"] = kick_on_login_raw

    proc = await _spawn("server.js", config, stdin=asyncio.subprocess.PIPE)
    srv = MCServer(host=host, port=0, version=version, protocol=0, process=proc)
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        asyncio.create_task(_pump_stdout(srv, proc.stdout)),
        asyncio.create_task(_pump_stderr(srv, proc.stderr)),
    ]
    try:
        first = await srv.next_event(timeout=startup_timeout)
        if first.get("event") != "listening":
            raise HarnessError(f"node server did not start: {first!r}; stderr={srv.stderr!r}")
        srv.port = int(first["port"])
        srv.version = str(first.get("version", version))
        srv.protocol = int(first.get("protocol", 0))
        yield srv
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        await _reap(proc)
        # The pipes reach EOF once the process is gone; let the pumps finish on their own.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pumps, return_exceptions=True), 5.0)
        for task in pumps:
            task.cancel()


# --------------------------------------------------------------------------- node client


async def mc_login(
    host: str,
    port: int,
    *,
    handshake_host: str | None = None,
    handshake_port: int | None = None,
    username: str = "HarnessPlayer",
    version: str = DEFAULT_MC_VERSION,
    timeout: float = 10.0,
    stay: float = 0.0,
) -> dict[str, Any]:
    """Log in with the real minecraft-protocol client (offline mode); return its outcome.

    The TCP connection goes to ``host:port``; the handshake carries ``handshake_host`` /
    ``handshake_port`` (default: ``host`` / ``port``). The outcome is one of::

        {"event": "login", "username", "uuid", "state": "play"}  # Join Game received
        {"event": "kicked", "state": "login"|"configuration"|"play",
         "reason": <raw, as minecraft-protocol reports it>,
         "reasonJson": <parsed chat component>, "reasonIsJson": <False if the reason
         string was not JSON>, "text": <plain text, via prismarine-chat>}
        {"event": "end", "reason", "state"}      # closed with no disconnect packet
        {"event": "error", "message", "code", "state"}  # e.g. ECONNREFUSED, bad packet
        {"event": "timeout", "state", "timeoutMs"}

    ``stay``: seconds to stay in the play state before leaving (default: leave at once).
    """
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "handshakeHost": handshake_host if handshake_host is not None else host,
        "username": username,
        "version": version,
        "timeoutMs": int(timeout * 1000),
        "stayMs": int(stay * 1000),
    }
    if handshake_port is not None:
        config["handshakePort"] = handshake_port
    return await _run_once("client.js", config, timeout=timeout + stay + 10.0)


async def mc_ping_node(
    host: str,
    port: int,
    *,
    handshake_host: str | None = None,
    handshake_port: int | None = None,
    version: str = DEFAULT_MC_VERSION,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Status ping with minecraft-protocol's ``ping()``; return its outcome.

    ``{"event": "status", "response": <the server's status JSON>, "latency": ms}``, or
    ``{"event": "error", "message", "code"}``, or ``{"event": "timeout"}``.
    """
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "handshakeHost": handshake_host if handshake_host is not None else host,
        "version": version,
        "timeoutMs": int(timeout * 1000),
    }
    if handshake_port is not None:
        config["handshakePort"] = handshake_port
    return await _run_once("ping.js", config, timeout=timeout + 10.0)


# --------------------------------------------------------------------------- mcstatus


def _mcstatus_parts() -> tuple[Any, Any, Any, Any]:
    """(Address, TCPAsyncSocketConnection, AsyncJavaClient, AsyncLegacyClient) from mcstatus.

    These are mcstatus's own low-level pieces (not public API): ``JavaServer`` always puts
    the address it connects to in the handshake, and we need the two to differ, as they do
    behind a router. Their modules moved between releases; 13.x and 14.x are known here.
    """
    import importlib  # noqa: PLC0415

    def first(cands: tuple[str, ...], name: str) -> Any:
        for mod in cands:
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise HarnessError(
            f"mcstatus {dist_version('mcstatus')} has no {name} in {cands}: "
            "tests/thirdparty.py knows mcstatus 13.x and 14.x"
        )

    return (
        first(("mcstatus._net.address",), "Address"),
        first(
            ("mcstatus._protocol.io.connection", "mcstatus._protocol.connection"),
            "TCPAsyncSocketConnection",
        ),
        first(("mcstatus._protocol.java_client",), "AsyncJavaClient"),
        first(("mcstatus._protocol.legacy_client",), "AsyncLegacyClient"),
    )


async def _maybe_await(value: Any) -> Any:
    # mcstatus 13's handshake() is sync (buffered write), 14's is a coroutine.
    return (await value) if inspect.isawaitable(value) else value


async def mcstatus_ping(
    host: str,
    port: int,
    handshake_host: str | None = None,
    *,
    handshake_port: int | None = None,
    protocol: int = DEFAULT_PROTOCOL,
    timeout: float = 3.0,
) -> JavaStatusResponse:
    """Status request with mcstatus's own Java client, exactly one try (no retries).

    The TCP connection goes to ``host:port`` while the handshake carries ``handshake_host``
    and ``handshake_port`` (default ``host`` / ``port``) and ``protocol``: what
    ``JavaServer(handshake_host).async_status(version=protocol)`` sends to a server reached
    through a proxy. Raises whatever mcstatus raises (``OSError``, ``TimeoutError``, ...).
    """
    address_cls, conn_cls, client_cls, _ = _mcstatus_parts()
    hs_host = handshake_host if handshake_host is not None else host
    hs_port = handshake_port if handshake_port is not None else port
    async with conn_cls(address_cls(host, port), timeout) as connection:
        client = client_cls(connection, address=address_cls(hs_host, hs_port), version=protocol)
        await _maybe_await(client.handshake())
        status = await client.read_status()
    if not isinstance(status, JavaStatusResponse):  # pragma: no cover
        raise HarnessError(f"mcstatus returned {type(status)!r}")
    return status


async def mcstatus_legacy_ping(
    host: str, port: int, *, timeout: float = 3.0
) -> LegacyStatusResponse:
    """Pre-1.7 "server list ping" (``FE 01 FA``) with mcstatus's legacy client, one try.

    This is ``LegacyServer(host, port).async_status()`` without its retries. mcstatus sends
    no host (the ``MC|PingHost`` payload that 1.6 clients append is left out), so a router
    can only answer it from a default route, if it has one.
    """
    address_cls, conn_cls, _, legacy_cls = _mcstatus_parts()
    async with conn_cls(address_cls(host, port), timeout) as connection:
        status = await legacy_cls(connection).read_status()
    if not isinstance(status, LegacyStatusResponse):  # pragma: no cover
        raise HarnessError(f"mcstatus returned {type(status)!r}")
    return status


def mcstatus_motd_text(
    status_or_description: JavaStatusResponse | LegacyStatusResponse | Motd | Any,
) -> str:
    """The MOTD as plain text, the way mcstatus parses it (formatting codes removed).

    Accepts an mcstatus response, a :class:`~mcstatus.motd.Motd`, or a raw status
    ``description`` (chat component dict/list, or a string with ``§`` codes) such as the
    one :func:`mc_ping_node` returns.
    """
    if isinstance(status_or_description, JavaStatusResponse | LegacyStatusResponse):
        return status_or_description.motd.to_plain()
    if isinstance(status_or_description, Motd):
        return status_or_description.to_plain()
    return Motd.parse(status_or_description).to_plain()


def status_summary(status: JavaStatusResponse | LegacyStatusResponse) -> dict[str, Any]:
    """A plain dict of what a server list shows, from an mcstatus response."""
    return {
        "version_name": status.version.name,
        "protocol": status.version.protocol,
        "players_online": status.players.online,
        "players_max": status.players.max,
        "motd": status.motd.to_plain(),
        "motd_minecraft": status.motd.to_minecraft(),
        "favicon": status.icon if isinstance(status, JavaStatusResponse) else None,
    }
