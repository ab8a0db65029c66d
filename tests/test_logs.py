"""Structured logging: logrus text format, fields as data, per-task context, redaction."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import pytest

from mc_router import logs
from mc_router.logs import (
    TRACE,
    LogfmtFormatter,
    bind,
    bound_fields,
    configure,
    get_logger,
    level_number,
    mask_url_password,
    redact,
    redact_fields,
)

LINE = re.compile(r"^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ level=(\w+) msg=(.*)$")


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure("trace", stream=buffer)
    yield buffer
    logs.unconfigure()


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = ListHandler()
    logger = logging.getLogger("mc_router.test_logs")
    logger.addHandler(handler)
    logger.setLevel(TRACE)
    logger.propagate = False
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


# -- format ---------------------------------------------------------------------------------------


def test_logrus_style_line(stream: io.StringIO) -> None:
    get_logger("mc_router.x").info(
        "Created route mapping", serverAddress="mc.example.com", backend="b:25565"
    )
    (line,) = _lines(stream)
    match = LINE.match(line)
    assert match is not None
    assert match.group(1) == "info"
    assert line.endswith(
        ' msg="Created route mapping" serverAddress=mc.example.com backend=b:25565'
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("b:25565", "b:25565"),
        ("", ""),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        ("back\\slash", '"back\\\\slash"'),
        ("bell\x07", '"bell\\u0007"'),
        ("§6Motd ✓", '"§6Motd ✓"'),
        ("§6Motd", "§6Motd"),
        (True, "true"),
        (False, "false"),
        (None, "<nil>"),
        (42, "42"),
        (1.5, "1.5"),
        (("a", "b"), '"[a b]"'),
        ([], "[]"),
        ({"k": "v"}, "map[k:v]"),
        (ValueError("boom"), "boom"),
    ],
)
def test_field_values(stream: io.StringIO, value: object, shown: str) -> None:
    get_logger("mc_router.x").info("m", field=value)
    assert _lines(stream)[0].endswith(f" msg=m field={shown}")


def test_message_quoting(stream: io.StringIO) -> None:
    log = get_logger("mc_router.x")
    log.info("Stopping")
    log.info('He said "hi"')
    lines = _lines(stream)
    assert lines[0].endswith(" msg=Stopping")
    assert lines[1].endswith(' msg="He said \\"hi\\""')


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("trace", "trace"),
        ("debug", "debug"),
        ("info", "info"),
        ("warning", "warning"),
        ("warn", "warning"),
        ("error", "error"),
        ("fatal", "fatal"),
    ],
)
def test_level_names(stream: io.StringIO, method: str, name: str) -> None:
    getattr(get_logger("mc_router.x"), method)("m")
    assert f" level={name} " in _lines(stream)[0]


def test_field_order_context_then_logger_then_call(stream: io.StringIO) -> None:
    log = get_logger("mc_router.x").with_fields(backend="b:1", client="c")
    with bind(client="1.2.3.4:5", server_address="mc"):
        log.info("m", player="steve", backend="b:2")
    assert _lines(stream)[0].endswith(" msg=m client=c server_address=mc backend=b:2 player=steve")


def test_exception_adds_error_and_traceback(stream: io.StringIO) -> None:
    log = get_logger("mc_router.x")
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        log.exception("Session failed", client="c")
    text = stream.getvalue()
    first, *rest = text.splitlines()
    assert first.endswith(' msg="Session failed" client=c error="it broke"')
    assert "Traceback" in rest[0]
    assert "RuntimeError: it broke" in text


def test_plain_stdlib_records_get_context(stream: io.StringIO) -> None:
    with bind(client="c"):
        logging.getLogger("mc_router.plain").warning("hello %s", "world")
    assert _lines(stream)[0].endswith(' msg="hello world" client=c')


def test_log_helper(stream: io.StringIO) -> None:
    logs.log(logging.getLogger("mc_router.x"), "info", "m", a=1)
    logs.log(logging.getLogger("mc_router.x"), logging.DEBUG, "n", b=2)
    lines = _lines(stream)
    assert lines[0].endswith(" level=info msg=m a=1")
    assert lines[1].endswith(" level=debug msg=n b=2")


# -- levels and configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("trace", ["trace", "debug", "info", "warning", "error", "fatal"]),
        ("debug", ["debug", "info", "warning", "error", "fatal"]),
        ("info", ["info", "warning", "error", "fatal"]),
        ("warn", ["warning", "error", "fatal"]),
        ("WARNING", ["warning", "error", "fatal"]),
        ("error", ["error", "fatal"]),
        ("fatal", ["fatal"]),
        ("panic", []),
    ],
)
def test_configure_level(level: str, shown: list[str]) -> None:
    buffer = io.StringIO()
    configure(level, stream=buffer)
    try:
        log = get_logger("mc_router.levels")
        for method in ("trace", "debug", "info", "warning", "error", "fatal"):
            getattr(log, method)("m")
    finally:
        logs.unconfigure()
    assert [LINE.match(line).group(1) for line in _lines(buffer)] == shown  # type: ignore[union-attr]


def test_configure_replaces_previous_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    try:
        configure("info", stream=first)
        configure("info", stream=second)
        get_logger("mc_router.x").info("once")
    finally:
        logs.unconfigure()
    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


def test_configure_keeps_third_party_quiet(stream: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info("GET /")
    logging.getLogger("aiohttp.server").warning("bad request")
    lines = _lines(stream)
    assert len(lines) == 1
    assert 'msg="bad request"' in lines[0]


def test_unconfigure_restores_levels() -> None:
    root, ours = logging.getLogger(), logging.getLogger("mc_router")
    before = (root.level, ours.level, list(root.handlers))
    configure("error", stream=io.StringIO())
    configure("trace", stream=io.StringIO())
    logs.unconfigure()
    assert (root.level, ours.level, list(root.handlers)) == before


def test_level_number() -> None:
    assert level_number("trace") == TRACE == 5
    assert level_number("Warn") == logging.WARNING
    assert level_number("fatal") == logging.CRITICAL
    assert level_number(logging.INFO) == logging.INFO
    with pytest.raises(ValueError, match="unknown log level"):
        level_number("verbose")


def test_disabled_levels_are_not_formatted(records: list[logging.LogRecord]) -> None:
    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted although disabled")

        __repr__ = __str__

    logger = logging.getLogger("mc_router.test_logs")
    logger.setLevel(logging.INFO)
    log = get_logger("mc_router.test_logs")
    log.debug("m", value=Exploding())
    log.trace("m", value=Exploding())
    assert records == []
    assert not log.is_enabled_for(logging.DEBUG)


# -- records as data ------------------------------------------------------------------------------


def test_records_carry_fields(records: list[logging.LogRecord]) -> None:
    log = get_logger("mc_router.test_logs")
    with bind(client="c"):
        log.info("Connecting to backend", backend="b:1", port=25565)
    (record,) = records
    assert record.getMessage() == "Connecting to backend"
    assert record.levelno == logging.INFO
    assert record.fields == {"client": "c", "backend": "b:1", "port": 25565}  # type: ignore[attr-defined]


def test_record_points_at_the_caller(records: list[logging.LogRecord]) -> None:
    get_logger("mc_router.test_logs").info("m")
    assert records[0].funcName == "test_record_points_at_the_caller"
    assert records[0].pathname == __file__


def test_trace_level_record(records: list[logging.LogRecord]) -> None:
    get_logger("mc_router.test_logs").trace("bytes", n=3)
    assert records[0].levelno == TRACE
    assert records[0].levelname == "TRACE"


# -- context --------------------------------------------------------------------------------------


def test_bind_nests_and_resets() -> None:
    assert dict(bound_fields()) == {}
    with bind(a=1):
        with bind(b=2, a=3):
            assert dict(bound_fields()) == {"a": 3, "b": 2}
        assert dict(bound_fields()) == {"a": 1}
    assert dict(bound_fields()) == {}


def test_bind_resets_on_error() -> None:
    with pytest.raises(KeyError), bind(a=1):
        raise KeyError("x")
    assert dict(bound_fields()) == {}


async def test_tasks_inherit_and_isolate(records: list[logging.LogRecord]) -> None:
    log = get_logger("mc_router.test_logs")
    gate = asyncio.Event()

    async def session(client: str) -> None:
        with bind(client=client):
            await gate.wait()
            log.info("done")

    with bind(listener="l1"):
        tasks = [asyncio.create_task(session(c)) for c in ("a", "b")]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(
        (r.fields["listener"], r.fields["client"])  # type: ignore[attr-defined]
        for r in records
    ) == [("l1", "a"), ("l1", "b")]
    assert dict(bound_fields()) == {}


# -- redaction ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "api_token",
        "ngrokToken",
        "password",
        "influxdb_password",
        "secret",
        "client_secret",
        "dsn",
        "automc_dsn",
        "Authorization",
        "api_key",
        "api-key",
        "apikey",
        "X-API-Key",
    ],
)
def test_secret_keys_are_masked(stream: io.StringIO, key: str) -> None:
    get_logger("mc_router.x").info("m", **{key: "hunter2 value"})
    line = _lines(stream)[0]
    assert "hunter2" not in line
    assert line.endswith(f" {key}=***")


@pytest.mark.parametrize("key", ["backend", "server_address", "user", "client", "motd"])
def test_other_keys_are_shown(key: str) -> None:
    assert redact(key, "visible") == "visible"


def test_secret_map_keeps_keys() -> None:
    assert redact("authorization", {"a": "b"}) == {"a": "***"}
    assert redact("headers", {"Authorization": "Bearer x", "Accept": "json"}) == {
        "Authorization": "***",
        "Accept": "json",
    }


def test_empty_secret_stays_empty() -> None:
    assert redact("token", "") == ""
    assert redact("token", None) is None


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgres://user:pass@host/db", "postgres://user:***@host/db"),
        (
            "postgresql://mc:p@ss@db:5432/automc?sslmode=disable",
            "postgresql://mc:***@db:5432/automc?sslmode=disable",
        ),
        ("https://user:pw@h.example.com/hook", "https://user:***@h.example.com/hook"),
        ("https://user@h.example.com/", "https://user@h.example.com/"),
        ("https://h.example.com/?a=b@c", "https://h.example.com/?a=b@c"),
        (
            "host=db user=mc password=pw sslmode=disable",
            "host=db user=mc password=*** sslmode=disable",
        ),
        ("password='a b' host=db", "password=*** host=db"),
        ("no secrets here", "no secrets here"),
        ("dial tcp b:1 via redis://:pw@cache:6379", "dial tcp b:1 via redis://:***@cache:6379"),
    ],
)
def test_mask_url_password(text: str, masked: str) -> None:
    assert mask_url_password(text) == masked


def test_dsn_values_masked_under_any_key(stream: io.StringIO) -> None:
    log = get_logger("mc_router.x")
    log.error(
        "could not connect to postgres://mc:hunter2@db/automc", target="postgres://mc:hunter2@db/x"
    )
    line = _lines(stream)[0]
    assert "hunter2" not in line
    assert "target=postgres://mc:***@db/x" in line


def test_redact_fields() -> None:
    assert redact_fields({"api_key": "k", "n": 1, "url": "http://a:b@c"}) == {
        "api_key": "***",
        "n": 1,
        "url": "http://a:***@c",
    }


def test_formatter_is_usable_standalone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.fields = {"a": "b c"}
    text = LogfmtFormatter().format(record)
    assert LINE.match(text) is not None
    assert text.endswith(' msg=m a="b c"')
