"""Real third-party peers through the router: mcstatus and npm minecraft-protocol (issue #2)."""

from __future__ import annotations

from tests.conftest import RouterFactory
from tests.thirdparty import mc_login, mc_server, mcstatus_motd_text, mcstatus_ping, status_summary


async def test_mcstatus_ping_through_the_router_reaches_the_chosen_host(
    router_factory: RouterFactory,
) -> None:
    async with (
        mc_server(motd="Survival world", max_players=42) as survival,
        mc_server(motd="Creative world", max_players=7) as creative,
    ):
        mapping = {
            "survival.example.com": f"127.0.0.1:{survival.port}",
            "creative.example.com": f"127.0.0.1:{creative.port}",
        }
        async with router_factory(mapping=mapping) as router:
            status = await mcstatus_ping("127.0.0.1", router.port, "Creative.Example.com")
            summary = status_summary(status)
            assert mcstatus_motd_text(status) == "Creative world"
            assert summary["players_max"] == 7
            status = await mcstatus_ping("127.0.0.1", router.port, "survival.example.com.")
            assert mcstatus_motd_text(status) == "Survival world"
            assert status_summary(status)["players_max"] == 42


async def test_npm_client_logs_in_through_the_router(router_factory: RouterFactory) -> None:
    async with mc_server(motd="Lobby") as server:
        async with router_factory(
            mapping={"lobby.example.com": f"127.0.0.1:{server.port}"}
        ) as router:
            outcome = await mc_login(
                "127.0.0.1", router.port, handshake_host="lobby.example.com", username="Alex"
            )
        assert outcome["event"] == "login", outcome
        login = await server.wait_for("login", username="Alex")
        # The backend sees the handshake exactly as the client sent it.
        assert login["handshakeHost"] == "lobby.example.com"


async def test_asleep_motd_shows_in_mcstatus_for_a_route_without_backend(
    router_factory: RouterFactory,
) -> None:
    async with router_factory(auto_scale_asleep_motd="zzz, join to wake") as router:
        router.table.create_mapping("sleepy.example.com", "")
        status = await mcstatus_ping("127.0.0.1", router.port, "sleepy.example.com")
        assert mcstatus_motd_text(status) == "zzz, join to wake"
        assert status.version.name == "1.7+"
