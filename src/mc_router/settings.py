"""Every mc-router option, declared once, and the Go-compatible value parsers.

Each field of `Settings` *is* the declaration of one option: its name gives the Go flag
(`backend_dial_timeout` -> `-backend-dial-timeout`) and the env var (`BACKEND_DIAL_TIMEOUT`),
its annotation gives the value kind, its default is the default, and its metadata carries the
help text, aliases and whether it is a secret (spec §1.1, §1.2). `OPTIONS` is derived from the
fields; the command-line parser, the env lookup and the usage text are all derived from
`OPTIONS`. This module knows nothing about argv syntax (that is `cli.py`) and never exits.

Durations are stored as float seconds. List values are tuples, map values plain dicts.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

from mc_router.errors import ConfigError
from mc_router.logs import REDACTED, mask_url_password

__all__ = [
    "OPTIONS",
    "OPTIONS_BY_FLAG",
    "Kind",
    "Option",
    "Settings",
    "apply_environ",
    "default_values",
    "format_go_duration",
    "opt",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_duration_ns",
    "parse_go_int",
    "parse_log_level",
    "parse_map",
    "settings_from",
    "split_list",
]


# --------------------------------------------------------------------------------------------
# Go value parsers. They raise ValueError whose text is what Go's flag package reports.
# --------------------------------------------------------------------------------------------

#: Go's flag package replaces strconv/time errors by these two messages.
PARSE_ERROR: Final = "parse error"
RANGE_ERROR: Final = "value out of range"

_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_go_bool(text: str) -> bool:
    """`strconv.ParseBool`: exactly `1 t T TRUE true True` / `0 f F FALSE false False`."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(PARSE_ERROR)


_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def _underscore_ok(text: str) -> bool:
    """Go's `underscoreOK`: `_` only between digits (a base prefix counts as a digit)."""
    saw = "^"
    i = 0
    if text[:1] in ("+", "-"):
        text = text[1:]
    hexadecimal = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        i = 2
        saw = "0"
        hexadecimal = text[1].lower() == "x"
    for ch in text[i:]:
        if "0" <= ch <= "9" or (hexadecimal and "a" <= ch.lower() <= "f"):
            saw = "0"
            continue
        if ch == "_":
            if saw != "0":
                return False
            saw = "_"
            continue
        if saw == "_":
            return False
        saw = "!"
    return saw != "_"


def parse_go_int(text: str) -> int:
    """`strconv.ParseInt(text, 0, 64)`: sign, `0x`/`0o`/`0b`, leading `0` = octal, `_`."""
    original = text
    if not text:
        raise ValueError(PARSE_ERROR)
    negative = False
    if text[0] in "+-":
        negative = text[0] == "-"
        text = text[1:]
    if not text:
        raise ValueError(PARSE_ERROR)
    base = 10
    if text[0] == "0":
        prefix = text[1:2].lower()
        if len(text) >= 3 and prefix in ("b", "o", "x"):
            base = {"b": 2, "o": 8, "x": 16}[prefix]
            text = text[2:]
        else:
            base = 8
            text = text[1:]
    value = 0
    underscores = False
    for ch in text:
        if ch == "_":
            underscores = True
            continue
        digit = _DIGITS.find(ch.lower()) if ch.isascii() else -1
        if digit < 0 or digit >= base:
            raise ValueError(PARSE_ERROR)
        value = value * base + digit
    if underscores and not _underscore_ok(original):
        raise ValueError(PARSE_ERROR)
    if negative:
        value = -value
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(RANGE_ERROR)
    return value


