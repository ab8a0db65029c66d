"""The webhook scaler (§6.5) against a real aiohttp receiver and real status servers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from mc_router.errors import WakeError
from mc_router.scaling.status_memory import StatusInfo
from mc_router.scaling.webhook import (
    MAX_RESPONSE_BODY,
    ScaleError,
    WebhookScaler,
    canonical_header_key,
    parse_scale_response_backend,
    scale_request_body,
)
from tests.scaling.conftest import StatusServerFactory

SECRET = "Bearer s3cr3t-t0ken"
DEAD_BACKEND = "10.255.255.1:25565"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1:0; `handler` scripts the answer (default 200 "")."""

    seen: list[Seen] = field(default_factory=list)
    handler: Handler | None = None
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(request.method, request.path, dict(request.headers), await request.read())
        )
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.port = int(runner.addresses[0][1])
    yield recv
    await runner.cleanup()


@pytest.fixture
async def scalers() -> AsyncIterator[Callable[..., WebhookScaler]]:
    made: list[WebhookScaler] = []

    def make(url: str, **kwargs: object) -> WebhookScaler:
        kwargs.setdefault("probe_interval", 0.02)
        scaler = WebhookScaler(url, **kwargs)  # type: ignore[arg-type]
        made.append(scaler)
        return scaler

    yield make
    for scaler in made:
        await scaler.aclose()


def body(action: str, server_address: str, backend: str) -> bytes:
    return (
        b'{"action":"'
        + action.encode()
        + b'","serverAddress":"'
        + server_address.encode()
        + b'","backend":"'
        + backend.encode()
        + b'"}'
    )


