"""Client filtering (spec §4.3, Q30 fixed) and PROXY protocol in and out (§4.2, §4.9)."""

from __future__ import annotations

import socket
import struct

import pytest

from mc_router.errors import ConfigError
from mc_router.protocol import PROXY_V2_SIGNATURE, build_proxy_v2, parse_proxy_header
from mc_router.protocol.proxy import ProxyHeader
from mc_router.relay.clientfilter import ClientFilter
from tests.conftest import RouterFactory
from tests.fakes import FakeBackend, connect, login_hello, read_exactly, read_to_eof


# Upstream's TestClientFilter_Allow table (spec §4.3 / §12).
@pytest.mark.parametrize(
    ("allow", "deny", "client", "allowed"),
    [
        ((), (), "192.168.1.1", True),
        (("192.168.1.1",), (), "192.168.1.1", True),
        (("192.168.1.1",), (), "192.168.1.2", False),
        (("192.168.1.0/8",), (), "192.168.1.2", True),
        (("192.168.1.0/8", "192.168.2.5"), (), "192.168.1.2", True),
        (("192.168.1.0/8", "192.168.2.5"), (), "192.168.2.5", True),
        ((), ("192.168.2.5",), "192.168.2.5", False),
        ((), ("192.168.2.5",), "192.168.1.1", True),
        (("192.168.1.6",), ("192.168.1.0/8",), "192.168.1.6", True),
        # Q30 fixed: IPv4-mapped clients match IPv4 CIDRs and single IPs alike.
        (("192.168.0.0/16",), (), "::ffff:192.168.1.2", True),
        ((), ("10.0.0.0/8",), "::ffff:10.1.2.3", False),
    ],
)
def test_client_filter_table(
    allow: tuple[str, ...], deny: tuple[str, ...], client: str, allowed: bool
) -> None:
    assert ClientFilter.from_lists(allow, deny).allows(client) is allowed


@pytest.mark.parametrize(("allow", "deny"), [(("7",), ()), ((), ("7",)), (("1.2.3.4/99",), ())])
def test_client_filter_rejects_invalid_entries(
    allow: tuple[str, ...], deny: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError):
        ClientFilter.from_lists(allow, deny)


async def test_ipv4_client_on_dual_stack_listener_matches_ipv4_cidr(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    # A dual-stack socket reports IPv4 clients as ::ffff:127.0.0.1 (the case upstream misses).
    mapping = {"mc.example.com": backend.address}
    async with router_factory(
        listen_host="::ffff:127.0.0.1", mapping=mapping, clients_to_allow=("127.0.0.0/8",)
    ) as router:
        assert router.addresses[0][0] == "::ffff:127.0.0.1"
        async with connect(router.port) as (_, writer):
            hello = login_hello("mc.example.com")
            writer.write(hello)
            conn = await backend.next_connection()
            assert await read_exactly(conn, len(hello)) == hello
    async with (
        router_factory(
            listen_host="::ffff:127.0.0.1", mapping=mapping, clients_to_deny=("127.0.0.0/8",)
        ) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(login_hello("mc.example.com"))
        assert await read_to_eof(reader) == b""
    assert backend.accepted == 1


async def test_allow_list_wins_over_deny(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with (
        router_factory(
            mapping={"mc.example.com": backend.address},
            clients_to_allow=("127.0.0.1",),
            clients_to_deny=("127.0.0.0/8",),
        ) as router,
        connect(router.port) as (_, writer),
    ):
        writer.write(login_hello("mc.example.com"))
        await backend.next_connection()


async def test_proxy_v2_header_is_sent_before_the_replay(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    hello = login_hello("mc.example.com")
    async with (
        router_factory(
            mapping={"mc.example.com": backend.address}, use_proxy_protocol=True
        ) as router,
        connect(router.port) as (_, writer),
    ):
        writer.write(hello)
        client_port = writer.get_extra_info("sockname")[1]
        conn = await backend.next_connection()
        header = await read_exactly(conn, 28)
        assert header == build_proxy_v2(("127.0.0.1", client_port), ("127.0.0.1", router.port))
        assert header[:12] == PROXY_V2_SIGNATURE
        assert header[12:16] == bytes.fromhex("2111000c")
        assert header[16:24] == socket.inet_aton("127.0.0.1") * 2
        assert struct.unpack("!HH", header[24:28]) == (client_port, router.port)
        assert await read_exactly(conn, len(hello)) == hello


def _v2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    return build_proxy_v2(source, destination)


@pytest.mark.parametrize(
    ("trusted", "expected_source"),
    [
        ((), ("203.0.113.7", 50123)),  # empty list: every header is believed (upstream)
        (("127.0.0.0/8",), ("203.0.113.7", 50123)),
        (("10.0.0.0/8",), None),  # untrusted peer: header read and discarded
    ],
)
async def test_received_proxy_header_is_believed_only_from_trusted_peers(
    router_factory: RouterFactory,
    backend: FakeBackend,
    trusted: tuple[str, ...],
    expected_source: tuple[str, int] | None,
) -> None:
    hello = login_hello("mc.example.com")
    incoming = _v2(("203.0.113.7", 50123), ("198.51.100.1", 25565))
    async with (
        router_factory(
            mapping={"mc.example.com": backend.address},
            receive_proxy_protocol=True,
            trusted_proxies=trusted,
            use_proxy_protocol=True,
        ) as router,
        connect(router.port) as (_, writer),
    ):
        writer.write(incoming + hello)
        client_port = writer.get_extra_info("sockname")[1]
        conn = await backend.next_connection()
        header = parse_proxy_header(await read_exactly(conn, 28))
        assert isinstance(header, ProxyHeader)
        if expected_source is None:
            assert header.source == ("127.0.0.1", client_port)
        else:
            assert header.source == expected_source
            assert header.destination == ("198.51.100.1", 25565)
        # The client's header itself is never forwarded; the hello follows ours directly.
        assert await read_exactly(conn, len(hello)) == hello


async def test_proxy_v1_header_and_no_header_both_work_when_receiving(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    hello = login_hello("mc.example.com")
    async with router_factory(
        mapping={"mc.example.com": backend.address}, receive_proxy_protocol=True
    ) as router:
        for prefix in (b"PROXY TCP4 203.0.113.7 198.51.100.1 50123 25565\r\n", b""):
            async with connect(router.port) as (_, writer):
                writer.write(prefix + hello)
                conn = await backend.next_connection()
                assert await read_exactly(conn, len(hello)) == hello


async def test_proxy_header_filtered_by_proxied_address(
    router_factory: RouterFactory, backend: FakeBackend
) -> None:
    async with (
        router_factory(
            mapping={"mc.example.com": backend.address},
            receive_proxy_protocol=True,
            clients_to_deny=("203.0.113.0/24",),
        ) as router,
        connect(router.port) as (reader, writer),
    ):
        writer.write(
            _v2(("203.0.113.7", 1), ("198.51.100.1", 25565)) + login_hello("mc.example.com")
        )
        assert await read_to_eof(reader) == b""
    assert backend.accepted == 0
