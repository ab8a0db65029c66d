"""The player allow/deny list (`-auto-scale-allow-deny`, spec §6.6): who may wake a server.

    {"global":  {"allowlist": [ENTRY...], "denylist": [ENTRY...]},
     "servers": {"<raw server address>": {"allowlist": [...], "denylist": [...]}}}
    ENTRY = {"uuid": "<uuid>", "name": "<player name>"}

Decoded as Go decodes it into upstream's structs: member names match case-insensitively,
unknown members are ignored, `null` leaves a field at its zero value, a wrong type is an
error, `"uuid": ""` is an error, and UUIDs take Go's `uuid.Parse` forms. Server keys are
matched exactly against the raw handshake address (Q23 kept).

Deliberate difference (Q22 fixed): a login without player info (transfer intent, truncated
Login Start) matches no entry instead of crashing, so an allowlist keeps it from waking the
server and a denylist alone lets it through. Pure: no I/O except `load_allow_deny`'s read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from mc_router.errors import ConfigError

__all__ = [
    "AllowDeny",
    "Entry",
    "Lists",
    "PlayerLike",
    "load_allow_deny",
    "parse_allow_deny",
    "parse_go_uuid",
    "server_allows_player",
]

NIL_UUID: Final = uuid.UUID(int=0)
_HEX32: Final = re.compile(r"^[0-9a-fA-F]{32}$")
_CANONICAL: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class PlayerLike(Protocol):
    """A player as the session knows it (events.PlayerInfo, protocol.Player)."""

    @property
    def name(self) -> str: ...

    @property
    def uuid(self) -> uuid.UUID: ...


def parse_go_uuid(text: str) -> uuid.UUID:
    """Parse a UUID as github.com/google/uuid's `Parse` does; ValueError otherwise.

    Accepted: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, the same in `{...}` or after
    `urn:uuid:` (any case), and 32 hex digits. Hex digits in either case.
    """
    body = text
    if len(text) == 45 and text[:9].lower() == "urn:uuid:":
        body = text[9:]
    elif len(text) == 38 and text[0] == "{" and text[-1] == "}":
        body = text[1:-1]
    elif len(text) == 32:
        if _HEX32.match(text):
            return uuid.UUID(hex=text)
        raise ValueError(f"invalid UUID format: {text!r}")
    elif len(text) != 36:
        raise ValueError(f"invalid UUID length: {len(text)}")
    if not _CANONICAL.match(body):
        raise ValueError(f"invalid UUID format: {text!r}")
    return uuid.UUID(body)


@dataclass(frozen=True, slots=True)
class Entry:
    """One list entry; the nil UUID and "" mean "not set"."""

    uuid: uuid.UUID = NIL_UUID
    name: str = ""

    def matches(self, player: PlayerLike | None) -> bool:
        """Upstream's entry match (§6.6); an unknown player matches nothing (Q22 fixed)."""
        if player is None:
            return False
        has_uuid = self.uuid != NIL_UUID
        if not self.name:
            return has_uuid and player.uuid == self.uuid
        if has_uuid:
            return player.uuid == self.uuid and player.name == self.name
        return player.name == self.name


@dataclass(frozen=True, slots=True)
class Lists:
    allowlist: tuple[Entry, ...] = ()
    denylist: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class AllowDeny:
    """A loaded allow/deny configuration."""

    global_lists: Lists = Lists()
    servers: Mapping[str, Lists] = field(default_factory=dict)

    def server_allows_player(self, server_address: str, player: PlayerLike | None) -> bool:
        """May this player wake the server behind `server_address` (the raw handshake text)?

        Any match in the combined allowlists allows; otherwise a non-empty allowlist denies
        (whitelist mode); otherwise any match in the combined denylists denies.
        """
        server = self.servers.get(server_address)
        allow = self.global_lists.allowlist + (server.allowlist if server else ())
        if any(entry.matches(player) for entry in allow):
            return True
        if allow:
            return False
        deny = self.global_lists.denylist + (server.denylist if server else ())
        return not any(entry.matches(player) for entry in deny)


