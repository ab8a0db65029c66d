"""What each route's server-list entry really looks like, remembered for while it sleeps (#5).

* `StatusInfo`: one real status, parsed once at the edge (`parse_status`), raw JSON kept.
* `StatusSniffer`: sans-I/O; fed the backend->client bytes of a relayed status connection, it
  yields the backend's status without touching the relay.
* `StatusMemory`: the last real status per route key, and the predefined status built from it
  while the route is asleep or starting: real version name, max players and favicon, the
  asleep/loading text as description, 0 online, no sample. With nothing remembered it falls
  back to upstream's exact placeholder (§5.3, Q46).
* `StatusCache` (`--status-cache-ttl`, off by default): answers pings of awake routes from a
  short-lived cache per (route key, client protocol), one backend fetch shared by concurrent
  pings, and a stale entry served while the backend fails, up to `max_stale`.

Only the cache touches asyncio (for the shared fetch); the rest is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from mc_router.errors import RemoteProtocolError
from mc_router.protocol import (
    MAX_FRAME_LENGTH,
    NEED_DATA,
    Frame,
    FrameReader,
    Incomplete,
    decode_status_json,
    decode_string,
    legacy_kick,
    status_json,
)

__all__ = [
    "DEFAULT_STALE_FACTOR",
    "MAX_CACHE_ENTRIES",
    "MAX_REMEMBERED",
    "StatusCache",
    "StatusInfo",
    "StatusMemory",
    "StatusSniffer",
    "parse_status",
    "status_from_frame",
]

#: Routes are finite, but keys come from whoever registers routes; bound it anyway. Entries
#: carry favicons (a few KiB each), so 4096 routes is at most tens of MiB.
MAX_REMEMBERED: Final = 4096
#: Cache keys include the client's protocol number, which any client may choose: bound the
#: table so made-up protocol numbers cannot grow it without limit (oldest entry evicted).
MAX_CACHE_ENTRIES: Final = 1024
#: A failing backend's cached status is served for up to this many TTLs. The TTL is meant to
#: be seconds: a GC pause, a lag spike or a quick restart should not blank the server list,
#: but a status tens of TTLs old (players online, MOTD) no longer describes the server, and
#: the backend is then probably really down: better to let the normal path say so.
DEFAULT_STALE_FACTOR: Final = 10.0

# The placeholder's values (§5.3): what upstream shows for a server it knows nothing about.
_PLACEHOLDER_VERSION: Final = "1.7+"
_PLACEHOLDER_MAX: Final = 1


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """One real Status Response: the JSON text as sent, the parsed object, and its fields.

    Fields the server omitted or sent with the wrong type are None. `description` is the
    original JSON value (a string or a chat component), never flattened.
    """

    text: str = field(repr=False)
    raw: Mapping[str, object] = field(repr=False, compare=False)
    version_name: str | None = None
    protocol: int | None = None
    max_players: int | None = None
    online: int | None = None
    favicon: str | None = field(default=None, repr=False)
    description: object = None


def _int(value: object) -> int | None:
    # bool is an int in Python but never a player count or protocol in JSON.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_status(text: str) -> StatusInfo:
    """Parse Status Response JSON text; `RemoteProtocolError` unless it is a JSON object."""
    doc = decode_status_json(text)
    version = doc.get("version")
    players = doc.get("players")
    version = version if isinstance(version, dict) else {}
    players = players if isinstance(players, dict) else {}
    name = version.get("name")
    favicon = doc.get("favicon")
    return StatusInfo(
        text=text,
        raw=doc,
        version_name=name if isinstance(name, str) else None,
        protocol=_int(version.get("protocol")),
        max_players=_int(players.get("max")),
        online=_int(players.get("online")),
        favicon=favicon if isinstance(favicon, str) else None,
        description=doc.get("description"),
    )


def status_from_frame(frame: Frame) -> StatusInfo:
    """The StatusInfo in a Status Response frame; `RemoteProtocolError` for anything else."""
    if frame.packet_id != 0x00:
        raise RemoteProtocolError(f"expected a status response, got packet 0x{frame.packet_id:02x}")
    try:
        text, _ = decode_string(frame.payload, 0, len(frame.payload))
    except Incomplete:
        raise RemoteProtocolError("status response is truncated") from None
    return parse_status(text)


class StatusSniffer:
    """Reads the backend's Status Response out of a relayed status connection, sans-I/O.

    `feed(data)` with backend->client bytes returns the StatusInfo once the first frame is
    complete, else None. After that, or after bad data, `done` is True and `feed` ignores
    everything: a broken status never disturbs the relay, it is just not remembered.
    """

    __slots__ = ("_reader", "done")

    def __init__(self, max_frame: int = MAX_FRAME_LENGTH) -> None:
        self._reader = FrameReader(max_frame)
        self.done = False

    def feed(self, data: bytes) -> StatusInfo | None:
        if self.done:
            return None
        try:
            self._reader.feed(data)
            event = self._reader.next_event()
            if event is NEED_DATA:
                return None
            self.done = True
            return status_from_frame(event)
        except RemoteProtocolError:
            self.done = True
            return None


class StatusMemory:
    """The last real status of each route key, and the predefined status built from it.

    Protocol number: the predefined status carries the *client's* protocol (as upstream does,
    Q46) unless `echo_client_protocol=False`. A remembered number is not the truth for every
    client: ViaVersion servers and proxies echo each client's own protocol when they support
    it, so replaying the number seen by one client would mark a server that accepts everyone
    as "incompatible" for the next, and that red mark stops the very click that wakes it.
    Vanilla clients show the version name only when the protocols differ, so the real name
    costs nothing and helps tools that show it.
    """

    __slots__ = ("_entries", "_limit", "echo_client_protocol")

    def __init__(
        self, *, echo_client_protocol: bool = True, max_entries: int = MAX_REMEMBERED
    ) -> None:
        self._entries: OrderedDict[str, StatusInfo] = OrderedDict()
        self._limit = max_entries
        self.echo_client_protocol = echo_client_protocol

    def remember(self, key: str, status: StatusInfo) -> None:
        self._entries[key] = status
        self._entries.move_to_end(key)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def get(self, key: str) -> StatusInfo | None:
        return self._entries.get(key)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def status_json(self, key: str, motd: str, client_protocol: int) -> str:
        """The Status Response JSON to serve for `key` while asleep or starting."""
        known = self._entries.get(key)
        if known is None:
            return status_json(motd, client_protocol)
        protocol = client_protocol
        if not self.echo_client_protocol and known.protocol is not None:
            protocol = known.protocol
        return status_json(
            motd,
            protocol,
            version_name=known.version_name or _PLACEHOLDER_VERSION,
            max_players=_max_players(known),
            online=0,
            favicon=known.favicon,
        )

    def legacy_response(self, key: str, motd: str) -> bytes:
        """The legacy (0xFF) answer for `key`: protocol 127 as upstream (Q46), real name/max."""
        known = self._entries.get(key)
        if known is None:
            return legacy_kick(motd)
        return legacy_kick(
            motd,
            version_name=known.version_name or _PLACEHOLDER_VERSION,
            max_players=_max_players(known),
        )


def _max_players(known: StatusInfo) -> int:
    if known.max_players is None or known.max_players < 0:
        return _PLACEHOLDER_MAX
    return known.max_players


def _retrieve(task: asyncio.Task[StatusInfo]) -> None:
    # A fetch whose callers all gave up must not be reported as "exception never retrieved".
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class _Entry:
    value: StatusInfo
    fetched: float


class StatusCache:
    """Backend status per (route key, protocol version), fresh for `ttl` seconds.

    `get(key, protocol, fetch)` returns a fresh entry, or runs `fetch()` once for every
    concurrent caller (the fetch is a task of the cache, so a caller that gives up never
    cancels it for the others). If the fetch fails, an entry younger than `max_stale` is
    returned instead; otherwise the fetch's exception propagates.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_stale: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_CACHE_ENTRIES,
    ) -> None:
        if ttl <= 0:
            raise ValueError("status cache TTL must be positive")
        self.ttl = ttl
        self.max_stale = DEFAULT_STALE_FACTOR * ttl if max_stale is None else max_stale
        self._clock = clock
        self._limit = max_entries
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._fetches: dict[tuple[str, int], asyncio.Task[StatusInfo]] = {}
        #: Backend fetches started (tests and metrics).
        self.fetches = 0

    def peek(self, key: str, protocol: int) -> StatusInfo | None:
        """A fresh entry, without fetching."""
        entry = self._entries.get((key, protocol))
        if entry is None or self._clock() - entry.fetched >= self.ttl:
            return None
        return entry.value

    async def get(
        self, key: str, protocol: int, fetch: Callable[[], Awaitable[StatusInfo]]
    ) -> StatusInfo:
        slot = (key, protocol)
        fresh = self.peek(key, protocol)
        if fresh is not None:
            return fresh
        task = self._fetches.get(slot)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._fetch(slot, fetch), name=f"status fetch {key}"
            )
            task.add_done_callback(_retrieve)
            self._fetches[slot] = task
            self.fetches += 1
        try:
            return await asyncio.shield(task)
        except Exception:
            entry = self._entries.get(slot)
            if entry is not None and self._clock() - entry.fetched < self.max_stale:
                return entry.value
            raise

    async def _fetch(
        self, slot: tuple[str, int], fetch: Callable[[], Awaitable[StatusInfo]]
    ) -> StatusInfo:
        try:
            value = await fetch()
        finally:
            self._fetches.pop(slot, None)
        self._entries[slot] = _Entry(value, self._clock())
        self._entries.move_to_end(slot)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return value

    def invalidate(self, key: str) -> None:
        """Drop every entry of a route (it was put to sleep, woken, changed or removed)."""
        for slot in [slot for slot in self._entries if slot[0] == key]:
            del self._entries[slot]

    def __len__(self) -> int:
        return len(self._entries)

    async def aclose(self) -> None:
        """Cancel fetches in flight (shutdown)."""
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
