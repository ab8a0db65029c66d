"""End-to-end: the management plane wired into a real router (issue #4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mc_router.app import Router
from mc_router.errors import ConfigError
from tests.conftest import make_settings
from tests.fakes import FakeBackend, connect, login_hello, read_exactly
from tests.mgmt_helpers import Receiver, dead_port


async def test_everything_wired(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    async with FakeBackend() as backend, Receiver() as receiver:
        routes.write_text(json.dumps({"mappings": {"MC.example": f"127.0.0.1:{backend.port}"}}))
        settings = make_settings(
            api_binding="127.0.0.1:0",
            routes_config=str(routes),
            routes_config_watch=True,
            webhook_url=receiver.url,
            webhook_events=("connect", "disconnect", "route-added"),
            metrics_backend="prometheus",
            record_logins=True,
        )
        async with Router(settings) as router, aiohttp.ClientSession() as http:
            assert router.api is not None
            url = router.api.url
            # replay of the file route at attach time
            first = (await receiver.next()).json
            assert first["event"] == "route-added" and first["server"] == "mc.example"
            async with http.get(url + "/readyz") as r:
                assert r.status == 200, await r.text()
            hello = login_hello("MC.example", "Alex")
            async with connect(router.port) as (_reader, writer):
                writer.write(hello)
                conn = await backend.next_connection()
                await read_exactly(conn, len(hello))
                event = (await receiver.next()).json
                assert (event["event"], event["status"], event["server"]) == (
                    "connect",
                    "success",
                    "MC.example",
                )
                assert event["player"]["name"] == "Alex"
                conn.writer.close()
            event = (await receiver.next()).json
            assert event["event"] == "disconnect"
            async with http.get(url + "/metrics") as r:
                text = await r.text()
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            assert fams["mc_router_backend_connections"].samples[0].labels["host"] == "mc.example"
            assert 'mc_router_frontend_connections{side="frontend"} 1' in text
            assert "mc_router_server_logins" in fams
            assert "mc_router_rate_limit_available" in fams
            async with http.post(
                url + "/routes", json={"serverAddress": "b", "backend": "b:1"}
            ) as r:
                assert r.status == 201
            assert json.loads(routes.read_text())["mappings"] == {
                "mc.example": f"127.0.0.1:{backend.port}",
                "b": "b:1",
            }
            # SIGHUP-equivalent with a bad file keeps routes
            routes.write_text("{bad")
            router.reload()
            assert router.table.get("b") is not None
            async with http.get(url + "/readyz") as r:
                assert r.status == 503
            routes.write_text('{"mappings":{"c":"c:1"}}')
            router.reload()
            assert set(router.table.mappings()) == {"c"}


async def test_api_port_busy_stops_cleanly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = make_settings(
            api_binding=f"127.0.0.1:{port}",
            metrics_backend="prometheus",
            webhook_url=f"http://127.0.0.1:{dead_port()}/",
        )
        router = Router(settings)
        with pytest.raises(ConfigError, match="could not start the API server"):
            async with router:
                pass


def test_influx_refused() -> None:
    with pytest.raises(ConfigError, match="influxdb"):
        Router(make_settings(metrics_backend="influxdb"))


def test_bad_routes_file_refused(tmp_path: Path) -> None:
    routes = tmp_path / "r.json"
    routes.write_text('{"mappings": {"a": 1}}')

    async def main() -> None:
        async with Router(make_settings(routes_config=str(routes))):
            pass

    with pytest.raises(ConfigError, match=r'mappings\["a"\]'):
        asyncio.run(main())


async def test_real_sighup_subprocess(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text('{"mappings":{"a":"a:1"}}')
    api_port = dead_port()
    env = {**os.environ, "PYTHONPATH": str(Path.cwd() / "src")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mc_router",
        "-port",
        "0",
        "-routes-config",
        str(routes),
        "-api-binding",
        f"127.0.0.1:{api_port}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            while b"Listening for Minecraft" not in (line := await proc.stdout.readline()):
                assert line, "exited"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{api_port}/routes") as r:
                assert set(await r.json()) == {"a"}
            routes.write_text('{"mappings":{"b":"b:1"}}')
            proc.send_signal(signal.SIGHUP)
            async with asyncio.timeout(10):
                while b"Re-loading routes config file" not in (
                    line := await proc.stdout.readline()
                ):
                    assert line
            async with http.get(f"http://127.0.0.1:{api_port}/routes") as r:
                assert set(await r.json()) == {"b"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
