"""argv + env -> Settings with Go `flag` syntax (spec §1.1), and the `mc-router` entry point.

This is the only module that calls `sys.exit`. Exit statuses follow upstream: 0 for `-h` and
`-version`, 2 for a bad command line, 1 for a bad env var or a failed startup.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NoReturn

from mc_router import __version__, logs
from mc_router.errors import ConfigError
from mc_router.settings import (
    OPTIONS,
    OPTIONS_BY_FLAG,
    Kind,
    Option,
    Settings,
    apply_environ,
    default_values,
    settings_from,
)

__all__ = [
    "BUILD_DATE",
    "COMMIT",
    "HelpRequested",
    "UsageError",
    "main",
    "parse_args",
    "parse_command_line",
    "usage",
    "version_text",
]

#: Stamped by a release build; dev builds print `..., commit none, built at unknown`.
COMMIT: Final = "none"
BUILD_DATE: Final = "unknown"

PROGRAM: Final = "mc-router"

_log = logs.get_logger(__name__)


class UsageError(ConfigError):
    """A bad command line (unknown flag, bad value, missing argument): exit status 2."""


class HelpRequested(Exception):
    """`-h`, `-help` or `--help` was given: print the usage and exit 0."""


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _set(values: dict[str, object], option: Option, text: str) -> None:
    values[option.name] = option.parse(values[option.name], text)


def parse_command_line(
    argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[Settings, list[str]]:
    """Defaults, then env vars, then argv (Go `flag` rules). Returns the settings and the
    positional arguments (everything from the first non-flag argument, or after `--`).

    Raises ConfigError for a bad env var, UsageError for a bad command line, HelpRequested.
    """
    values = default_values()
    apply_environ(values, environ)
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break  # first positional: Go stops parsing flags here
        dashes = 2 if arg[1] == "-" else 1
        if arg == "--":
            args.pop(0)
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        args.pop(0)
        name, has_value, value = name.partition("=")
        option = OPTIONS_BY_FLAG.get(name)
        if option is None:
            if name in ("h", "help"):
                raise HelpRequested
            raise UsageError(f"flag provided but not defined: -{name}")
        if option.is_bool:
            text = value if has_value else "true"
            try:
                _set(values, option, text)
            except ValueError as err:
                raise UsageError(
                    f"invalid boolean value {_go_quote(text)} for -{name}: {err}"
                ) from None
            continue
        if not has_value:
            if not args:
                raise UsageError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        try:
            _set(values, option, value)
        except ValueError as err:
            raise UsageError(f"invalid value {_go_quote(value)} for flag -{name}: {err}") from None
    return settings_from(values), args


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """`parse_command_line` without the positional arguments."""
    return parse_command_line(argv, environ)[0]


def _go_quote(text: str) -> str:
    """Go's `%q` for the common cases: double quotes, backslash escapes."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


# --------------------------------------------------------------------------------------------
# Usage text (Go `flag.PrintDefaults`, with go-flagsfiller's `(env NAME)` suffix)
# --------------------------------------------------------------------------------------------

_TYPE_PLACEHOLDER: Final[Mapping[Kind, str]] = {
    Kind.BOOL: "",
    Kind.INT: "int",
    Kind.STR: "string",
    Kind.DURATION: "duration",
    Kind.LIST: "value",
    Kind.MAP: "value",
    Kind.LEVEL: "value",
}


def _unquote_usage(option: Option) -> tuple[str, str]:
    """Go's `UnquoteUsage`: a `backquoted` word in the help is the value placeholder."""
    text = option.help
    start = text.find("`")
    if start >= 0:
        end = text.find("`", start + 1)
        if end >= 0:
            name = text[start + 1 : end]
            return name, text[:start] + name + text[end + 1 :]
    return _TYPE_PLACEHOLDER[option.kind], text


def _default_suffix(option: Option) -> str:
    shown = option.format_value(option.default)
    zero = option.format_value(
        {Kind.BOOL: False, Kind.INT: 0, Kind.DURATION: 0.0, Kind.LIST: (), Kind.MAP: {}}.get(
            option.kind, ""
        )
    )
    if shown == zero:
        return ""
    if option.kind in (Kind.STR, Kind.LEVEL):
        return f" (default {_go_quote(shown)})"
    return f" (default {shown})"


def usage() -> str:
    """The usage text, flags sorted by name as Go prints them."""
    entries: list[tuple[str, str]] = []
    for option in OPTIONS:
        placeholder, text = _unquote_usage(option)
        text = f"{text} (env {option.env}){_default_suffix(option)}"
        for name in option.flags:
            head = f"  -{name}" + (f" {placeholder}" if placeholder else "")
            alias_note = "" if name == option.flag else f" (alias of -{option.flag})"
            entries.append((name, f"{head}\n    \t{text}{alias_note}\n"))
    entries.sort()
    return f"Usage of {PROGRAM}:\n" + "".join(body for _, body in entries)


def version_text() -> str:
    """What `-version` prints (no trailing newline, as upstream)."""
    return f"{__version__}, commit {COMMIT}, built at {BUILD_DATE}"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _fatal(msg: str, code: int = 1) -> NoReturn:
    logs.configure("info")
    _log.fatal(msg)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """`mc-router [flags] [automc init-db]`."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        settings, positionals = parse_command_line(args, os.environ)
    except HelpRequested:
        sys.stderr.write(usage())
        sys.exit(0)
    except UsageError as err:
        sys.stderr.write(f"{err}\n{usage()}")
        sys.exit(2)
    except ConfigError as err:
        _fatal(str(err))

    if settings.version:
        sys.stdout.write(version_text())
        sys.stdout.flush()
        sys.exit(0)

    logs.configure(settings.effective_log_level)
    # One line with every option that differs from its default, secrets masked.
    defaults = Settings().redacted()
    _log.debug("Settings", **{k: v for k, v in settings.redacted().items() if v != defaults[k]})

    if positionals[:1] == ["automc"]:
        sys.exit(_automc(positionals[1:], settings))

    from mc_router.app import run  # noqa: PLC0415 -- keep `-h`/`-version` free of app imports

    try:
        code = run(settings)
    except ConfigError as err:
        _log.fatal(f"Could not setup server: {err}")
        sys.exit(1)
    sys.exit(code)


def _automc(command: list[str], settings: Settings) -> int:
    if command[:1] != ["init-db"]:
        sys.stderr.write(f"unknown automc command: {' '.join(command) or '(none)'}\n")
        sys.stderr.write("usage: mc-router [flags] automc init-db\n")
        return 2
    try:
        # Imported by name: automc is an optional extension that may be absent.
        schema = importlib.import_module("mc_router.automc.schema")
        init_db: Callable[[Settings], int] = schema.init_db
    except (ImportError, AttributeError):
        _log.fatal("automc is not available")
        return 1
    try:
        return init_db(settings)
    except ConfigError as err:
        _log.fatal(f"Could not initialise the automc database: {err}")
        return 1