_NANOS_PER_UNIT: Final[Mapping[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_LIMIT: Final = 1 << 63


def _is_ascii_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def parse_go_duration_ns(text: str) -> int:
    """`time.ParseDuration`, returning integer nanoseconds; ValueError on any Go error."""
    s = text
    negative = False
    if s and s[0] in "+-":
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0
    while s:
        if not (s[0] == "." or _is_ascii_digit(s[0])):
            raise ValueError(f"time: invalid duration {text!r}")
        # Integer part: [0-9]*
        i = 0
        whole = 0
        while i < len(s) and _is_ascii_digit(s[i]):
            whole = whole * 10 + ord(s[i]) - ord("0")
            if whole > _DURATION_LIMIT:
                raise ValueError(f"time: invalid duration {text!r}")
            i += 1
        pre = i > 0
        s = s[i:]
        # Fraction part: (\.[0-9]*)? -- digits past int64 precision are consumed but ignored.
        post = False
        fraction = 0
        scale = 1.0
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and _is_ascii_digit(s[i]):
                if not overflow:
                    if fraction > (_DURATION_LIMIT - 1) // 10:
                        overflow = True
                    else:
                        candidate = fraction * 10 + ord(s[i]) - ord("0")
                        if candidate > _DURATION_LIMIT:
                            overflow = True
                        else:
                            fraction = candidate
                            scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise ValueError(f"time: invalid duration {text!r}")
        # Unit: everything up to the next digit or '.'.
        i = 0
        while i < len(s) and not (s[i] == "." or _is_ascii_digit(s[i])):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {text!r}")
        unit_name, s = s[:i], s[i:]
        unit = _NANOS_PER_UNIT.get(unit_name)
        if unit is None:
            raise ValueError(f"time: unknown unit {unit_name!r} in duration {text!r}")
        if whole > _DURATION_LIMIT // unit:
            raise ValueError(f"time: invalid duration {text!r}")
        whole *= unit
        if fraction > 0:
            # Same float64 arithmetic as Go, so rounding matches bit for bit.
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _DURATION_LIMIT:
                raise ValueError(f"time: invalid duration {text!r}")
        total += whole
        if total > _DURATION_LIMIT:
            raise ValueError(f"time: invalid duration {text!r}")
    if negative:
        return -total
    if total > _DURATION_LIMIT - 1:
        raise ValueError(f"time: invalid duration {text!r}")
    return total


def parse_go_duration(text: str) -> float:
    """`time.ParseDuration` as float seconds."""
    return parse_go_duration_ns(text) / 1e9


def _format_fraction(value: int, digits: int) -> str:
    """`value / 10**digits` printed the Go way: trailing zeros (and a bare dot) dropped."""
    whole, frac = divmod(value, 10**digits)
    frac_text = f"{frac:0{digits}d}".rstrip("0") if digits else ""
    return f"{whole}.{frac_text}" if frac_text else str(whole)


def format_go_duration(seconds: float) -> str:
    """`time.Duration.String()` for a duration in seconds: `0s`, `300ms`, `1m0s`, `1h30m0s`."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    u = abs(nanos)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_format_fraction(u, 3)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{_format_fraction(u, 6)}ms"
    hours, rest = divmod(u, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = f"{_format_fraction(rest, 9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return f"{sign}{text}"


_SPLIT: Final = re.compile(r"[\n,]")


def split_list(text: str) -> tuple[str, ...]:
    """Split a list value on commas/newlines; parts are trimmed and empty parts dropped."""
    return tuple(part for part in (p.strip() for p in _SPLIT.split(text)) if part)


def parse_map(text: str) -> dict[str, str]:
    """Parse `k=v` pieces split on commas/newlines; split at the first `=`, no per-side trim."""
    result: dict[str, str] = {}
    for raw in _SPLIT.split(text):
        piece = raw.strip()
        if not piece:
            continue
        key, _, value = piece.partition("=")
        result[key] = value
    return result


#: logrus level names, as accepted by `logrus.ParseLevel` (canonical spelling on the right).
LOG_LEVELS: Final[Mapping[str, str]] = {
    "panic": "panic",
    "fatal": "fatal",
    "error": "error",
    "warn": "warn",
    "warning": "warn",
    "info": "info",
    "debug": "debug",
    "trace": "trace",
}


def parse_log_level(text: str) -> str:
    """`logrus.ParseLevel`, case-insensitive; returns the canonical lower-case name."""
    level = LOG_LEVELS.get(text.lower())
    if level is None:
        raise ValueError(f"not a valid logrus Level: {text!r}".replace("'", '"'))
    return level


# --------------------------------------------------------------------------------------------
# The declaration machinery
# --------------------------------------------------------------------------------------------


class Kind(enum.Enum):
    """How an option's text is parsed, and whether repeats replace or accumulate."""

    BOOL = "bool"
    INT = "int"
    STR = "string"
    DURATION = "duration"
    LIST = "list"
    MAP = "map"
    LEVEL = "level"

    @property
    def accumulates(self) -> bool:
        """Lists append and maps merge; every other kind is replaced by a later value."""
        return self in (Kind.LIST, Kind.MAP)


#: Annotation text -> kind. `Kind.LEVEL` is the one kind that must be named explicitly.
_KIND_BY_ANNOTATION: Final[Mapping[str, Kind]] = {
    "bool": Kind.BOOL,
    "int": Kind.INT,
    "str": Kind.STR,
    "float": Kind.DURATION,
    "tuple[str, ...]": Kind.LIST,
    "dict[str, str]": Kind.MAP,
}

_META_KEY: Final = "mc_router.option"


@dataclass(frozen=True, slots=True)
class _Meta:
    help: str
    kind: Kind | None
    aliases: tuple[str, ...]
    secret: bool


def opt(
    help: str,
    *,
    kind: Kind | None = None,
    aliases: tuple[str, ...] = (),
    secret: bool = False,
) -> Mapping[str, object]:
    """Metadata for one `Settings` field: help text (a `backquoted` word is the usage
    placeholder, as in Go), an explicit kind when the annotation is ambiguous, extra flag
    names, and whether the value is a secret that must never be shown."""
    return {_META_KEY: _Meta(help=help, kind=kind, aliases=aliases, secret=secret)}


@dataclass(frozen=True, slots=True)
class Option:
    """One option, derived from a `Settings` field."""

    name: str
    kind: Kind
    default: object
    help: str
    aliases: tuple[str, ...] = ()
    secret: bool = False

    @property
    def flag(self) -> str:
        """Go flag name without the dash, e.g. `backend-dial-timeout`."""
        return self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """Environment variable, e.g. `BACKEND_DIAL_TIMEOUT` (no prefix)."""
        return self.name.upper()

    @property
    def flags(self) -> tuple[str, ...]:
        """Every flag name that sets this option: the primary one, then the aliases."""
        return (self.flag, *self.aliases)

    @property
    def is_bool(self) -> bool:
        """Bool flags take no argument (`-debug`), unless given as `-debug=false`."""
        return self.kind is Kind.BOOL

    def parse(self, current: object, text: str) -> object:
        """Apply one textual value on top of `current`; ValueError with Go's message."""
        kind = self.kind
        if kind is Kind.BOOL:
            return parse_go_bool(text)
        if kind is Kind.INT:
            return parse_go_int(text)
        if kind is Kind.DURATION:
            try:
                return parse_go_duration(text)
            except ValueError:
                raise ValueError(PARSE_ERROR) from None
        if kind is Kind.LEVEL:
            return parse_log_level(text)
        if kind is Kind.LIST:
            return (*cast(tuple[str, ...], current), *split_list(text))
        if kind is Kind.MAP:
            return {**cast(dict[str, str], current), **parse_map(text)}
        return text

    def format_value(self, value: object) -> str:
        """The Go `String()` form of a value, as shown in `(default ...)` in the usage."""
        if self.kind is Kind.BOOL:
            return "true" if value else "false"
        if self.kind is Kind.DURATION:
            return format_go_duration(cast(float, value))
        if self.kind is Kind.LIST:
            return ",".join(cast(tuple[str, ...], value))
        if self.kind is Kind.MAP:
            return ",".join(f"{k}={v}" for k, v in cast(dict[str, str], value).items())
        return str(value)


# --------------------------------------------------------------------------------------------
# Settings: the declaration table
# --------------------------------------------------------------------------------------------

_MIN: Final = 60.0


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """All options. Field order is the registration order (and the env error order)."""

    # -- general ---------------------------------------------------------------------------
    version: bool = field(default=False, metadata=opt("Output version and exit"))
    debug: bool = field(default=False, metadata=opt("Enable debug logs"))
    trace: bool = field(default=False, metadata=opt("Enable trace logs (overrides -debug)"))
    log_level: str = field(
        default="info",
        metadata=opt(
            "Log level: panic, fatal, error, warn, info, debug or trace; "
            "used when neither -trace nor -debug is set",
            kind=Kind.LEVEL,
        ),
    )
    port: int = field(
        default=25565,
        metadata=opt("The `port` bound to listen for Minecraft client connections"),
    )
    listen_host: str = field(
        default="",
        metadata=opt(
            "The `host` address to bind for Minecraft client connections; "
            "empty means all interfaces, dual-stack"
        ),
    )
    default: str = field(
        default="",
        metadata=opt("host:port of a default Minecraft server to use when mapping not found"),
    )
    mapping: dict[str, str] = field(
        default_factory=dict,
        metadata=opt(
            "Comma or newline delimited or repeated mappings of externalHostname=host:port"
        ),
    )
    api_binding: str = field(
        default="",
        metadata=opt("The `host:port` bound for servicing API requests"),
    )
    api_token: str = field(
        default="",
        metadata=opt(
            "If set, API requests must carry this token (Authorization: Bearer or X-API-Key)",
            secret=True,
        ),
    )
    cpu_profile: str = field(
        default="",
        metadata=opt("Enables CPU profiling and writes to given `path` (ignored by this port)"),
    )
    connection_rate_limit: int = field(
        default=1,
        metadata=opt("Max number of connections to allow per second"),
    )
    backend_dial_timeout: float = field(
        default=2.0,
        metadata=opt("Timeout for connecting to backend servers"),
    )
    drain_timeout: float = field(
        default=10.0,
        metadata=opt("On SIGINT/SIGTERM, how long active connections may drain before being cut"),
    )
    # -- kubernetes / docker ---------------------------------------------------------------
    in_kube_cluster: bool = field(
        default=False,
        metadata=opt("Use in-cluster Kubernetes config"),
    )
    kube_config: str = field(
        default="",
        metadata=opt("The `path` to a Kubernetes configuration file"),
    )
    kube_namespace: str = field(
        default="",
        metadata=opt("The namespace to watch or blank for all, which is the default"),
    )
    in_docker: bool = field(default=False, metadata=opt("Use Docker service discovery"))
    in_docker_swarm: bool = field(
        default=False,
        metadata=opt("Use Docker Swarm service discovery"),
    )
    docker_socket: str = field(
        default="",
        metadata=opt(
            "Docker daemon `address`, e.g. unix:///var/run/docker.sock or tcp://host:2375"
        ),
    )
    docker_timeout: float = field(
        default=0.0,
        metadata=opt("Timeout for Docker API calls; 0 means none"),
    )
    docker_refresh_interval: float = field(
        default=0.0,
        metadata=opt("Deprecated and ignored"),
    )
    docker_api_version: str = field(
        default="",
        metadata=opt("Pin the Docker API `version` instead of negotiating it"),
    )
    # -- metrics ---------------------------------------------------------------------------
    metrics_backend: str = field(
        default="discard",
        metadata=opt(
            "Backend to use for metrics exposure/publishing: discard,expvar,influxdb,prometheus"
        ),
    )
    metrics_backend_config_influxdb_interval: float = field(
        default=_MIN,
        metadata=opt("InfluxDB push interval"),
    )
    metrics_backend_config_influxdb_tags: dict[str, str] = field(
        default_factory=dict,
        metadata=opt("Extra tags added to every InfluxDB point"),
    )
    metrics_backend_config_influxdb_addr: str = field(
        default="",
        metadata=opt("InfluxDB HTTP `url`; required with the influxdb backend"),
    )
    metrics_backend_config_influxdb_username: str = field(
        default="",
        metadata=opt("InfluxDB username"),
    )
    metrics_backend_config_influxdb_password: str = field(
        default="",
        metadata=opt("InfluxDB password", secret=True),
    )
    metrics_backend_config_influxdb_database: str = field(
        default="",
        metadata=opt("InfluxDB database"),
    )
    metrics_backend_config_influxdb_retention_policy: str = field(
        default="",
        metadata=opt("InfluxDB retention policy"),
    )
    metrics_rate_limit_period: float = field(
        default=1.0,
        metadata=opt("How often the rate-limit gauge is refreshed; 0 disables it"),
    )
    # -- PROXY protocol, client filter -----------------------------------------------------
    use_proxy_protocol: bool = field(
        default=False,
        metadata=opt("Send PROXY protocol v2 to backend servers"),
    )
    receive_proxy_protocol: bool = field(
        default=False,
        metadata=opt(
            "Receive PROXY protocol from clients; every header is trusted unless "
            "-trusted-proxies is given"
        ),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=opt("Comma delimited list of CIDR blocks to trust when receiving PROXY protocol"),
    )
    clients_to_allow: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "Zero or more client IP addresses or CIDRs to allow. Takes precedence over deny."
        ),
    )
    clients_to_deny: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "Zero or more client IP addresses or CIDRs to deny. Ignored if any are allowed."
        ),
    )
    record_logins: bool = field(
        default=False,
        metadata=opt("Log and generate metrics on player logins"),
    )
    # -- routes ----------------------------------------------------------------------------
    routes_config: str = field(
        default="",
        metadata=opt("Name or full `path` to routes config file"),
    )
    routes_config_watch: bool = field(
        default=False,
        metadata=opt("Watch for config file changes"),
    )
    simplify_srv: bool = field(
        default=False,
        metadata=opt("Simplify fully qualified SRV records for mapping"),
    )
    status_cache_ttl: float = field(
        default=0.0,
        metadata=opt("How long backend status responses may be cached; 0 disables caching"),
    )
    # -- ngrok -----------------------------------------------------------------------------
    ngrok_token: str = field(
        default="",
        metadata=opt(
            "If set, an ngrok tunnel is used instead of a local port (not supported)",
            secret=True,
        ),
    )
    ngrok_remote_addr: str = field(
        default="",
        metadata=opt("Reserved ngrok TCP address to request"),
    )
    # -- auto scaling ----------------------------------------------------------------------
    auto_scale_up: bool = field(
        default=False,
        metadata=opt("Wake sleeping backends when a player logs in (Docker/Swarm/Kubernetes)"),
    )
    auto_scale_down: bool = field(
        default=False,
        metadata=opt("Put idle backends to sleep (Docker/Swarm/Kubernetes)"),
    )
    auto_scale_down_after: float = field(
        default=10 * _MIN,
        metadata=opt("Server scale down delay after there are no connections"),
    )
    auto_scale_allow_deny: str = field(
        default="",
        metadata=opt("The `path` to the player allow/deny list file"),
    )
    auto_scale_asleep_motd: str = field(
        default="",
        metadata=opt(
            "If set, the MOTD shown while a backend is asleep",
            aliases=("use-asleep-motd",),
        ),
    )
    auto_scale_loading_motd: str = field(
        default="",
        metadata=opt(
            "If set, the MOTD shown while a backend is waking; defaults to the asleep MOTD",
            aliases=("use-loading-motd",),
        ),
    )
    auto_scale_hold_budget: float = field(
        default=25.0,
        metadata=opt(
            "How long a login is held while its backend wakes before the player is asked "
            "to reconnect"
        ),
    )
    auto_scale_webhook_url: str = field(
        default="",
        metadata=opt("If set, static routes are woken and put to sleep through this `url`"),
    )
    auto_scale_webhook_headers: dict[str, str] = field(
        default_factory=dict,
        metadata=opt(
            "Extra HTTP headers on scaler webhook requests, e.g. Authorization=Bearer xyz",
            secret=True,
        ),
    )
    auto_scale_webhook_timeout: float = field(
        default=30.0,
        metadata=opt("Per-request timeout for scaler webhook calls; 0 means none"),
    )
    auto_scale_webhook_wake_timeout: float = field(
        default=_MIN,
        metadata=opt("Longest wait for a backend to become reachable after a scale-up"),
    )
    # -- event webhooks --------------------------------------------------------------------
    webhook_url: str = field(
        default="",
        metadata=opt("If set, connection and route events are POSTed to this `url`"),
    )
    webhook_require_user: bool = field(
        default=False,
        metadata=opt("Only notify connection events that carry player info"),
    )
    webhook_timeout: float = field(
        default=30.0,
        metadata=opt("Per-request timeout for event webhook calls"),
    )
    webhook_events: tuple[str, ...] = field(
        default=("connect", "disconnect"),
        metadata=opt(
            "Event types to send: connect, disconnect, route-added, route-removed, "
            "default-route-set, default-route-removed (appended to the default)"
        ),
    )
    # -- automc extension ------------------------------------------------------------------
    automc_dsn: str = field(
        default="",
        metadata=opt("Postgres DSN of the automc servers table; empty disables automc"),
    )
    automc_waker_url: str = field(
        default="",
        metadata=opt("Base `url` of the automc waker control plane"),
    )
    automc_waker_token: str = field(
        default="",
        metadata=opt("Sent as X-API-Key on every automc waker request", secret=True),
    )

    @property
    def effective_log_level(self) -> str:
        """`-trace` beats `-debug`, which beats `-log-level` (spec §1.2)."""
        if self.trace:
            return "trace"
        if self.debug:
            return "debug"
        return self.log_level

    def redacted(self) -> dict[str, object]:
        """Every field, safe to log: secrets become `***` (map secrets keep their keys),
        passwords inside URLs/DSNs are masked."""
        result: dict[str, object] = {}
        for option in OPTIONS:
            value = getattr(self, option.name)
            if option.secret:
                if isinstance(value, dict):
                    value = {k: REDACTED for k in value}
                elif value:
                    value = REDACTED
            elif isinstance(value, str):
                value = mask_url_password(value)
            elif isinstance(value, dict):
                value = {k: mask_url_password(v) for k, v in value.items()}
            result[option.name] = value
        return result

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({inner})"


