"""Remembered status for asleep routes, and the opt-in status cache (issue #5 §5, §7)."""

from __future__ import annotations

import asyncio
import json

import pytest

from mc_router.errors import RemoteProtocolError
from mc_router.protocol import legacy_kick, status_json, status_response
from mc_router.scaling.probe import ProbeError, fetch_status
from mc_router.scaling.status_memory import (
    DEFAULT_STALE_FACTOR,
    StatusCache,
    StatusInfo,
    StatusMemory,
    StatusSniffer,
    parse_status,
)
from tests.scaling.conftest import StatusServerFactory
from tests.scaling.helpers import SAMPLE_STATUS

SAMPLE = parse_status(json.dumps(SAMPLE_STATUS))


class TestParseStatus:
    def test_fields(self) -> None:
        assert SAMPLE.version_name == "Paper 1.21.4"
        assert SAMPLE.protocol == 769
        assert (SAMPLE.max_players, SAMPLE.online) == (20, 3)
        assert SAMPLE.favicon == "data:image/png;base64,iVBORw0KGgo="
        assert SAMPLE.description == {"text": "A real server", "color": "gold"}
        assert SAMPLE.text == json.dumps(SAMPLE_STATUS)

    def test_wrong_types_become_none(self) -> None:
        info = parse_status(
            '{"version": {"name": 5, "protocol": "x"}, "players": {"max": true, "online": 1.5},'
            ' "favicon": 3}'
        )
        assert (info.version_name, info.protocol, info.max_players, info.online) == (
            None,
            None,
            None,
            None,
        )
        assert info.favicon is None
        assert info.description is None

    @pytest.mark.parametrize("text", ["", "nope", "[1]", '"text"', "null"])
    def test_rejects_non_objects(self, text: str) -> None:
        with pytest.raises(RemoteProtocolError):
            parse_status(text)


class TestSniffer:
    def test_byte_at_a_time(self) -> None:
        wire = status_response(json.dumps(SAMPLE_STATUS)) + b"\x09\x01" + bytes(8)
        sniffer = StatusSniffer()
        results = [sniffer.feed(wire[i : i + 1]) for i in range(len(wire))]
        found = [r for r in results if r is not None]
        assert len(found) == 1
        assert found[0].version_name == "Paper 1.21.4"
        assert sniffer.done

    def test_garbage_gives_up_quietly(self) -> None:
        sniffer = StatusSniffer()
        assert sniffer.feed(b"\xff\xff\xff\xff\xff\xff") is None
        assert sniffer.done
        assert sniffer.feed(status_response("{}")) is None

    def test_oversized_frame_gives_up(self) -> None:
        sniffer = StatusSniffer(max_frame=16)
        assert sniffer.feed(status_response(json.dumps(SAMPLE_STATUS))) is None
        assert sniffer.done


class TestStatusMemory:
    def test_placeholder_when_nothing_known_is_upstreams_exact_status(self) -> None:
        memory = StatusMemory()
        assert memory.status_json("mc.example.com", "asleep", 758) == status_json("asleep", 758)
        assert memory.legacy_response("mc.example.com", "asleep") == legacy_kick("asleep")

    def test_truthful_entry_from_remembered_status(self) -> None:
        memory = StatusMemory()
        memory.remember("mc.example.com", SAMPLE)
        doc = json.loads(memory.status_json("mc.example.com", "Starting\u2026", 770))
        assert doc == {
            # The client's protocol, so the entry never shows as incompatible (see docstring).
            "version": {"name": "Paper 1.21.4", "protocol": 770},
            "players": {"max": 20, "online": 0},  # no sample: nobody is on a sleeping server
            "description": {"text": "Starting\u2026"},
            "favicon": SAMPLE.favicon,
        }

    def test_remembered_protocol_when_asked(self) -> None:
        memory = StatusMemory(echo_client_protocol=False)
        memory.remember("k", SAMPLE)
        assert json.loads(memory.status_json("k", "zzz", 770))["version"]["protocol"] == 769
        memory.remember("k", parse_status('{"description": "x"}'))
        assert json.loads(memory.status_json("k", "zzz", 770))["version"]["protocol"] == 770

    def test_missing_fields_fall_back_to_placeholder_values(self) -> None:
        memory = StatusMemory()
        memory.remember("k", parse_status('{"players": {"max": -5}}'))
        assert json.loads(memory.status_json("k", "zzz", 47)) == {
            "version": {"name": "1.7+", "protocol": 47},
            "players": {"max": 1, "online": 0},
            "description": {"text": "zzz"},
        }

    def test_legacy_answer_uses_real_name_and_max(self) -> None:
        memory = StatusMemory()
        memory.remember("k", SAMPLE)
        assert memory.legacy_response("k", "zzz") == legacy_kick(
            "zzz", version_name="Paper 1.21.4", max_players=20
        )

    def test_latest_wins_forget_and_bound(self) -> None:
        memory = StatusMemory(max_entries=2)
        memory.remember("a", SAMPLE)
        newer = parse_status('{"version": {"name": "1.20.1", "protocol": 763}}')
        memory.remember("a", newer)
        assert memory.get("a") is newer
        memory.remember("b", SAMPLE)
        memory.remember("c", SAMPLE)  # evicts the least recently remembered ("a")
        assert memory.get("a") is None
        assert len(memory) == 2
        memory.forget("b")
        assert memory.get("b") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def probe(address: str, protocol: int = 769) -> StatusInfo:
    return await fetch_status(
        address, server_address="mc.example.com", protocol_version=protocol, timeout=2
    )


