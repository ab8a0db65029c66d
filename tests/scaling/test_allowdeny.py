"""The allow/deny list (§6.6): upstream's 12-case table, Go's decoding rules, Q22 fixed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mc_router.errors import ConfigError
from mc_router.events import PlayerInfo
from mc_router.scaling.allowdeny import (
    AllowDeny,
    Entry,
    load_allow_deny,
    parse_allow_deny,
    parse_go_uuid,
    server_allows_player,
)

PLAYER = PlayerInfo("player_name", uuid.UUID("53036a8f-cbc8-4074-bbc5-98e5e19b0b14"))
OTHER = PlayerInfo("other_player", uuid.UUID("0d51a0ca-f498-44bf-813f-635c18594b8c"))
SERVER = "server.my.domain"

P = {"uuid": str(PLAYER.uuid), "name": PLAYER.name}
O = {"uuid": str(OTHER.uuid), "name": OTHER.name}  # noqa: E741 -- mirrors upstream's table


def config(doc: object) -> AllowDeny:
    return parse_allow_deny(json.dumps(doc))


# Test_allowDenyConfig_ServerAllowsPlayer, in upstream's order.
CASES: list[tuple[str, object, bool]] = [
    ("no config", None, True),
    ("empty config", {}, True),
    ("impossible allowlist", {"global": {"allowlist": [{}]}}, False),
    ("global allow player", {"global": {"allowlist": [P]}}, True),
    ("global allow other", {"global": {"allowlist": [O]}}, False),
    ("global deny player", {"global": {"denylist": [P]}}, False),
    ("global allow+deny player", {"global": {"allowlist": [P], "denylist": [P]}}, True),
    ("server allow player", {"servers": {SERVER: {"allowlist": [P]}}}, True),
    ("server allow other", {"servers": {SERVER: {"allowlist": [O]}}}, False),
    ("server deny player", {"servers": {SERVER: {"denylist": [P]}}}, False),
    (
        "global allow, server deny",
        {"global": {"allowlist": [P]}, "servers": {SERVER: {"denylist": [P]}}},
        True,
    ),
    (
        "global deny, server allow",
        {"global": {"denylist": [P]}, "servers": {SERVER: {"allowlist": [P]}}},
        True,
    ),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_upstream_decision_table(doc: object, expected: bool) -> None:
    loaded = None if doc is None else config(doc)
    assert server_allows_player(loaded, SERVER, PLAYER) is expected


class TestUnknownPlayerQ22:
    """A login without player info never crashes and matches no entry."""

    def test_allowlist_refuses_unknown_player(self) -> None:
        assert config({"global": {"allowlist": [P]}}).server_allows_player(SERVER, None) is False

    def test_denylist_alone_lets_unknown_player_through(self) -> None:
        assert config({"global": {"denylist": [P]}}).server_allows_player(SERVER, None) is True

    def test_no_lists(self) -> None:
        assert config({}).server_allows_player(SERVER, None) is True
        assert server_allows_player(None, SERVER, None) is True


class TestEntryMatch:
    def test_name_only_is_case_sensitive(self) -> None:
        assert Entry(name="player_name").matches(PLAYER)
        assert not Entry(name="Player_Name").matches(PLAYER)

    def test_uuid_only(self) -> None:
        assert Entry(uuid=PLAYER.uuid).matches(PLAYER)
        assert not Entry(uuid=OTHER.uuid).matches(PLAYER)

    def test_both_must_match(self) -> None:
        assert Entry(PLAYER.uuid, "player_name").matches(PLAYER)
        assert not Entry(PLAYER.uuid, "other_player").matches(PLAYER)
        assert not Entry(OTHER.uuid, "player_name").matches(PLAYER)

    def test_empty_entry_never_matches(self) -> None:
        assert not Entry().matches(PLAYER)
        assert not Entry().matches(PlayerInfo("", uuid.UUID(int=0)))


class TestServerKey:
    def test_matched_exactly_against_the_raw_address_q23(self) -> None:
        doc = {"servers": {SERVER: {"allowlist": [O]}}}
        assert config(doc).server_allows_player(SERVER, PLAYER) is False
        # Another spelling is another key: no server lists apply, so no whitelist mode.
        assert config(doc).server_allows_player("Server.My.Domain", PLAYER) is True
        assert config(doc).server_allows_player(SERVER + ".", PLAYER) is True


class TestGoDecoding:
    def test_member_names_are_case_insensitive(self) -> None:
        doc = {"GLOBAL": {"AllowList": [{"UUID": str(OTHER.uuid), "Name": "other_player"}]}}
        assert config(doc).server_allows_player(SERVER, PLAYER) is False
        assert config(doc).server_allows_player(SERVER, OTHER) is True

    def test_unknown_members_ignored(self) -> None:
        doc = {"$schema": "x", "global": {"allowlist": [P], "comment": 1}, "extra": [1]}
        assert config(doc).server_allows_player(SERVER, PLAYER) is True

    def test_last_duplicate_member_wins(self) -> None:
        loaded = parse_allow_deny('{"global": {"allowlist": [], "Allowlist": [{"name": "x"}]}}')
        assert loaded.global_lists.allowlist == (Entry(name="x"),)

    def test_nulls_leave_zero_values(self) -> None:
        loaded = parse_allow_deny('{"global": null, "servers": {"a": null}, "x": null}')
        assert loaded == AllowDeny(servers=loaded.servers)
        assert parse_allow_deny("null") == AllowDeny()
        entry = parse_allow_deny('{"global": {"denylist": [{"uuid": null, "name": null}]}}')
        assert entry.global_lists.denylist == (Entry(),)

    def test_null_entry_is_an_impossible_allowlist(self) -> None:
        loaded = parse_allow_deny('{"global": {"allowlist": [null]}}')
        assert loaded.server_allows_player(SERVER, PLAYER) is False

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('{"global": {"allowlist": [{"uuid": ""}]}}', "invalid UUID length: 0"),
            ('{"global": {"allowlist": [{"uuid": "not-a-uuid"}]}}', "invalid UUID"),
            ('{"global": {"allowlist": [{"uuid": 5}]}}', "expected a string"),
            ('{"global": {"allowlist": [{"name": 5}]}}', "expected a string"),
            ('{"global": {"allowlist": {"name": "x"}}}', "expected an array"),
            ('{"global": {"allowlist": ["x"]}}', "expected an object"),
            ('{"global": []}', "expected an object"),
            ('{"servers": []}', "expected an object"),
            ("[]", "expected a JSON object"),
            ("{", "invalid JSON"),
            ('{"global": NaN}', "invalid JSON"),
        ],
    )
    def test_errors(self, text: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse_allow_deny(text)

    def test_error_names_the_offending_path(self) -> None:
        with pytest.raises(ConfigError, match=r"servers\['a'\]\.denylist\[1\]\.uuid"):
            parse_allow_deny('{"servers": {"a": {"denylist": [{}, {"uuid": ""}]}}}')


class TestGoUuid:
    CANONICAL = "53036a8f-cbc8-4074-bbc5-98e5e19b0b14"

    @pytest.mark.parametrize(
        "text",
        [
            CANONICAL,
            CANONICAL.upper(),
            "{" + CANONICAL + "}",
            "urn:uuid:" + CANONICAL,
            "URN:UUID:" + CANONICAL,
            CANONICAL.replace("-", ""),
        ],
    )
    def test_accepted_forms(self, text: str) -> None:
        assert parse_go_uuid(text) == uuid.UUID(self.CANONICAL)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            CANONICAL[:-1],
            CANONICAL.replace("-", "")[:-1] + "g",
            "53036a8fc-bc8-4074-bbc5-98e5e19b0b14",  # hyphen in the wrong place
            "(" + CANONICAL + ")",
            "uuid:urn:" + CANONICAL,
            "5303-6a8f-cbc8-4074-bbc5-98e5e19b0b14",
        ],
    )
    def test_rejected_forms(self, text: str) -> None:
        with pytest.raises(ValueError, match="invalid UUID"):
            parse_go_uuid(text)


class TestLoad:
    def test_loads_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "allow-deny.json"
        path.write_text(json.dumps({"global": {"allowlist": [P]}}))
        loaded = load_allow_deny(path)
        assert loaded.server_allows_player(SERVER, PLAYER) is True
        assert loaded.server_allows_player(SERVER, OTHER) is False

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"could not read allow/deny list .*missing\.json"):
            load_allow_deny(tmp_path / "missing.json")

    def test_invalid_file_names_path_and_reason(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.json"
        path.write_text('{"global": {"allowlist": [{"uuid": ""}]}}')
        with pytest.raises(ConfigError, match=r"invalid allow/deny list .*bad.json.*length: 0"):
            load_allow_deny(path)
