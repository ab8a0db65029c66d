"""Structured logging on the stdlib, printed in logrus text style (spec §1.4).

    time=2026-12-03T16:47:17Z level=info msg="Created route mapping" serverAddress=mc.example.com

Fields travel on the record as `record.fields` (a dict), so tests can read logs as data.
`bind(**fields)` adds fields to every record logged inside it, per asyncio task (contextvars).
Secrets never reach the output: fields whose key looks secret print as `***`, and passwords
inside URLs/DSNs are masked. Nothing is formatted unless the level is enabled.
This module imports nothing from mc_router.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final, TextIO

__all__ = [
    "REDACTED",
    "TRACE",
    "LogfmtFormatter",
    "StructLogger",
    "bind",
    "bound_fields",
    "configure",
    "get_logger",
    "level_number",
    "log",
    "mask_url_password",
    "redact",
    "redact_fields",
    "unconfigure",
]

#: Below DEBUG, like logrus' trace level.
TRACE: Final = 5
#: Above CRITICAL: with `-log-level panic` even fatal lines are silent, as in logrus.
PANIC: Final = 60
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(PANIC, "PANIC")

REDACTED: Final = "***"

_LEVEL_BY_NAME: Final[Mapping[str, int]] = {
    "panic": PANIC,
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
# logrus prints these names (its Level.String()).
_NAME_BY_LEVEL: Final = (
    (PANIC, "panic"),
    (logging.CRITICAL, "fatal"),
    (logging.ERROR, "error"),
    (logging.WARNING, "warning"),
    (logging.INFO, "info"),
    (logging.DEBUG, "debug"),
)


def level_number(level: str | int) -> int:
    """A logrus level name (case-insensitive) or a stdlib number -> stdlib level number."""
    if isinstance(level, int):
        return level
    try:
        return _LEVEL_BY_NAME[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def _level_name(levelno: int) -> str:
    for number, name in _NAME_BY_LEVEL:
        if levelno >= number:
            return name
    return "trace"


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

_SECRET_KEY: Final = re.compile(r"token|password|secret|dsn|authorization|api[-_]?key", re.I)
# Greedy up to the last `@` of the authority, so a password holding a raw `@` is fully masked.
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):([^/?#\s]*)@")
# libpq keyword form: `host=db user=mc password=secret`.
_KEYWORD_PASSWORD: Final = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def mask_url_password(value: str) -> str:
    """Mask passwords in URLs/DSNs: `postgres://user:pass@host/db` ->
    `postgres://user:***@host/db`, `host=h password=pw` -> `host=h password=***`."""
    if "://" in value:
        value = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", value)
    if "=" in value:
        value = _KEYWORD_PASSWORD.sub(rf"\1{REDACTED}", value)
    return value


@functools.lru_cache(maxsize=512)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def redact(key: str, value: object) -> object:
    """The value as it may be shown for this field key."""
    if _is_secret_key(key):
        if isinstance(value, Mapping):
            return {k: REDACTED for k in value}
        return REDACTED if value not in (None, "") else value
    if isinstance(value, str):
        return mask_url_password(value)
    if isinstance(value, Mapping):
        return {k: redact(str(k), v) for k, v in value.items()}
    return value


def redact_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """Every field passed through `redact`."""
    return {key: redact(key, value) for key, value in fields.items()}


# --------------------------------------------------------------------------------------------
# Per-task context
# --------------------------------------------------------------------------------------------

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "mc_router_log_fields", default=_EMPTY
)


@contextlib.contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add fields to every record logged inside the block (and in tasks started inside it)."""
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield
    finally:
        _context.reset(token)


def bound_fields() -> Mapping[str, object]:
    """The fields bound in the current context."""
    return _context.get()


# --------------------------------------------------------------------------------------------
# Loggers
# --------------------------------------------------------------------------------------------


class StructLogger:
    """A stdlib logger taking fields as keyword arguments: `log.info("Connecting", backend=b)`.

    Records carry `record.fields`: context fields, then `with_fields` ones, then the call's.
    """

    __slots__ = ("_fields", "logger")

    def __init__(self, logger: logging.Logger, fields: Mapping[str, object] = _EMPTY) -> None:
        self.logger = logger
        self._fields = fields

    def with_fields(self, **fields: object) -> StructLogger:
        """A logger that adds these fields to each record (logrus `WithFields`)."""
        return StructLogger(self.logger, {**self._fields, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """Whether a record at this level would be emitted."""
        return self.logger.isEnabledFor(level)

    def _log(self, level: int, msg: str, fields: dict[str, object], exc_info: bool = False) -> None:
        if not self.logger.isEnabledFor(level):
            return
        context = _context.get()
        merged = {**context, **self._fields, **fields} if context or self._fields else fields
        # stacklevel 3: the caller of info()/debug()/..., not this helper.
        self.logger.log(level, msg, exc_info=exc_info, extra={"fields": merged}, stacklevel=3)

    def trace(self, msg: str, /, **fields: object) -> None:
        self._log(TRACE, msg, fields)

    def debug(self, msg: str, /, **fields: object) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, /, **fields: object) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, /, **fields: object) -> None:
        self._log(logging.WARNING, msg, fields)

    warn = warning

    def error(self, msg: str, /, **fields: object) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, /, **fields: object) -> None:
        """An error line with the current exception (in an `except` block)."""
        self._log(logging.ERROR, msg, fields, exc_info=True)

    def fatal(self, msg: str, /, **fields: object) -> None:
        """Log at logrus' fatal level. Does not exit: only `cli` exits."""
        self._log(logging.CRITICAL, msg, fields)


