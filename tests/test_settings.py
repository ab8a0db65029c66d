"""The option table against spec §1.2, and the Go value parsers against Go's rules (§1.1)."""

from __future__ import annotations

import dataclasses

import pytest

from mc_router.errors import ConfigError
from mc_router.settings import (
    OPTIONS,
    OPTIONS_BY_FLAG,
    Kind,
    Settings,
    apply_environ,
    default_values,
    format_go_duration,
    parse_go_bool,
    parse_go_duration,
    parse_go_duration_ns,
    parse_go_int,
    parse_log_level,
    parse_map,
    settings_from,
    split_list,
)

# (flag, env, kind, default) written out by hand from spec §1.2 plus our additions, so the
# table in settings.py is checked against an independent copy.
EXPECTED: list[tuple[str, str, Kind, object]] = [
    ("version", "VERSION", Kind.BOOL, False),
    ("debug", "DEBUG", Kind.BOOL, False),
    ("trace", "TRACE", Kind.BOOL, False),
    ("log-level", "LOG_LEVEL", Kind.LEVEL, "info"),
    ("port", "PORT", Kind.INT, 25565),
    ("default", "DEFAULT", Kind.STR, ""),
    ("mapping", "MAPPING", Kind.MAP, {}),
    ("api-binding", "API_BINDING", Kind.STR, ""),
    ("cpu-profile", "CPU_PROFILE", Kind.STR, ""),
    ("connection-rate-limit", "CONNECTION_RATE_LIMIT", Kind.INT, 1),
    ("backend-dial-timeout", "BACKEND_DIAL_TIMEOUT", Kind.DURATION, 2.0),
    ("in-kube-cluster", "IN_KUBE_CLUSTER", Kind.BOOL, False),
    ("kube-config", "KUBE_CONFIG", Kind.STR, ""),
    ("kube-namespace", "KUBE_NAMESPACE", Kind.STR, ""),
    ("in-docker", "IN_DOCKER", Kind.BOOL, False),
    ("in-docker-swarm", "IN_DOCKER_SWARM", Kind.BOOL, False),
    ("docker-socket", "DOCKER_SOCKET", Kind.STR, ""),
    ("docker-timeout", "DOCKER_TIMEOUT", Kind.DURATION, 0.0),
    ("docker-refresh-interval", "DOCKER_REFRESH_INTERVAL", Kind.DURATION, 0.0),
    ("docker-api-version", "DOCKER_API_VERSION", Kind.STR, ""),
    ("metrics-backend", "METRICS_BACKEND", Kind.STR, "discard"),
    (
        "metrics-backend-config-influxdb-interval",
        "METRICS_BACKEND_CONFIG_INFLUXDB_INTERVAL",
        Kind.DURATION,
        60.0,
    ),
    ("metrics-backend-config-influxdb-tags", "METRICS_BACKEND_CONFIG_INFLUXDB_TAGS", Kind.MAP, {}),
    ("metrics-backend-config-influxdb-addr", "METRICS_BACKEND_CONFIG_INFLUXDB_ADDR", Kind.STR, ""),
    (
        "metrics-backend-config-influxdb-username",
        "METRICS_BACKEND_CONFIG_INFLUXDB_USERNAME",
        Kind.STR,
        "",
    ),
    (
        "metrics-backend-config-influxdb-password",
        "METRICS_BACKEND_CONFIG_INFLUXDB_PASSWORD",
        Kind.STR,
        "",
    ),
    (
        "metrics-backend-config-influxdb-database",
        "METRICS_BACKEND_CONFIG_INFLUXDB_DATABASE",
        Kind.STR,
        "",
    ),
    (
        "metrics-backend-config-influxdb-retention-policy",
        "METRICS_BACKEND_CONFIG_INFLUXDB_RETENTION_POLICY",
        Kind.STR,
        "",
    ),
    ("metrics-rate-limit-period", "METRICS_RATE_LIMIT_PERIOD", Kind.DURATION, 1.0),
    ("use-proxy-protocol", "USE_PROXY_PROTOCOL", Kind.BOOL, False),
    ("receive-proxy-protocol", "RECEIVE_PROXY_PROTOCOL", Kind.BOOL, False),
    ("trusted-proxies", "TRUSTED_PROXIES", Kind.LIST, ()),
    ("record-logins", "RECORD_LOGINS", Kind.BOOL, False),
    ("routes-config", "ROUTES_CONFIG", Kind.STR, ""),
    ("routes-config-watch", "ROUTES_CONFIG_WATCH", Kind.BOOL, False),
    ("ngrok-token", "NGROK_TOKEN", Kind.STR, ""),
    ("ngrok-remote-addr", "NGROK_REMOTE_ADDR", Kind.STR, ""),
    ("auto-scale-up", "AUTO_SCALE_UP", Kind.BOOL, False),
    ("auto-scale-down", "AUTO_SCALE_DOWN", Kind.BOOL, False),
    ("auto-scale-down-after", "AUTO_SCALE_DOWN_AFTER", Kind.DURATION, 600.0),
    ("auto-scale-allow-deny", "AUTO_SCALE_ALLOW_DENY", Kind.STR, ""),
    ("auto-scale-asleep-motd", "AUTO_SCALE_ASLEEP_MOTD", Kind.STR, ""),
    ("auto-scale-loading-motd", "AUTO_SCALE_LOADING_MOTD", Kind.STR, ""),
    ("auto-scale-webhook-url", "AUTO_SCALE_WEBHOOK_URL", Kind.STR, ""),
    ("auto-scale-webhook-headers", "AUTO_SCALE_WEBHOOK_HEADERS", Kind.MAP, {}),
    ("auto-scale-webhook-timeout", "AUTO_SCALE_WEBHOOK_TIMEOUT", Kind.DURATION, 30.0),
    ("auto-scale-webhook-wake-timeout", "AUTO_SCALE_WEBHOOK_WAKE_TIMEOUT", Kind.DURATION, 60.0),
    ("clients-to-allow", "CLIENTS_TO_ALLOW", Kind.LIST, ()),
    ("clients-to-deny", "CLIENTS_TO_DENY", Kind.LIST, ()),
    ("simplify-srv", "SIMPLIFY_SRV", Kind.BOOL, False),
    ("webhook-url", "WEBHOOK_URL", Kind.STR, ""),
    ("webhook-require-user", "WEBHOOK_REQUIRE_USER", Kind.BOOL, False),
    ("webhook-timeout", "WEBHOOK_TIMEOUT", Kind.DURATION, 30.0),
    ("webhook-events", "WEBHOOK_EVENTS", Kind.LIST, ("connect", "disconnect")),
    # ours
    ("listen-host", "LISTEN_HOST", Kind.STR, ""),
    ("drain-timeout", "DRAIN_TIMEOUT", Kind.DURATION, 10.0),
    ("api-token", "API_TOKEN", Kind.STR, ""),
    ("auto-scale-hold-budget", "AUTO_SCALE_HOLD_BUDGET", Kind.DURATION, 25.0),
    ("status-cache-ttl", "STATUS_CACHE_TTL", Kind.DURATION, 0.0),
    ("automc-dsn", "AUTOMC_DSN", Kind.STR, ""),
    ("automc-waker-url", "AUTOMC_WAKER_URL", Kind.STR, ""),
    ("automc-waker-token", "AUTOMC_WAKER_TOKEN", Kind.STR, ""),
]