def server_allows_player(
    config: AllowDeny | None, server_address: str, player: PlayerLike | None
) -> bool:
    """`config.server_allows_player(...)`, and True when there is no configuration."""
    return True if config is None else config.server_allows_player(server_address, player)


# -- decoding, the way Go's encoding/json fills upstream's structs ---------------------------


class _Object(list[tuple[str, object]]):
    """A JSON object as its member pairs, in order (duplicates kept: Go lets the last win)."""


def _members(value: object, where: str, names: tuple[str, ...]) -> dict[str, object]:
    """An object's members for the struct fields `names`, matched case-insensitively.

    Later members win, like Go; `null` members are dropped (Go leaves the field alone).
    """
    if not isinstance(value, _Object):
        raise ConfigError(f"{where}: expected a JSON object, got {_kind(value)}")
    found: dict[str, object] = {}
    for key, member in value:
        folded = key.casefold()
        if folded in names and member is not None:
            found[folded] = member
    return found


def _kind(value: object) -> str:
    if isinstance(value, _Object):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _is_object(value: object) -> bool:
    return isinstance(value, _Object)


def _entry(value: object, where: str) -> Entry:
    if value is None:
        return Entry()  # Go: null into a struct element leaves the zero entry
    if not _is_object(value):
        raise ConfigError(f"{where}: expected an object, got {_kind(value)}")
    members = _members(value, where, ("uuid", "name"))
    name = members.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string, got {_kind(name)}")
    raw_uuid = members.get("uuid")
    parsed = NIL_UUID
    if raw_uuid is not None:
        if not isinstance(raw_uuid, str):
            raise ConfigError(f"{where}.uuid: expected a string, got {_kind(raw_uuid)}")
        try:
            parsed = parse_go_uuid(raw_uuid)
        except ValueError as exc:
            raise ConfigError(f"{where}.uuid: {exc}") from None
    return Entry(parsed, name)


def _entries(value: object, where: str) -> tuple[Entry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or isinstance(value, _Object):
        raise ConfigError(f"{where}: expected an array, got {_kind(value)}")
    return tuple(_entry(item, f"{where}[{i}]") for i, item in enumerate(value))


def _lists(value: object, where: str) -> Lists:
    if value is None:
        return Lists()
    if not _is_object(value):
        raise ConfigError(f"{where}: expected an object, got {_kind(value)}")
    members = _members(value, where, ("allowlist", "denylist"))
    return Lists(
        _entries(members.get("allowlist"), f"{where}.allowlist"),
        _entries(members.get("denylist"), f"{where}.denylist"),
    )


def parse_allow_deny(text: str | bytes) -> AllowDeny:
    """Decode an allow/deny file's content; `ConfigError` with the offending path."""
    try:
        doc = json.loads(text, object_pairs_hook=_Object, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"invalid JSON: {exc}") from None
    if doc is None:
        return AllowDeny()
    if not _is_object(doc):
        raise ConfigError(f"expected a JSON object, got {_kind(doc)}")
    members = _members(doc, "allow/deny list", ("global", "servers"))
    servers_raw = members.get("servers")
    servers: dict[str, Lists] = {}
    if servers_raw is not None:
        if not _is_object(servers_raw):
            raise ConfigError(f"servers: expected an object, got {_kind(servers_raw)}")
        assert isinstance(servers_raw, _Object)
        for key, value in servers_raw:
            # Map keys are exact strings in Go (Q23); a null value stores the zero lists.
            servers[key] = _lists(value, f"servers[{key!r}]")
    return AllowDeny(_lists(members.get("global"), "global"), servers)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def load_allow_deny(path: str | Path) -> AllowDeny:
    """Read and decode `-auto-scale-allow-deny`; `ConfigError` if missing or invalid (fatal)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"could not read allow/deny list {str(path)!r}: {exc.strerror or exc}"
        ) from None
    try:
        return parse_allow_deny(data)
    except ConfigError as exc:
        raise ConfigError(f"invalid allow/deny list {str(path)!r}: {exc}") from None
