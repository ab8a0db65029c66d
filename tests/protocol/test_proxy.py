"""PROXY protocol v1/v2 parsing (spec §4.2) and v2 building (§4.9)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mc_router.errors import LocalProtocolError, RemoteProtocolError
from mc_router.protocol import (
    MAX_PROXY_V1_LENGTH,
    MAX_PROXY_V2_LENGTH,
    NEED_DATA,
    PROXY_V2_SIGNATURE,
    ProxyHeader,
    build_proxy_v2,
    parse_proxy_header,
)

from .golden import HYPOTHESIS, load_vector

APPENDIX_A = bytes.fromhex("0d0a0d0a000d0a515549540a 21 11 000c c0000201 c000020a c350 63dd")
MC = load_vector("handshake-status.hex")


def test_build_appendix_a() -> None:
    assert build_proxy_v2(("192.0.2.1", 50000), ("192.0.2.10", 25565)) == APPENDIX_A


def test_parse_appendix_a() -> None:
    header = parse_proxy_header(APPENDIX_A + MC)
    assert header == ProxyHeader("PROXY", ("192.0.2.1", 50000), ("192.0.2.10", 25565), 28)


def test_build_ipv4_mapped_local_uses_ipv4_form() -> None:
    wire = build_proxy_v2(("::ffff:192.0.2.1", 50000), ("::ffff:192.0.2.10", 25565))
    assert wire == APPENDIX_A


def test_build_ipv6_form_maps_ipv4_source() -> None:
    wire = build_proxy_v2(("192.0.2.1", 1), ("2001:db8::1%eth0", 2))
    assert wire[12:16] == bytes.fromhex("2121 0024")
    assert wire[16:32] == ipaddress.IPv6Address("::ffff:192.0.2.1").packed
    assert wire[32:48] == ipaddress.IPv6Address("2001:db8::1").packed
    assert wire[48:] == bytes.fromhex("0001 0002")
    assert len(wire) == 52


def test_build_ipv6_source_with_ipv4_local_fails() -> None:
    with pytest.raises(LocalProtocolError):
        build_proxy_v2(("2001:db8::5", 1), ("192.0.2.10", 25565))


@pytest.mark.parametrize(
    ("source", "destination"),
    [(("nope", 1), ("1.2.3.4", 2)), (("1.2.3.4", 70000), ("1.2.3.4", 2))],
)
def test_build_invalid(source: tuple[str, int], destination: tuple[str, int]) -> None:
    with pytest.raises(LocalProtocolError):
        build_proxy_v2(source, destination)


ipv4s = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6s = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ports = st.integers(0, 0xFFFF)


@HYPOTHESIS
@given(ipv4s, ports, ipv4s, ports)
def test_v2_round_trip_ipv4(
    src: ipaddress.IPv4Address, sport: int, dst: ipaddress.IPv4Address, dport: int
) -> None:
    wire = build_proxy_v2((str(src), sport), (str(dst), dport))
    assert parse_proxy_header(wire + MC) == ProxyHeader(
        "PROXY", (str(src), sport), (str(dst), dport), 28
    )


@HYPOTHESIS
@given(ipv6s, ports, ipv6s, ports)
def test_v2_round_trip_ipv6(
    src: ipaddress.IPv6Address, sport: int, dst: ipaddress.IPv6Address, dport: int
) -> None:
    if dst.ipv4_mapped is not None:
        return  # an IPv4-mapped local address selects the IPv4 form
    wire = build_proxy_v2((str(src), sport), (str(dst), dport))
    header = parse_proxy_header(wire)
    assert header == ProxyHeader("PROXY", (str(src), sport), (str(dst), dport), 52)
    for cut in range(len(wire)):
        assert parse_proxy_header(wire[:cut]) is NEED_DATA


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"PROXY TCP4 192.0.2.1 192.0.2.10 50000 25565\r\n",
            ProxyHeader("PROXY", ("192.0.2.1", 50000), ("192.0.2.10", 25565), 45),
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n",
            ProxyHeader("PROXY", ("2001:db8::1", 1), ("2001:db8::2", 65535), 44),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader("PROXY", None, None, 15)),
        (b"PROXY UNKNOWN ff:: ff:: 1 2\r\n", ProxyHeader("PROXY", None, None, 29)),
    ],
)
def test_v1(line: bytes, expected: ProxyHeader) -> None:
    assert parse_proxy_header(line + MC) == expected
    for cut in range(len(line)):
        assert parse_proxy_header(line[:cut]) is NEED_DATA


def test_v1_longest_line() -> None:
    a = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff1"
    b = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff2"
    line = f"PROXY TCP6 {a} {b} 65535 65535\r\n".encode()
    assert len(line) == MAX_PROXY_V1_LENGTH - 3  # the spec's 107 counts "UNKNOWN" padding
    header = parse_proxy_header(line)
    assert isinstance(header, ProxyHeader)
    assert header.size == len(line)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.1 192.0.2.10 50000 25565\n",  # no CR
        b"PROXY TCP4 192.0.2.1 192.0.2.10 50000\r\n",
        b"PROXY TCP4 2001:db8::1 192.0.2.10 1 2\r\n",
        b"PROXY TCP6 192.0.2.1 192.0.2.10 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.10 1 65536\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.10 -1 2\r\n",
        b"PROXY TCP4 300.0.2.1 192.0.2.10 1 2\r\n",
        b"PROXY UDP4 192.0.2.1 192.0.2.10 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.10 \xd9\xa1 2\r\n",
        b"PROXY \r\n",
        b"PROXY " + b"x" * 200,  # no CRLF within 107 bytes
    ],
)
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_proxy_header(line)


@pytest.mark.parametrize(
    "data", [MC, b"\x00", b"\xfe\x01\xfa", b"PROXX", b"PR0", b"\r\n\r\n\x01", b"\rx", b"GET /"]
)
def test_no_header(data: bytes) -> None:
    assert parse_proxy_header(data) is None


@pytest.mark.parametrize("data", [b"", b"P", b"PROX", b"PROXY", b"\r", b"\r\n\r\n\x00\r\nQUIT"])
def test_need_data_to_decide(data: bytes) -> None:
    assert parse_proxy_header(data) is NEED_DATA


def v2(ver_cmd: int, family: int, block: bytes) -> bytes:
    return PROXY_V2_SIGNATURE + bytes([ver_cmd, family]) + len(block).to_bytes(2, "big") + block


def test_v2_local() -> None:
    header = parse_proxy_header(v2(0x20, 0x11, APPENDIX_A[16:]) + MC)
    assert header == ProxyHeader("LOCAL", None, None, 28)
    assert parse_proxy_header(v2(0x20, 0x00, b"")) == ProxyHeader("LOCAL", None, None, 16)


@pytest.mark.parametrize("family", [0x00, 0x12, 0x22, 0x31, 0x32])
def test_v2_families_without_tcp_addresses(family: int) -> None:
    block = bytes(216)
    assert parse_proxy_header(v2(0x21, family, block)) == ProxyHeader("PROXY", None, None, 232)


def test_v2_tlvs_are_skipped() -> None:
    tlvs = bytes.fromhex("05 0004 deadbeef") + bytes.fromhex("04 0000")
    header = parse_proxy_header(v2(0x21, 0x11, APPENDIX_A[16:] + tlvs) + MC)
    assert header == ProxyHeader("PROXY", ("192.0.2.1", 50000), ("192.0.2.10", 25565), 38)


def test_v2_truncated_needs_data() -> None:
    for cut in range(len(APPENDIX_A)):
        assert parse_proxy_header(APPENDIX_A[:cut]) is NEED_DATA


@pytest.mark.parametrize(
    "data",
    [
        v2(0x11, 0x11, APPENDIX_A[16:]),  # version 1
        v2(0x22, 0x11, APPENDIX_A[16:]),  # command 2
        v2(0x21, 0x13, APPENDIX_A[16:]),  # transport 3
        v2(0x21, 0x41, APPENDIX_A[16:]),  # address family 4
        v2(0x21, 0x11, APPENDIX_A[16:27]),  # IPv4 block too short
        v2(0x21, 0x21, APPENDIX_A[16:]),  # IPv6 family, IPv4-sized block
        PROXY_V2_SIGNATURE + b"\x21\x11" + (MAX_PROXY_V2_LENGTH + 1).to_bytes(2, "big"),
    ],
)
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_proxy_header(data)


@HYPOTHESIS
@given(st.sampled_from([b"", b"P", b"PROXY ", PROXY_V2_SIGNATURE]), st.binary(max_size=200))
def test_garbage_only_raises_remote_protocol_errors(prefix: bytes, data: bytes) -> None:
    try:
        result = parse_proxy_header(prefix + data)
    except RemoteProtocolError:
        return
    assert result is None or result is NEED_DATA or isinstance(result, ProxyHeader)
