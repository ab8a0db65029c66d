"""The third-party harness works on its own: real node server, node client, mcstatus.

No router is involved here: every test talks straight to a minecraft-protocol server on
127.0.0.1, so a failure here is the harness's, not the router's.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path

import pytest

from tests import thirdparty
from tests.thirdparty import (
    DEFAULT_MC_VERSION,
    DEFAULT_PROTOCOL,
    HarnessError,
    mc_login,
    mc_ping_node,
    mc_server,
    mcstatus_legacy_ping,
    mcstatus_motd_text,
    mcstatus_ping,
    status_summary,
)

LOCAL = "127.0.0.1"
# A 1x1 PNG, as a status favicon data URL.
PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360606060000000050001a5f645400000000049454e44ae426082"
    )
).decode()
FAVICON = "data:image/png;base64," + PNG_1X1


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


async def test_node_client_logs_into_node_server() -> None:
    async with mc_server(motd="harness") as srv:
        assert srv.host == LOCAL
        assert srv.protocol == DEFAULT_PROTOCOL, "tests/js/versions.json protocol is stale"
        out = await mc_login(
            LOCAL, srv.port, handshake_host="survival.example.com", username="Alex"
        )
        assert out["event"] == "login", out
        assert out["state"] == "play"
        assert out["username"] == "Alex"

        login = await srv.wait_for("login", username="Alex")
        assert login["handshakeHost"] == "survival.example.com"
        assert login["handshakePort"] == srv.port
        assert login["protocol"] == DEFAULT_PROTOCOL
        assert login["uuid"] == out["uuid"]
        await srv.wait_for("join", username="Alex")
        await srv.wait_for("disconnect", username="Alex")
        assert not srv.of_kind("client_error"), srv.events


async def test_handshake_port_is_sent_as_given() -> None:
    async with mc_server() as srv:
        out = await mc_login(
            LOCAL, srv.port, handshake_host="mc.example.com", handshake_port=25565, username="P"
        )
        assert out["event"] == "login", out
        login = await srv.wait_for("login", username="P")
        assert (login["handshakeHost"], login["handshakePort"]) == ("mc.example.com", 25565)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("Server is asleep, try again", "Server is asleep, try again"),
        (
            {"text": "Waking up ", "color": "gold", "extra": [{"text": "survival", "bold": True}]},
            "Waking up survival",
        ),
    ],
    ids=["plain", "component"],
)
async def test_node_client_reports_kick_reason(reason: str | dict[str, object], text: str) -> None:
    async with mc_server(kick_on_login=reason) as srv:
        out = await mc_login(LOCAL, srv.port, handshake_host="sleepy.example.com", username="Zz")
        assert out["event"] == "kicked", out
        assert out["state"] == "login"
        assert out["text"] == text
        expected_json = {"text": reason} if isinstance(reason, str) else reason
        assert out["reasonJson"] == expected_json
        assert out["reasonIsJson"] is True

        kick = await srv.wait_for("kick", username="Zz")
        assert kick["handshakeHost"] == "sleepy.example.com"
        assert not srv.of_kind("login")


async def test_node_client_flags_a_reason_that_is_not_json() -> None:
    async with mc_server(kick_on_login="bare words", kick_on_login_raw=True) as srv:
        out = await mc_login(LOCAL, srv.port, username="Raw")
        assert out["event"] == "kicked", out
        assert out["reason"] == "bare words"
        assert out["reasonIsJson"] is False
        await srv.wait_for("kick", username="Raw")


async def test_mcstatus_reads_node_server_status() -> None:
    description = {"text": "Lobby ", "color": "green", "extra": [{"text": "is up", "bold": True}]}
    async with mc_server(description=description, max_players=42, favicon=FAVICON) as srv:
        status = await mcstatus_ping(LOCAL, srv.port, "lobby.example.com", timeout=5)
        summary = status_summary(status)
        summary.pop("motd_minecraft")
        assert status.version.name == DEFAULT_MC_VERSION
        assert status.version.protocol == DEFAULT_PROTOCOL
        assert (status.players.online, status.players.max) == (0, 42)
        assert mcstatus_motd_text(status) == "Lobby is up"
        # Not asserted: status.motd.to_minecraft(). mcstatus 14.2 renders this component as
        # "§aLobby §r§lis up§r", dropping the green the vanilla client inherits into "extra".
        assert status.icon == FAVICON
        assert status.raw["description"] == description
        assert summary == {
            "version_name": DEFAULT_MC_VERSION,
            "protocol": DEFAULT_PROTOCOL,
            "players_online": 0,
            "players_max": 42,
            "motd": "Lobby is up",
            "favicon": FAVICON,
        }

        ping = await srv.wait_for("ping", handshakeHost="lobby.example.com")
        assert ping["handshakePort"] == srv.port
        assert ping["protocol"] == DEFAULT_PROTOCOL


async def test_mcstatus_plain_motd_and_no_favicon() -> None:
    async with mc_server(motd="Just text", max_players=3) as srv:
        status = await mcstatus_ping(LOCAL, srv.port, handshake_port=25565, protocol=47)
        assert mcstatus_motd_text(status) == "Just text"
        assert status.icon is None
        await srv.wait_for("ping", handshakeHost=LOCAL, handshakePort=25565, protocol=47)


async def test_node_ping_reads_node_server_status() -> None:
    async with mc_server(motd="§cRed §rplain", max_players=5, favicon=FAVICON) as srv:
        out = await mc_ping_node(LOCAL, srv.port, handshake_host="ping.example.com")
        assert out["event"] == "status", out
        response = out["response"]
        assert response["version"] == {"name": DEFAULT_MC_VERSION, "protocol": DEFAULT_PROTOCOL}
        assert response["players"]["max"] == 5
        assert response["description"] == {"text": "§cRed §rplain"}
        assert response["favicon"] == FAVICON
        assert mcstatus_motd_text(response["description"]) == "Red plain"
        await srv.wait_for("ping", handshakeHost="ping.example.com", handshakePort=srv.port)


async def test_mcstatus_legacy_ping_reads_node_server() -> None:
    async with mc_server(motd="Old school", max_players=9) as srv:
        status = await mcstatus_legacy_ping(LOCAL, srv.port, timeout=5)
        assert mcstatus_motd_text(status) == "Old school"
        assert (status.players.online, status.players.max) == (0, 9)
        assert status.version.name == DEFAULT_MC_VERSION
        assert status.version.protocol == DEFAULT_PROTOCOL
        await srv.wait_for("legacy_ping")


async def test_outcomes_when_nothing_listens() -> None:
    port = closed_port()
    out = await mc_login(LOCAL, port, handshake_host="x.example.com", timeout=5)
    assert out["event"] == "error", out
    assert out["code"] == "ECONNREFUSED"
    ping = await mc_ping_node(LOCAL, port, timeout=5)
    assert ping["event"] == "error", ping
    assert ping["code"] == "ECONNREFUSED"
    with pytest.raises(ConnectionRefusedError):
        await mcstatus_ping(LOCAL, port, "x.example.com")


def test_motd_text_of_raw_descriptions() -> None:
    assert mcstatus_motd_text("§6Gold §lbold§r done") == "Gold bold done"
    assert mcstatus_motd_text({"text": "a", "extra": ["b", {"text": "c"}]}) == "abc"
    assert mcstatus_motd_text([{"text": "x"}, {"text": "y", "italic": True}]) == "xy"


async def test_server_process_is_stopped_even_on_failure() -> None:
    class Boom(Exception):
        pass

    procs: list[asyncio.subprocess.Process] = []

    async def fail_inside() -> None:
        async with mc_server() as srv:
            procs.append(srv.process)
            raise Boom

    with pytest.raises(Boom):
        await fail_inside()
    assert procs
    assert procs[0].returncode is not None


async def test_missing_node_modules_is_an_error_not_a_skip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(thirdparty, "JS_DIR", tmp_path)
    assert not thirdparty.node_available()
    with pytest.raises(HarnessError, match=r"npm ci --prefix tests/js"):
        async with mc_server():
            pass
    with pytest.raises(HarnessError, match=r"npm ci --prefix tests/js"):
        await mc_login(LOCAL, 1, handshake_host="x")