class TestWaker:
    async def test_posts_up_and_returns_configured_backend_once_it_answers_status(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        backend = await status_servers()
        ready: list[tuple[str, StatusInfo]] = []
        scaler = scalers(
            receiver.url(),
            headers={"authorization": SECRET, "x-extra": "1"},
            timeout=0,
            on_ready=lambda key, status: ready.append((key, status)),
        )
        waker = scaler.waker("MC.example.com", backend.address)
        assert waker is not None
        assert await waker.wake() == backend.address
        [request] = receiver.seen
        assert request.method == "POST"
        assert request.path == "/hook"
        assert request.body == body("up", "MC.example.com", backend.address)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Authorization"] == SECRET
        assert request.headers["X-Extra"] == "1"
        assert request.headers["Content-Length"] == str(len(request.body))
        # Readiness is a status ping carrying the route's address, not a bare TCP connect.
        assert [h.server_address for h in backend.handshakes] == ["MC.example.com"]
        assert [key for key, _ in ready] == ["mc.example.com"]
        assert ready[0][1].version_name == "Paper 1.21.4"

    async def test_every_wake_posts_up_again_q17(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        backend = await status_servers()
        waker = scalers(receiver.url()).waker("a", backend.address)
        assert waker is not None
        await waker.wake()
        await waker.wake()
        assert [json.loads(s.body)["action"] for s in receiver.seen] == ["up", "up"]

    async def test_uses_backend_from_response(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        live = await status_servers()

        async def answer(request: web.Request) -> web.Response:
            return web.Response(text=json.dumps({"backend": live.address}) + "\n")

        receiver.handler = answer
        waker = scalers(receiver.url()).waker("mc.example.com", DEAD_BACKEND)
        assert waker is not None
        assert await waker.wake() == live.address
        assert receiver.seen[0].body == body("up", "mc.example.com", DEAD_BACKEND)

    async def test_falls_back_when_response_is_not_an_override(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        backend = await status_servers()

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        receiver.handler = ok
        waker = scalers(receiver.url()).waker("a", backend.address)
        assert waker is not None
        assert await waker.wake() == backend.address

    async def test_override_cut_at_4096_bytes_is_ignored(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        backend = await status_servers()
        long = json.dumps({"pad": "x" * MAX_RESPONSE_BODY, "backend": DEAD_BACKEND})

        async def answer(request: web.Request) -> web.Response:
            return web.Response(text=long)

        receiver.handler = answer
        waker = scalers(receiver.url()).waker("a", backend.address)
        assert waker is not None
        assert await waker.wake() == backend.address

    async def test_error_status_is_a_wake_error(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def fail(request: web.Request) -> web.Response:
            return web.Response(status=500)

        receiver.handler = fail
        waker = scalers(receiver.url()).waker("a", DEAD_BACKEND)
        assert waker is not None
        with pytest.raises(
            WakeError, match=r"^scale-up webhook failed: webhook responded with status 500$"
        ):
            await waker.wake()

    async def test_backend_never_answering_status_times_out(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        silent = await status_servers(mode="silent")  # port open, no status: not ready
        waker = scalers(receiver.url(), wake_timeout=0.3, probe_attempt_timeout=0.1).waker(
            "a", silent.address
        )
        assert waker is not None
        with pytest.raises(
            WakeError, match=f"timeout waiting for backend to become ready at {silent.address}"
        ):
            await waker.wake()
        assert silent.connections >= 2

    async def test_unreachable_webhook(self, scalers: Callable[..., WebhookScaler]) -> None:
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        waker = scalers(f"http://127.0.0.1:{port}/hook").waker("a", DEAD_BACKEND)
        assert waker is not None
        with pytest.raises(
            WakeError, match=rf'^scale-up webhook failed: Post "http://127.0.0.1:{port}/hook": '
        ):
            await waker.wake()


class TestSleeper:
    async def test_posts_down(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def no_content(request: web.Request) -> web.Response:
            return web.Response(status=204)

        receiver.handler = no_content
        sleeper = scalers(receiver.url()).sleeper("mc.example.com", "10.0.0.5:25565")
        assert sleeper is not None
        await sleeper.sleep()
        assert receiver.seen[0].body == body("down", "mc.example.com", "10.0.0.5:25565")

    async def test_error_on_500(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def fail(request: web.Request) -> web.Response:
            return web.Response(status=500, text='{"backend": "ignored"}')

        receiver.handler = fail
        sleeper = scalers(receiver.url()).sleeper("a", "10.0.0.5:25565")
        assert sleeper is not None
        with pytest.raises(
            ScaleError, match=r"^scale-down webhook failed: webhook responded with status 500$"
        ):
            await sleeper.sleep()

    @pytest.mark.parametrize("status", [200, 202, 204, 304, 399])
    async def test_below_400_is_success_q18(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler], status: int
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=status)

        receiver.handler = answer
        sleeper = scalers(receiver.url()).sleeper("a", "b:1")
        assert sleeper is not None
        await sleeper.sleep()

    @pytest.mark.parametrize("status", [400, 404, 503])
    async def test_400_and_above_fail(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler], status: int
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=status)

        receiver.handler = answer
        sleeper = scalers(receiver.url()).sleeper("a", "b:1")
        assert sleeper is not None
        with pytest.raises(ScaleError, match=f"status {status}"):
            await sleeper.sleep()


class TestRedirects:
    """Followed as Go follows them: 301/302/303 become a GET, 307/308 repeat the POST."""

    @pytest.mark.parametrize(
        ("status", "method"),
        [(301, "GET"), (302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")],
    )
    async def test_follow(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status: int,
        method: str,
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            if request.path == "/hook":
                return web.Response(status=status, headers={"Location": "/moved"})
            return web.Response(status=204)

        receiver.handler = answer
        sleeper = scalers(receiver.url(), headers={"X-Api-Key": "k"}).sleeper("a", "b:1")
        assert sleeper is not None
        await sleeper.sleep()
        first, second = receiver.seen
        assert (first.method, first.path) == ("POST", "/hook")
        assert (second.method, second.path) == (method, "/moved")
        assert second.body == (first.body if method == "POST" else b"")
        assert second.headers["X-Api-Key"] == "k"

    async def test_redirect_to_an_error_fails(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            if request.path == "/hook":
                return web.Response(status=307, headers={"Location": "/gone"})
            return web.Response(status=410)

        receiver.handler = answer
        sleeper = scalers(receiver.url()).sleeper("a", "b:1")
        assert sleeper is not None
        with pytest.raises(ScaleError, match="status 410"):
            await sleeper.sleep()

    async def test_redirect_loop_stops_after_10(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=307, headers={"Location": "/hook"})

        receiver.handler = answer
        sleeper = scalers(receiver.url()).sleeper("a", "b:1")
        assert sleeper is not None
        with pytest.raises(ScaleError, match="scale-down webhook failed"):
            await sleeper.sleep()
        # Go refuses the 10th redirect ("stopped after 10 redirects"): 10 requests in all.
        assert len(receiver.seen) == 10

    async def test_redirect_without_location_is_success(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        async def answer(request: web.Request) -> web.Response:
            return web.Response(status=302)

        receiver.handler = answer
        sleeper = scalers(receiver.url()).sleeper("a", "b:1")
        assert sleeper is not None
        await sleeper.sleep()


class TestTimeouts:
    async def test_timeout_covers_the_exchange(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        never = asyncio.Event()

        async def hang(request: web.Request) -> web.Response:
            await never.wait()
            return web.Response()

        receiver.handler = hang
        scaler = scalers(receiver.url(), timeout=0.2)
        sleeper = scaler.sleeper("a", "b:1")
        waker = scaler.waker("a", "b:1")
        assert sleeper is not None and waker is not None
        with pytest.raises(
            ScaleError, match=r'Post "http://127.0.0.1:\d+/hook": timeout after 0.2s'
        ):
            await sleeper.sleep()
        with pytest.raises(WakeError, match=r"timeout after 0\.2s"):
            await waker.wake()
        never.set()

    async def test_zero_means_no_timeout(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        gate = asyncio.Event()
        arrived = asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            arrived.set()
            await gate.wait()
            return web.Response(status=204)

        receiver.handler = slow
        sleeper = scalers(receiver.url(), timeout=0).sleeper("a", "b:1")
        assert sleeper is not None
        task = asyncio.create_task(sleeper.sleep())
        await arrived.wait()
        assert not task.done()
        gate.set()
        await task

    async def test_slow_body_means_no_override(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
    ) -> None:
        backend = await status_servers()
        never = asyncio.Event()

        async def stall(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=200)
            response.content_length = 100
            await response.prepare(request)
            await response.write(b'{"backend": ')
            await never.wait()
            return response

        receiver.handler = stall
        waker = scalers(receiver.url(), timeout=0.3).waker("a", backend.address)
        assert waker is not None
        assert await waker.wake() == backend.address
        never.set()


class TestRouteFunctions:
    def test_none_without_url(self) -> None:
        scaler = WebhookScaler("")
        assert scaler.waker("a", "b:1") is None
        assert scaler.sleeper("a", "b:1") is None
        assert scaler.route_functions("a", "b:1") == (None, None, "")

    def test_none_for_empty_backend_q13(self) -> None:
        scaler = WebhookScaler("http://127.0.0.1:1/hook")
        assert scaler.route_functions("", "") == (None, None, "")

    def test_key_is_the_configured_backend(self) -> None:
        scaler = WebhookScaler("http://127.0.0.1:1/hook")
        waker, sleeper, key = scaler.route_functions("Mc.Example.com", "10.0.0.5:25565")
        assert waker is not None and sleeper is not None
        assert (waker.server_address, waker.backend) == ("Mc.Example.com", "10.0.0.5:25565")
        assert (sleeper.server_address, sleeper.backend) == ("Mc.Example.com", "10.0.0.5:25565")
        assert key == "10.0.0.5:25565"

    async def test_closed_scaler_refuses(self, receiver: Receiver) -> None:
        scaler = WebhookScaler(receiver.url())
        await scaler.aclose()
        sleeper = scaler.sleeper("a", "b:1")
        assert sleeper is not None
        with pytest.raises(ScaleError, match="closed"):
            await sleeper.sleep()


class TestSecrets:
    async def test_header_values_and_url_secrets_never_logged(
        self,
        receiver: Receiver,
        scalers: Callable[..., WebhookScaler],
        status_servers: StatusServerFactory,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        backend = await status_servers()
        silent = await status_servers(mode="silent")
        secret_url = receiver.url("/hook").replace("http://", "http://user:pw-secret@")
        scaler = scalers(
            secret_url + "?token=q-secret",
            headers={"Authorization": SECRET, "X-Api-Key": "k-secret"},
            wake_timeout=0.2,
            probe_attempt_timeout=0.05,
        )

        async def answer(request: web.Request) -> web.Response:
            return web.Response(
                status=500 if request.method == "POST" and "down" in (await request.text()) else 200
            )

        receiver.handler = answer
        waker = scaler.waker("a", backend.address)
        slow = scaler.waker("a", silent.address)
        sleeper = scaler.sleeper("a", backend.address)
        assert waker is not None and slow is not None and sleeper is not None
        await waker.wake()
        errors: list[str] = []
        for action in (slow.wake, sleeper.sleep):
            try:
                await action()
            except Exception as exc:
                errors.append(str(exc))
        assert len(errors) == 2
        assert receiver.seen[0].headers["Authorization"] == SECRET  # really sent
        text = "\n".join(
            [repr(scaler), *errors]
            + [
                f"{r.getMessage()} {getattr(r, 'fields', '')}"
                for r in caplog.records
                if r.name.startswith("mc_router")  # not the test receiver's access log
            ]
        )
        for secret in ("s3cr3t", "k-secret", "pw-secret", "q-secret"):
            assert secret not in text
        assert "Scaling up backend via webhook" in text


class TestParseScaleResponseBackend:
    """Upstream's TestParseScaleResponseBackend, then Go's decoding edge cases."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (b'{"backend":"10.0.0.5:25565"}', "10.0.0.5:25565"),
            (b'{"backend":"  10.0.0.5:25565 "}', "10.0.0.5:25565"),
            (b'{"backend":""}', ""),
            (b"{}", ""),
            (b"", ""),
            (b"not json", ""),
            (b"OK", ""),
            # Beyond upstream's table: Go's decoder rules.
            (b'{"Backend":"a:1"}', "a:1"),
            (b'{"BACKEND":"a:1","other":[1,2]}', "a:1"),
            (b'{"backend":"a:1","backend":"b:2"}', "b:2"),
            (b'{"backend":"a:1","backend":null}', "a:1"),
            (b'{"backend":5}', ""),
            (b'{"backend":"a:1"} trailing', ""),
            (b"null", ""),
            (b'["a:1"]', ""),
            (b'"a:1"', ""),
            (b"  \n\t ", ""),
            (b'{"backend":NaN}', ""),
            (b'{"backend":"a:1"}\n', "a:1"),
        ],
    )
    def test_cases(self, raw: bytes, expected: str) -> None:
        assert parse_scale_response_backend(raw) == expected


class TestRequestFormat:
    def test_body_is_go_json(self) -> None:
        assert scale_request_body("up", "mc.example.com", "h:1") == (
            b'{"action":"up","serverAddress":"mc.example.com","backend":"h:1"}'
        )
        # Go escapes <>& and keeps other non-ASCII as UTF-8.
        assert scale_request_body("down", "<&>\u00e9", "") == (
            b'{"action":"down","serverAddress":"\\u003c\\u0026\\u003e\xc3\xa9","backend":""}'
        )
        assert scale_request_body("up", "a\udcff", "") == (
            b'{"action":"up","serverAddress":"a\xef\xbf\xbd","backend":""}'
        )

    @pytest.mark.parametrize(
        ("name", "canonical"),
        [
            ("authorization", "Authorization"),
            ("x-api-key", "X-Api-Key"),
            ("X-API-KEY", "X-Api-Key"),
            ("content-type", "Content-Type"),
            ("bad name", "bad name"),
        ],
    )
    def test_canonical_header_key(self, name: str, canonical: str) -> None:
        assert canonical_header_key(name) == canonical

    async def test_configured_header_replaces_content_type(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        sleeper = scalers(receiver.url(), headers={"content-type": "text/plain"}).sleeper(
            "a", "b:1"
        )
        assert sleeper is not None
        await sleeper.sleep()
        assert receiver.seen[0].headers["Content-Type"] == "text/plain"


class TestUserinfo:
    async def test_url_userinfo_is_basic_auth(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        url = receiver.url().replace("http://", "http://user:pw@")
        sleeper = scalers(url).sleeper("a", "b:1")
        assert sleeper is not None
        await sleeper.sleep()
        assert receiver.seen[0].headers["Authorization"] == "Basic dXNlcjpwdw=="

    async def test_configured_authorization_wins_over_userinfo(
        self, receiver: Receiver, scalers: Callable[..., WebhookScaler]
    ) -> None:
        url = receiver.url().replace("http://", "http://user:pw@")
        sleeper = scalers(url, headers={"Authorization": SECRET}).sleeper("a", "b:1")
        assert sleeper is not None
        await sleeper.sleep()
        assert receiver.seen[0].headers["Authorization"] == SECRET