def get_logger(name: str) -> StructLogger:
    """`get_logger(__name__)` -- one per module."""
    return StructLogger(logging.getLogger(name))


def log(logger: logging.Logger, level: str | int, msg: str, /, **fields: object) -> None:
    """Log with fields on a plain stdlib logger."""
    number = level_number(level)
    if logger.isEnabledFor(number):
        merged = {**_context.get(), **fields}
        logger.log(number, msg, extra={"fields": merged}, stacklevel=2)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------

_NOT_PLAIN_ASCII: Final = re.compile(r"[^\x20-\x7e]")
_NEEDS_QUOTES: Final = re.compile(r'[\s"=\\]|[^\x20-\x7e\u00a0-\U0010ffff]')


def _go_text(value: object) -> str:
    """Roughly Go's `%v`: true/false, <nil>, [a b], map[k:v]."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_go_text(k)}:{_go_text(v)}" for k, v in value.items()) + "]"
    return str(value)


def _quote(text: str) -> str:
    if not _NEEDS_QUOTES.search(text):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    if _NOT_PLAIN_ASCII.search(escaped):
        # Rare: per-character work only for text that is not plain printable ASCII.
        escaped = "".join(
            ch if ch.isprintable() or ch == " " else f"\\u{ord(ch):04x}" for ch in escaped
        )
    return f'"{escaped}"'


# The formatted second of the last record: strftime per record costs more than a log line's
# whole formatting budget under connection floods.
_stamp: list[object] = [None, ""]


class LogfmtFormatter(logging.Formatter):
    """`time=... level=... msg="..." key=value ...`, fields in insertion order, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        fields: Mapping[str, object] | None = getattr(record, "fields", None)
        if fields is None:
            # A plain stdlib record (e.g. from a library): still show the task's context.
            fields = _context.get()
        second = int(record.created)
        if second != _stamp[0]:
            _stamp[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))]
        stamp = str(_stamp[1])
        parts = [
            f"time={stamp}",
            f"level={_level_name(record.levelno)}",
            f"msg={_quote(mask_url_password(record.getMessage()))}",
        ]
        for key, value in fields.items():
            parts.append(f"{key}={_quote(_go_text(redact(key, value)))}")
        line = " ".join(parts)
        if record.exc_info:
            if "error" not in fields and record.exc_info[1] is not None:
                line += f" error={_quote(str(record.exc_info[1]))}"
            line += "\n" + self.formatException(record.exc_info)
        return line


# The handler `configure` installed, and the (root, mc_router) levels it replaced.
_installed: tuple[logging.Handler, int, int] | None = None
# What configure() switches off process-wide, restored by unconfigure().
_RECORD_DEFAULTS: dict[str, object] = {
    name: getattr(logging, name)
    for name in ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
}


def configure(level: str | int, stream: TextIO | None = None) -> None:
    """Send mc_router logs at `level` (a logrus name) and library warnings to `stream`
    (default: the current sys.stderr) in logrus text style. Calling it again replaces the
    previous configuration."""
    global _installed  # noqa: PLW0603 -- one process-wide handler, replaced on reconfigure
    number = level_number(level)
    unconfigure()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    ours = logging.getLogger("mc_router")
    _installed = (handler, root.level, ours.level)
    root.addHandler(handler)
    # Our formatter prints none of these: skip collecting them for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # No findCaller() stack walk per record (the logging HOWTO's "Optimization" advice).
    logging._srcfile = None
    # Third-party libraries only speak up at warning or above (or at our level if higher).
    root.setLevel(max(number, logging.WARNING))
    ours.setLevel(number)


def unconfigure() -> None:
    """Undo `configure`: remove its handler and restore the levels it changed (for tests)."""
    global _installed  # noqa: PLW0603 -- see configure()
    if _installed is not None:
        handler, root_level, our_level = _installed
        root = logging.getLogger()
        root.removeHandler(handler)
        root.setLevel(root_level)
        logging.getLogger("mc_router").setLevel(our_level)
        _installed = None
        for name, value in _RECORD_DEFAULTS.items():
            setattr(logging, name, value)