SECRETS = {
    "api_token",
    "automc_waker_token",
    "metrics_backend_config_influxdb_password",
    "ngrok_token",
    "auto_scale_webhook_headers",
}


# -- the table ------------------------------------------------------------------------------------


def test_table_has_exactly_the_expected_options() -> None:
    assert sorted(o.flag for o in OPTIONS) == sorted(row[0] for row in EXPECTED)


@pytest.mark.parametrize(("flag", "env", "kind", "default"), EXPECTED, ids=[r[0] for r in EXPECTED])
def test_option_row(flag: str, env: str, kind: Kind, default: object) -> None:
    option = OPTIONS_BY_FLAG[flag]
    assert option.flag == flag
    assert option.env == env
    assert option.kind is kind
    assert option.default == default
    assert option.help
    assert getattr(Settings(), option.name) == default


def test_settings_defaults_match_table() -> None:
    assert settings_from(default_values()) == Settings()


def test_field_annotations_match_kinds() -> None:
    python_type = {
        Kind.BOOL: "bool",
        Kind.INT: "int",
        Kind.STR: "str",
        Kind.LEVEL: "str",
        Kind.DURATION: "float",
        Kind.LIST: "tuple[str, ...]",
        Kind.MAP: "dict[str, str]",
    }
    for f in dataclasses.fields(Settings):
        assert str(f.type) == python_type[OPTIONS_BY_FLAG[f.name.replace("_", "-")].kind]


