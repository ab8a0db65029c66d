"""Readiness probes against real loopback servers (issue #5 §3)."""

from __future__ import annotations

import asyncio

import pytest

from mc_router.scaling.probe import DEFAULT_PROTOCOL, ProbeError, fetch_status, wait_until_ready
from tests.scaling.conftest import StatusServerFactory
from tests.scaling.helpers import SAMPLE_STATUS, SeenHandshake


class TestFetchStatus:
    async def test_parses_a_real_status(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers()
        info = await fetch_status(server.address, server_address="mc.example.com", timeout=5)
        assert info.version_name == "Paper 1.21.4"
        assert info.protocol == 769
        assert info.max_players == 20
        assert info.online == 3
        assert info.favicon == SAMPLE_STATUS["favicon"]
        assert info.description == {"text": "A real server", "color": "gold"}
        assert info.raw == SAMPLE_STATUS
        assert server.handshakes == [
            SeenHandshake(DEFAULT_PROTOCOL, "mc.example.com", server.port, 1)
        ]

    async def test_handshake_fields_are_configurable(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers()
        await fetch_status(
            server.address,
            server_address="play.example.com",
            server_port=25565,
            protocol_version=47,
            timeout=5,
        )
        assert server.handshakes == [SeenHandshake(47, "play.example.com", 25565, 1)]

    async def test_ping_round_trip(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers()
        info = await fetch_status(server.address, server_address="a", timeout=5, with_ping=True)
        assert info.version_name == "Paper 1.21.4"

    async def test_description_string_kept_as_is(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers(status={"description": "plain", "players": "bad"})
        info = await fetch_status(server.address, server_address="a", timeout=5)
        assert info.description == "plain"
        assert info.max_players is None
        assert info.version_name is None

    async def test_waits_for_a_server_that_is_silent_for_a_while(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers(mode="silent")
        probe = asyncio.create_task(fetch_status(server.address, server_address="a", timeout=10))
        await server.accepted.get()
        assert not probe.done()
        server.release.set()
        info = await probe
        assert info.online == 3

    async def test_silent_server_times_out(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers(mode="silent")
        with pytest.raises(ProbeError, match="did not answer the status request in time"):
            await fetch_status(server.address, server_address="a", timeout=0.1)

    @pytest.mark.parametrize(
        ("mode", "message"),
        [
            ("garbage", "invalid status response"),
            ("not-json", "not valid JSON"),
            ("login-packet", "expected a status response, got packet 0x02"),
            ("close", "closed the connection without answering"),
            ("drop", r"127\.0\.0\.1:\d+: "),  # EOF or a reset, depending on timing
        ],
    )
    async def test_bad_answers(
        self, status_servers: StatusServerFactory, mode: str, message: str
    ) -> None:
        server = await status_servers(mode=mode)
        with pytest.raises(ProbeError, match=message):
            await fetch_status(server.address, server_address="a", timeout=5)

    async def test_json_that_is_not_an_object(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers()
        server.status = []  # type: ignore[assignment]
        with pytest.raises(ProbeError, match="not an object"):
            await fetch_status(server.address, server_address="a", timeout=5)

    async def test_closed_port(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers(listen=False)  # bound, not listening: refused
        with pytest.raises(ProbeError, match=server.address):
            await fetch_status(server.address, server_address="a", timeout=5)

    async def test_bad_address(self) -> None:
        with pytest.raises(ProbeError, match="missing a port"):
            await fetch_status("localhost", server_address="a", timeout=5)


class FakeTime:
    """A clock and a sleep that advances it, with a hook run at each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: list[object] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            step = self.on_sleep.pop(0)
            assert callable(step)
            result = step()
            if asyncio.iscoroutine(result):
                await result


class TestWaitUntilReady:
    async def test_timeline_closed_then_open_then_answering(
        self, status_servers: StatusServerFactory
    ) -> None:
        """Refused, then a port that closes at once, then one that is silent, then status."""
        server = await status_servers(listen=False, mode="drop")
        fake = FakeTime()

        def go_silent() -> None:
            server.mode = "silent"

        def answer() -> None:
            server.mode = "answer"

        fake.on_sleep = [server.listen, go_silent, answer]
        info = await wait_until_ready(
            server.address,
            server_address="mc.example.com",
            deadline_seconds=60,
            attempt_timeout=0.2,
            interval=0.25,
            max_interval=1.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
        assert info.version_name == "Paper 1.21.4"
        # Backoff: 0.25 s, doubled, capped at 1 s.
        assert fake.sleeps == [0.25, 0.5, 1.0]
        # Attempt 1 was refused; 2 (closed), 3 (silent) and 4 (answered) reached the server.
        assert server.connections == 3
        assert [h.server_address for h in server.handshakes] == ["mc.example.com"] * 2

    async def test_backoff_caps_and_deadline_bounds(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers(listen=False)
        fake = FakeTime()
        with pytest.raises(ProbeError, match=r"not ready after 3s \(6 attempts\)") as caught:
            await wait_until_ready(
                server.address,
                server_address="a",
                deadline_seconds=3,
                interval=0.25,
                max_interval=1.0,
                clock=fake.clock,
                sleep=fake.sleep,
            )
        assert fake.sleeps == [0.25, 0.5, 1.0, 1.0, 0.25]  # the last wait ends at the deadline
        assert server.address in str(caught.value)

    async def test_zero_deadline_still_tries_once(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers()
        info = await wait_until_ready(server.address, server_address="a", deadline_seconds=0)
        assert info.max_players == 20

    async def test_port_opens_before_status_answers_real_time(
        self, status_servers: StatusServerFactory
    ) -> None:
        """Port open but silent is not ready; the first status answer is."""
        server = await status_servers(mode="silent")
        ready = asyncio.create_task(
            wait_until_ready(
                server.address,
                server_address="a",
                deadline_seconds=30,
                interval=0.01,
                attempt_timeout=0.05,
            )
        )
        # Let a few attempts time out against the silent port, then answer.
        for _ in range(3):
            await server.accepted.get()
        assert not ready.done()
        server.release.set()
        info = await ready
        assert info.online == 3
        assert server.connections >= 3