class TestStatusCache:
    async def test_concurrent_pings_share_one_backend_fetch(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers(mode="silent")
        cache = StatusCache(5.0)
        pings = [
            asyncio.create_task(cache.get("mc", 769, lambda: probe(server.address)))
            for _ in range(20)
        ]
        await server.accepted.get()
        server.release.set()
        results = await asyncio.gather(*pings)
        assert {id(r) for r in results} == {id(results[0])}
        assert server.connections == 1
        assert cache.fetches == 1

    async def test_fresh_within_ttl_then_refetched(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers()
        clock = Clock()
        cache = StatusCache(5.0, clock=clock)
        first = await cache.get("mc", 769, lambda: probe(server.address))
        clock.now += 4.9
        assert await cache.get("mc", 769, lambda: probe(server.address)) is first
        assert server.connections == 1
        clock.now += 0.1  # TTL reached
        assert cache.peek("mc", 769) is None
        second = await cache.get("mc", 769, lambda: probe(server.address))
        assert second is not first
        assert server.connections == 2

    async def test_entries_per_protocol_version(self, status_servers: StatusServerFactory) -> None:
        server = await status_servers()
        cache = StatusCache(5.0)
        await cache.get("mc", 769, lambda: probe(server.address, 769))
        await cache.get("mc", 47, lambda: probe(server.address, 47))
        await cache.get("mc", 769, lambda: probe(server.address, 769))
        assert [h.protocol_version for h in server.handshakes] == [769, 47]

    async def test_stale_entry_served_while_backend_fails(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers()
        address = server.address
        clock = Clock()
        cache = StatusCache(1.0, clock=clock)
        assert cache.max_stale == DEFAULT_STALE_FACTOR * 1.0
        good = await cache.get("mc", 769, lambda: probe(address))
        await server.aclose()  # the backend goes away: refused from now on
        clock.now += 9.9
        assert await cache.get("mc", 769, lambda: probe(address)) is good
        clock.now += 0.1  # max_stale reached: the failure shows
        with pytest.raises(ProbeError):
            await cache.get("mc", 769, lambda: probe(address))
        assert cache.fetches == 3

    async def test_failure_without_entry_propagates(
        self, status_servers: StatusServerFactory
    ) -> None:
        server = await status_servers(mode="garbage")
        cache = StatusCache(1.0)
        with pytest.raises(ProbeError, match="invalid status response"):
            await cache.get("mc", 769, lambda: probe(server.address))
        assert len(cache) == 0

    async def test_concurrent_pings_share_a_failure_and_the_stale_entry(self) -> None:
        clock = Clock()
        cache = StatusCache(1.0, max_stale=30.0, clock=clock)
        calls = 0
        gate = asyncio.Event()

        async def fetch() -> StatusInfo:
            nonlocal calls
            calls += 1
            if calls == 1:
                return SAMPLE
            await gate.wait()
            raise ProbeError("backend down")

        await cache.get("mc", 769, fetch)
        clock.now += 20
        pings = [asyncio.create_task(cache.get("mc", 769, fetch)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        assert all(r is SAMPLE for r in await asyncio.gather(*pings))
        assert calls == 2

    async def test_a_caller_giving_up_does_not_cancel_the_shared_fetch(self) -> None:
        cache = StatusCache(5.0)
        gate = asyncio.Event()

        async def fetch() -> StatusInfo:
            await gate.wait()
            return SAMPLE

        impatient = asyncio.create_task(cache.get("mc", 769, fetch))
        patient = asyncio.create_task(cache.get("mc", 769, fetch))
        await asyncio.sleep(0)
        impatient.cancel()
        gate.set()
        assert await patient is SAMPLE
        assert cache.peek("mc", 769) is SAMPLE

    async def test_invalidate_bound_and_close(self) -> None:
        cache = StatusCache(5.0, max_entries=3)

        async def fetch() -> StatusInfo:
            return SAMPLE

        for protocol in (1, 2, 3, 4):
            await cache.get("mc", protocol, fetch)
        assert len(cache) == 3  # made-up protocol numbers cannot grow the table
        assert cache.peek("mc", 1) is None
        await cache.get("other", 1, fetch)
        cache.invalidate("mc")
        assert len(cache) == 1
        assert cache.peek("other", 1) is SAMPLE

        hang = asyncio.Event()

        async def stuck() -> StatusInfo:
            await hang.wait()
            return SAMPLE

        pending = asyncio.create_task(cache.get("slow", 1, stuck))
        await asyncio.sleep(0)
        await cache.aclose()
        with pytest.raises(asyncio.CancelledError):
            await pending

    def test_ttl_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            StatusCache(0)