def test_secret_flags() -> None:
    assert {o.name for o in OPTIONS if o.secret} == SECRETS


def test_aliases() -> None:
    assert OPTIONS_BY_FLAG["use-asleep-motd"].name == "auto_scale_asleep_motd"
    assert OPTIONS_BY_FLAG["use-loading-motd"].name == "auto_scale_loading_motd"


def test_settings_is_frozen_and_slotted() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    assert not hasattr(settings, "__dict__")


def test_default_values_gives_fresh_maps() -> None:
    first = default_values()
    first_mapping = first["mapping"]
    assert isinstance(first_mapping, dict)
    first_mapping["x"] = "y"
    assert default_values()["mapping"] == {}


def test_effective_log_level() -> None:
    assert Settings().effective_log_level == "info"
    assert Settings(log_level="error").effective_log_level == "error"
    assert Settings(debug=True, log_level="error").effective_log_level == "debug"
    assert Settings(trace=True, debug=True).effective_log_level == "trace"


# -- env application ------------------------------------------------------------------------------


def _from_env(environ: dict[str, str]) -> Settings:
    values = default_values()
    apply_environ(values, environ)
    return settings_from(values)


def test_env_unset_keeps_defaults() -> None:
    assert _from_env({"UNRELATED": "1", "port": "1"}) == Settings()


def test_env_empty_string_is_applied() -> None:
    # Set-but-empty env vars go through the parser: fine for strings ...
    assert _from_env({"METRICS_BACKEND": ""}).metrics_backend == ""
    # ... fatal for a bool.
    with pytest.raises(ConfigError, match=r"^failed to set from environment variable DEBUG: "):
        _from_env({"DEBUG": ""})