def _derive_options() -> tuple[Option, ...]:
    options: list[Option] = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata.get(_META_KEY)
        if not isinstance(meta, _Meta):
            raise TypeError(f"Settings.{f.name} lacks opt() metadata")
        kind = meta.kind or _KIND_BY_ANNOTATION.get(str(f.type))
        if kind is None:
            raise TypeError(f"Settings.{f.name}: cannot derive a kind from {f.type!r}")
        if f.default is not dataclasses.MISSING:
            default: object = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # pragma: no cover -- every field has a default by construction
            raise TypeError(f"Settings.{f.name} has no default")
        options.append(
            Option(
                name=f.name,
                kind=kind,
                default=default,
                help=meta.help,
                aliases=meta.aliases,
                secret=meta.secret,
            )
        )
    return tuple(options)


#: The declaration table, in registration order.
OPTIONS: Final[tuple[Option, ...]] = _derive_options()

#: Every flag name (primary and alias, without dashes) -> its option.
OPTIONS_BY_FLAG: Final[Mapping[str, Option]] = {
    name: option for option in OPTIONS for name in option.flags
}


def default_values() -> dict[str, object]:
    """A fresh `{field name: default}` dict (maps are new dicts each time)."""
    return {
        o.name: dict(cast(dict[str, str], o.default)) if o.kind is Kind.MAP else o.default
        for o in OPTIONS
    }


def apply_environ(values: dict[str, object], environ: Mapping[str, str]) -> None:
    """Apply every *set* env var (even empty) through the option's parser, in order.

    Raises ConfigError `failed to set from environment variable NAME: <Go error>`.
    """
    for option in OPTIONS:
        text = environ.get(option.env)
        if text is None:
            continue
        try:
            values[option.name] = option.parse(values[option.name], text)
        except ValueError as err:
            raise ConfigError(
                f"failed to set from environment variable {option.env}: {err}"
            ) from None


def settings_from(values: Mapping[str, object]) -> Settings:
    """Build `Settings` from a complete `{field name: value}` mapping."""
    return Settings(**cast(dict[str, Any], dict(values)))


# Sanity: no two options may claim the same flag name (an alias shadowing a flag).
if len(OPTIONS_BY_FLAG) != sum(len(o.flags) for o in OPTIONS):  # pragma: no cover
    raise TypeError("duplicate flag names in Settings")
