"""The HTTP waker against a real local control plane: the contract, every failure, single flight."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mc_router.automc.waker import ControlPlane, ServerWaker, parse_base_url
from mc_router.errors import ConfigError, WakeError
from tests.automc.conftest import FakeControlPlane, logged, running_reply, state_reply

FAST: dict[str, Any] = {"poll_interval": 0.02, "timeout": 5.0, "request_timeout": 2.0}
TOKEN = "t0ken-abc"


@contextlib.asynccontextmanager
async def client(url: str, token: str = TOKEN, **options: Any) -> AsyncIterator[ControlPlane]:
    async with ControlPlane(url, token, **{**FAST, **options}) as plane:
        yield plane


async def test_happy_path_posts_and_polls_until_running(control_plane: FakeControlPlane) -> None:
    control_plane.status_replies = [
        state_reply("stopped"),
        state_reply("starting"),
        running_reply("10.1.2.3:25570"),
    ]
    async with client(control_plane.url) as plane:
        waker = plane.waker("lobby")
        assert isinstance(waker, ServerWaker)
        assert await waker.wake() == "10.1.2.3:25570"
    # The first GET overlaps the POST (one round trip for a running server); the rest poll.
    assert sorted((m, p) for m, p, _ in control_plane.requests) == [
        ("GET", "/servers/lobby"),
        ("GET", "/servers/lobby"),
        ("GET", "/servers/lobby"),
        ("POST", "/servers/lobby/start"),
    ]
    # The token goes with every request.
    assert {key for _, _, key in control_plane.requests} == {TOKEN}


async def test_running_at_once_needs_one_get(control_plane: FakeControlPlane) -> None:
    async with client(control_plane.url, poll_interval=60) as plane:
        assert await plane.wake("lobby") == "10.0.0.1:25565"
    assert (control_plane.posts, control_plane.gets) == (1, 1)


async def test_409_means_already_starting(control_plane: FakeControlPlane) -> None:
    control_plane.start_reply = (409, '{"error":"already starting"}')
    async with client(control_plane.url) as plane:
        assert await plane.wake("lobby") == "10.0.0.1:25565"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_any_2xx_start_is_fine(control_plane: FakeControlPlane, status: int) -> None:
    control_plane.start_reply = (status, "")
    async with client(control_plane.url) as plane:
        assert await plane.wake("lobby") == "10.0.0.1:25565"


async def test_no_token_no_header(control_plane: FakeControlPlane) -> None:
    async with client(control_plane.url, token="") as plane:
        await plane.wake("lobby")
    assert {key for _, _, key in control_plane.requests} == {None}


async def test_server_name_is_one_path_segment(control_plane: FakeControlPlane) -> None:
    async with client(control_plane.url + "/api/") as plane:
        await plane.wake("a b/c?d#é")
    paths = sorted(p for _, p, _ in control_plane.requests)
    assert paths == [
        "/api/servers/a%20b%2Fc%3Fd%23%C3%A9",
        "/api/servers/a%20b%2Fc%3Fd%23%C3%A9/start",
    ]


async def test_slow_start_keeps_polling(control_plane: FakeControlPlane) -> None:
    control_plane.status_replies = [state_reply("starting")] * 10 + [running_reply("h:1")]
    async with client(control_plane.url) as plane:
        assert await plane.wake("lobby") == "h:1"
    assert control_plane.gets == 11


@pytest.mark.parametrize(
    ("start_reply", "status_replies", "message"),
    [
        ((500, "boom"), [running_reply("h:1")], "control plane answered 500 to the start request"),
        ((404, ""), [running_reply("h:1")], "control plane answered 404 to the start request"),
        ((401, ""), [running_reply("h:1")], "control plane answered 401 to the start request"),
        ((202, ""), [(503, "busy")], "control plane answered 503 to the status request"),
        ((202, ""), [(200, "<html>")], "control plane sent invalid JSON"),
        ((202, ""), [(200, '["running"]')], "control plane sent JSON that is not an object"),
        ((202, ""), [(200, '{"state":"running"}')], "reported running without an address"),
        ((202, ""), [(200, '{"state":"running","address":""}')], "running without an address"),
        ((202, ""), [(200, '{"state":"running","address":7}')], "running without an address"),
        ((202, ""), [(200, '{"state":"running","address":"h"}')], "an unusable address"),
    ],
)
async def test_control_plane_failures_raise_wake_error(
    control_plane: FakeControlPlane,
    caplog: pytest.LogCaptureFixture,
    start_reply: tuple[int, str],
    status_replies: list[tuple[int, str]],
    message: str,
) -> None:
    control_plane.start_reply = start_reply
    control_plane.status_replies = status_replies
    async with client(control_plane.url) as plane:
        with pytest.raises(WakeError, match=message) as caught:
            await plane.wake("lobby")
    assert str(caught.value).startswith("control plane")
    # The log says why (with the body the player never sees), and never the token.
    text = logged(caplog)
    assert "automc: wake failed" in text
    assert message.split(" to the ", maxsplit=1)[0] in text
    assert TOKEN not in text


async def test_control_plane_down(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    async with client(f"http://127.0.0.1:{port}") as plane:
        with pytest.raises(WakeError, match="control plane unreachable"):
            await plane.wake("lobby")
    assert "control plane unreachable" in logged(caplog)


async def test_gives_up_after_the_timeout(control_plane: FakeControlPlane) -> None:
    control_plane.status_replies = [state_reply("starting")]
    async with client(control_plane.url, timeout=0.2) as plane:
        with pytest.raises(WakeError, match=r"did not start within 0.2 s"):
            await plane.wake("lobby")
    assert control_plane.gets >= 2


async def test_a_hung_control_plane_times_out() -> None:
    # Accepts connections but never answers.
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client(f"http://127.0.0.1:{port}", request_timeout=0.2) as plane:
            with pytest.raises(WakeError, match=r"did not answer within 0.2 s"):
                await plane.wake("lobby")
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_concurrent_wakes_share_one_post(control_plane: FakeControlPlane) -> None:
    control_plane.start_gate = asyncio.Event()
    control_plane.status_replies = [state_reply("starting"), running_reply("h:9")]
    async with client(control_plane.url) as plane:
        waiters = [asyncio.create_task(plane.wake("lobby")) for _ in range(20)]
        await control_plane.started.wait()
        control_plane.start_gate.set()
        assert await asyncio.gather(*waiters) == ["h:9"] * 20
        assert control_plane.posts == 1
        assert plane.starts == 1
        # A later login after the wake finished starts a new one.
        assert await plane.wake("lobby") == "h:9"
        assert control_plane.posts == 2


async def test_concurrent_failure_reaches_everyone_and_the_next_login_retries(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.start_gate = asyncio.Event()
    control_plane.start_reply = (500, "")
    async with client(control_plane.url) as plane:
        waiters = [asyncio.create_task(plane.wake("lobby")) for _ in range(5)]
        await control_plane.started.wait()
        control_plane.start_gate.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, WakeError) for r in results)
        assert control_plane.posts == 1
        control_plane.start_reply = (202, "")
        assert await plane.wake("lobby") == "10.0.0.1:25565"
        assert control_plane.posts == 2


async def test_different_servers_wake_independently(control_plane: FakeControlPlane) -> None:
    async with client(control_plane.url) as plane:
        await asyncio.gather(plane.wake("a"), plane.wake("b"))
    assert control_plane.posts == 2


async def test_a_caller_that_leaves_does_not_cancel_the_wake_for_others(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.start_gate = asyncio.Event()
    async with client(control_plane.url) as plane:
        leaver = asyncio.create_task(plane.wake("lobby"))
        stayer = asyncio.create_task(plane.wake("lobby"))
        await control_plane.started.wait()
        leaver.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaver
        control_plane.start_gate.set()
        assert await stayer == "10.0.0.1:25565"
        assert control_plane.posts == 1


async def test_close_fails_wakes_in_flight_with_wake_error(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.start_gate = asyncio.Event()
    plane = ControlPlane(control_plane.url, **FAST)
    await plane.__aenter__()
    waiter = asyncio.create_task(plane.wake("lobby"))
    await control_plane.started.wait()
    await plane.close()
    with pytest.raises(WakeError, match="shutting down"):
        await waiter
    with pytest.raises(WakeError, match="not running"):
        await plane.wake("lobby")


async def test_a_wake_nobody_waits_for_any_more_still_completes_quietly(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.start_gate = asyncio.Event()
    control_plane.start_reply = (500, "")
    async with client(control_plane.url) as plane:
        leaver = asyncio.create_task(plane.wake("lobby"))
        await control_plane.started.wait()
        leaver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaver
        control_plane.start_gate.set()
        # The failed, unobserved wake must not warn ("exception never retrieved"): the next
        # login simply starts a new one.
        control_plane.start_reply = (202, "")
        assert await plane.wake("lobby") == "10.0.0.1:25565"


@pytest.mark.parametrize("url", ["", "ftp://x", "localhost:8080", "http://"])
def test_waker_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError, match="AUTOMC_WAKER_URL"):
        parse_base_url(url)


async def test_token_is_not_in_repr_or_logs(
    control_plane: FakeControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(control_plane.url) as plane:
        await plane.waker("lobby").wake()
        assert TOKEN not in repr(plane.waker("lobby"))
    assert TOKEN not in logged(caplog)


async def test_a_running_server_costs_one_round_trip(control_plane: FakeControlPlane) -> None:
    # Hold the POST: the GET answering "running" must not wait for it to be *sent* first,
    # only for it to *succeed* (the two overlap).
    control_plane.start_gate = asyncio.Event()
    async with client(control_plane.url, poll_interval=60) as plane:
        wake = asyncio.create_task(plane.wake("lobby"))
        await asyncio.wait_for(control_plane.started.wait(), 5)
        await asyncio.wait_for(control_plane.polled.wait(), 5)
        assert not wake.done()
        control_plane.start_gate.set()
        assert await wake == "10.0.0.1:25565"


async def test_start_failure_fails_the_wake_even_if_running(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.start_reply = (500, "boom")
    async with client(control_plane.url, poll_interval=60) as plane:
        with pytest.raises(WakeError, match="500"):
            await plane.wake("lobby")