@pytest.mark.parametrize(
    ("env", "text"),
    [
        ("DEBUG", "yes"),
        ("VERSION", "1.20.4"),
        ("PORT", "abc"),
        ("PORT", "99999999999999999999"),
        ("BACKEND_DIAL_TIMEOUT", "10"),
        ("AUTO_SCALE_DOWN_AFTER", "1d"),
        ("LOG_LEVEL", "verbose"),
    ],
)
def test_bad_env_value(env: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _from_env({env: text})
    assert str(caught.value).startswith(f"failed to set from environment variable {env}: ")


def test_env_error_messages_match_go() -> None:
    with pytest.raises(ConfigError) as caught:
        _from_env({"PORT": "abc"})
    assert str(caught.value) == "failed to set from environment variable PORT: parse error"
    with pytest.raises(ConfigError) as caught:
        _from_env({"PORT": "9223372036854775808"})
    assert str(caught.value).endswith(": value out of range")
    with pytest.raises(ConfigError) as caught:
        _from_env({"LOG_LEVEL": "loud"})
    assert str(caught.value).endswith(': not a valid logrus Level: "loud"')


def test_env_list_appends_to_default() -> None:
    assert _from_env({"WEBHOOK_EVENTS": "route-added"}).webhook_events == (
        "connect",
        "disconnect",
        "route-added",
    )


def test_env_map() -> None:
    assert _from_env({"MAPPING": "a.com=b:1\nc.com=d:2"}).mapping == {
        "a.com": "b:1",
        "c.com": "d:2",
    }


# -- redaction ------------------------------------------------------------------------------------


SECRET_VALUES = {
    "api_token": "tok-AAAA",
    "automc_waker_token": "tok-BBBB",
    "metrics_backend_config_influxdb_password": "pw-CCCC",
    "ngrok_token": "tok-DDDD",
}


def _secret_settings() -> Settings:
    return Settings(
        **SECRET_VALUES,  # type: ignore[arg-type]
        auto_scale_webhook_headers={"Authorization": "Bearer hdr-EEEE", "X-Other": "hdr-FFFF"},
        automc_dsn="postgres://mc:pw-GGGG@db:5432/automc?sslmode=disable",
        webhook_url="https://user:pw-HHHH@hooks.example.com/x",
        metrics_backend_config_influxdb_tags={"env": "prod"},
    )


@pytest.mark.parametrize("render", [repr, str, lambda s: str(s.redacted())])
def test_no_secret_in_repr_or_redacted(render: object) -> None:
    assert callable(render)
    text = render(_secret_settings())
    for marker in ("AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG", "HHHH"):
        assert marker not in text


def test_redacted_shape() -> None:
    redacted = _secret_settings().redacted()
    assert set(redacted) == {o.name for o in OPTIONS}
    assert redacted["api_token"] == "***"
    assert redacted["auto_scale_webhook_headers"] == {"Authorization": "***", "X-Other": "***"}
    assert redacted["automc_dsn"] == "postgres://mc:***@db:5432/automc?sslmode=disable"
    assert redacted["webhook_url"] == "https://user:***@hooks.example.com/x"
    assert redacted["metrics_backend_config_influxdb_tags"] == {"env": "prod"}
    assert redacted["port"] == 25565
    # Empty secrets stay empty: "***" would suggest one is configured.
    assert Settings().redacted()["api_token"] == ""


def test_repr_looks_like_a_dataclass_repr() -> None:
    text = repr(Settings(port=1))
    assert text.startswith("Settings(version=False, ")
    assert "port=1," in text


# -- bool -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true(text: str) -> None:
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_bool_false(text: str) -> None:
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "no", "on", "tRUE", "FaLsE", " true", "2", "y"])
def test_bool_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"^parse error$"):
        parse_go_bool(text)


# -- int ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("25565", 25565),
        ("+5", 5),
        ("-5", -5),
        ("0x1F", 31),
        ("0X1f", 31),
        ("0o17", 15),
        ("0O17", 15),
        ("0b101", 5),
        ("017", 15),  # leading zero: octal (Python's int(s, 0) rejects this)
        ("00", 0),
        ("-017", -15),
        ("1_000", 1000),
        ("0x_1F", 31),
        ("0_17", 15),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_int_valid(text: str, value: int) -> None:
    assert parse_go_int(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "-",
        "abc",
        "08",
        "09",
        "0x",
        "0b",
        "0b2",
        "0o8",
        "1.5",
        " 1",
        "1 ",
        "+-1",
        "--1",
        "_1",
        "1_",
        "1__0",
        "0x1g",
        "1e3",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: Python's int() would accept it
    ],
)
def test_int_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"^parse error$"):
        parse_go_int(text)


@pytest.mark.parametrize("text", ["9223372036854775808", "-9223372036854775809", "0x" + "f" * 17])
def test_int_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"^value out of range$"):
        parse_go_int(text)


# -- duration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("2s", 2_000_000_000),
        ("10m", 600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300ms", 300_000_000),
        ("1us", 1_000),
        ("1\u00b5s", 1_000),
        ("1\u03bcs", 1_000),
        ("7ns", 7),
        ("-1m", -60_000_000_000),
        ("+1m", 60_000_000_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("1m0s", 60_000_000_000),
        ("1h1h", 7_200_000_000_000),
        ("1.0000000001s", 1_000_000_000),
        ("0.3333333333333333333h", 1_200_000_000_000),
        ("9223372036854775807ns", 2**63 - 1),
        ("-9223372036854775808ns", -(2**63)),
    ],
)
def test_duration_valid(text: str, nanos: int) -> None:
    assert parse_go_duration_ns(text) == nanos
    assert parse_go_duration(text) == nanos / 1e9


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "1d",
        "1w",
        "s",
        ".s",
        "-.s",
        "-",
        "+",
        "1.5",
        "1 s",
        " 1s",
        "1s ",
        "1S",
        "1sec",
        "1h-1m",
        "9223372036854775808ns",
        "3000000h",
        "\u0661s",
    ],
)
def test_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        parse_go_duration_ns(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (2.0, "2s"),
        (60.0, "1m0s"),
        (600.0, "10m0s"),
        (5400.0, "1h30m0s"),
        (1.5, "1.5s"),
        (0.3, "300ms"),
        (0.0000015, "1.5\u00b5s"),
        (0.000000007, "7ns"),
        (-90.0, "-1m30s"),
        (3600.0, "1h0m0s"),
    ],
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


# -- list, map, level -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", ()),
        ("a", ("a",)),
        ("a,b", ("a", "b")),
        (" a , b ,, \n c\n", ("a", "b", "c")),
        (",,,", ()),
        ("10.0.0.0/8\n192.168.0.0/16", ("10.0.0.0/8", "192.168.0.0/16")),
    ],
)
def test_split_list(text: str, parts: tuple[str, ...]) -> None:
    assert split_list(text) == parts


@pytest.mark.parametrize(
    ("text", "mapping"),
    [
        ("", {}),
        ("a=b", {"a": "b"}),
        ("a = b", {"a ": " b"}),  # key/value are not trimmed separately
        (" a=b ", {"a": "b"}),  # the piece is trimmed
        ("a=b=c", {"a": "b=c"}),  # first '=' splits
        ("a", {"a": ""}),  # no '=' -> empty value
        ("a=", {"a": ""}),
        ("=b", {"": "b"}),
        ("a=1,a=2", {"a": "2"}),  # later keys win
        ("a=1\nb=2,,", {"a": "1", "b": "2"}),
        ("Authorization=Bearer xyz", {"Authorization": "Bearer xyz"}),
    ],
)
def test_parse_map(text: str, mapping: dict[str, str]) -> None:
    assert parse_map(text) == mapping


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("panic", "panic"),
        ("FATAL", "fatal"),
        ("Error", "error"),
        ("warn", "warn"),
        ("WARNING", "warn"),
        ("info", "info"),
        ("DeBuG", "debug"),
        ("trace", "trace"),
    ],
)
def test_log_level(text: str, level: str) -> None:
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["", "verbose", "critical", "warn ", "notice"])
def test_log_level_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="not a valid logrus Level"):
        parse_log_level(text)


def test_option_parse_accumulates_lists_and_maps() -> None:
    events = OPTIONS_BY_FLAG["webhook-events"]
    assert events.parse(("connect",), "a,b") == ("connect", "a", "b")
    mapping = OPTIONS_BY_FLAG["mapping"]
    current = {"a": "1"}
    assert mapping.parse(current, "a=2,b=3") == {"a": "2", "b": "3"}
    assert current == {"a": "1"}  # not mutated in place
    port = OPTIONS_BY_FLAG["port"]
    assert port.parse(1, "2") == 2


def test_option_parse_duration_error_is_go_flag_message() -> None:
    with pytest.raises(ValueError, match=r"^parse error$"):
        OPTIONS_BY_FLAG["backend-dial-timeout"].parse(2.0, "10")
