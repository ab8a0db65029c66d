"""Go `flag` syntax, env/flag precedence, and the entry point's exits (spec §1.1, §1.3, Q32)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import mc_router
from mc_router import cli, logs
from mc_router.cli import (
    HelpRequested,
    UsageError,
    parse_args,
    parse_command_line,
    usage,
    version_text,
)
from mc_router.errors import ConfigError
from mc_router.settings import OPTIONS, OPTIONS_BY_FLAG, Kind, Option, Settings

# -- every row, from a flag and from its env var --------------------------------------------------

SAMPLE: dict[Kind, tuple[str, object]] = {
    Kind.BOOL: ("true", True),
    Kind.INT: ("0x10", 16),
    Kind.STR: ("some value", "some value"),
    Kind.DURATION: ("1m30s", 90.0),
    Kind.LEVEL: ("DEBUG", "debug"),
    Kind.LIST: ("x, y", ("x", "y")),
    Kind.MAP: ("k=v,q=", {"k": "v", "q": ""}),
}


def _expected(option: Option) -> object:
    text, value = SAMPLE[option.kind]
    del text
    if option.kind is Kind.LIST:
        assert isinstance(option.default, tuple)
        assert isinstance(value, tuple)
        return option.default + value
    return value


@pytest.mark.parametrize("option", OPTIONS, ids=[o.flag for o in OPTIONS])
def test_every_option_from_flag(option: Option) -> None:
    text, _ = SAMPLE[option.kind]
    settings = parse_args([f"-{option.flag}={text}"], {})
    assert getattr(settings, option.name) == _expected(option)


@pytest.mark.parametrize("option", OPTIONS, ids=[o.flag for o in OPTIONS])
def test_every_option_from_env(option: Option) -> None:
    text, _ = SAMPLE[option.kind]
    settings = parse_args([], {option.env: text})
    assert getattr(settings, option.name) == _expected(option)


@pytest.mark.parametrize("option", OPTIONS, ids=[o.flag for o in OPTIONS])
def test_every_option_from_double_dash_separate_value(option: Option) -> None:
    text, _ = SAMPLE[option.kind]
    argv = [f"--{option.flag}"] if option.kind is Kind.BOOL else [f"--{option.flag}", text]
    settings = parse_args(argv, {})
    assert getattr(settings, option.name) == _expected(option)


def test_no_args_no_env_gives_defaults() -> None:
    assert parse_command_line([], {}) == (Settings(), [])


# -- precedence -----------------------------------------------------------------------------------


def test_flag_overrides_env_for_scalars() -> None:
    settings = parse_args(["-port", "2"], {"PORT": "1", "DEFAULT": "a:1"})
    assert settings.port == 2
    assert settings.default == "a:1"


def test_flag_appends_to_env_list() -> None:
    settings = parse_args(
        ["-clients-to-allow", "10.0.0.1", "-clients-to-allow=10.0.0.2,10.0.0.3"],
        {"CLIENTS_TO_ALLOW": "192.168.0.0/16"},
    )
    assert settings.clients_to_allow == ("192.168.0.0/16", "10.0.0.1", "10.0.0.2", "10.0.0.3")


def test_webhook_events_append_to_default_and_env() -> None:
    settings = parse_args(["-webhook-events", "route-removed"], {"WEBHOOK_EVENTS": "route-added"})
    assert settings.webhook_events == ("connect", "disconnect", "route-added", "route-removed")


def test_flag_merges_into_env_map() -> None:
    settings = parse_args(
        ["-mapping", "b.com=b:2,a.com=override:1", "--mapping=c.com=c:3"],
        {"MAPPING": "a.com=a:1\nz.com=z:9"},
    )
    assert settings.mapping == {
        "a.com": "override:1",
        "z.com": "z:9",
        "b.com": "b:2",
        "c.com": "c:3",
    }


def test_repeated_scalar_last_wins() -> None:
    assert parse_args(["-port", "1", "--port=2", "-port", "3"], {}).port == 3
    assert parse_args(["-debug", "-debug=false"], {}).debug is False


def test_env_error_wins_over_flags() -> None:
    # Env vars are applied while flags are registered, before the command line is read.
    with pytest.raises(ConfigError, match="environment variable DEBUG") as caught:
        parse_args(["-debug"], {"DEBUG": "yes"})
    assert not isinstance(caught.value, UsageError)


def test_aliases_set_the_motds() -> None:
    settings = parse_args(["-use-asleep-motd", "zzz", "--use-loading-motd=waking"], {})
    assert settings.auto_scale_asleep_motd == "zzz"
    assert settings.auto_scale_loading_motd == "waking"
    # Aliases are flags only; there is no USE_ASLEEP_MOTD env var.
    assert parse_args([], {"USE_ASLEEP_MOTD": "x"}).auto_scale_asleep_motd == ""


def test_alias_and_primary_last_wins() -> None:
    settings = parse_args(["-auto-scale-asleep-motd", "a", "-use-asleep-motd", "b"], {})
    assert settings.auto_scale_asleep_motd == "b"


# -- Go flag syntax -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["-debug"], ["--debug"], ["-debug=true"], ["-debug=1"], ["-debug=T"]]
)
def test_bool_forms_true(argv: list[str]) -> None:
    assert parse_args(argv, {}).debug is True


@pytest.mark.parametrize("argv", [["-debug=false"], ["--debug=0"], ["-debug=F"]])
def test_bool_forms_false(argv: list[str]) -> None:
    assert parse_args(argv, {"DEBUG": "true"}).debug is False


def test_bool_with_separate_value_stops_parsing() -> None:
    settings, positionals = parse_command_line(["-debug", "false", "-port", "1"], {})
    assert settings.debug is True
    assert settings.port == 25565  # silently ignored
    assert positionals == ["false", "-port", "1"]


def test_first_positional_stops_parsing() -> None:
    settings, positionals = parse_command_line(["-port", "1", "extra", "-port", "2"], {})
    assert settings.port == 1
    assert positionals == ["extra", "-port", "2"]


def test_double_dash_ends_flags() -> None:
    settings, positionals = parse_command_line(["-port", "1", "--", "-port", "2"], {})
    assert settings.port == 1
    assert positionals == ["-port", "2"]


def test_single_dash_is_positional() -> None:
    settings, positionals = parse_command_line(["-", "-port", "2"], {})
    assert settings.port == 25565
    assert positionals == ["-", "-port", "2"]


def test_value_may_start_with_dash() -> None:
    assert parse_args(["-port", "-5"], {}).port == -5
    assert parse_args(["-default", "--x"], {}).default == "--x"


def test_equals_value_may_contain_equals_and_be_empty() -> None:
    assert parse_args(["-default=a=b"], {}).default == "a=b"
    assert parse_args(["-default="], {"DEFAULT": "x"}).default == ""


def test_automc_positionals_after_flags() -> None:
    settings, positionals = parse_command_line(
        ["-port", "1", "automc", "init-db"], {"AUTOMC_DSN": "postgres://x"}
    )
    assert settings.port == 1
    assert settings.automc_dsn == "postgres://x"
    assert positionals == ["automc", "init-db"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["--nope=1"], "flag provided but not defined: -nope"),
        (["-Port", "1"], "flag provided but not defined: -Port"),
        (["-port"], "flag needs an argument: -port"),
        (["-port", "abc"], 'invalid value "abc" for flag -port: parse error'),
        (
            ["-port=99999999999999999999"],
            'invalid value "99999999999999999999" for flag -port: value out of range',
        ),
        (
            ["-backend-dial-timeout", "10"],
            'invalid value "10" for flag -backend-dial-timeout: parse error',
        ),
        (
            ["-log-level", "loud"],
            'invalid value "loud" for flag -log-level: not a valid logrus Level: "loud"',
        ),
        (["-debug=yes"], 'invalid boolean value "yes" for -debug: parse error'),
        (["-debug="], 'invalid boolean value "" for -debug: parse error'),
        (["---debug"], "bad flag syntax: ---debug"),
        (["-=x"], "bad flag syntax: -=x"),
        (["--=x"], "bad flag syntax: --=x"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv, {})
    assert str(caught.value) == message


@pytest.mark.parametrize("argv", [["-h"], ["-help"], ["--help"], ["--h"], ["-port", "1", "-h"]])
def test_help(argv: list[str]) -> None:
    with pytest.raises(HelpRequested):
        parse_args(argv, {})


def test_help_after_positional_is_ignored() -> None:
    assert parse_command_line(["x", "-h"], {})[1] == ["x", "-h"]


# -- usage text -----------------------------------------------------------------------------------


def test_usage_lists_every_flag_with_env_and_default() -> None:
    text = usage()
    assert text.startswith("Usage of mc-router:\n")
    for option in OPTIONS:
        for name in option.flags:
            assert f"\n  -{name}" in text
        assert f"(env {option.env})" in text
    assert "  -port port\n    \tThe port bound to listen for Minecraft client connections " in text
    assert "(env PORT) (default 25565)\n" in text
    assert '(env METRICS_BACKEND) (default "discard")\n' in text
    assert "(env BACKEND_DIAL_TIMEOUT) (default 2s)\n" in text
    assert "(env AUTO_SCALE_WEBHOOK_WAKE_TIMEOUT) (default 1m0s)\n" in text
    assert "(env WEBHOOK_EVENTS) (default connect,disconnect)\n" in text
    assert "  -api-binding host:port\n" in text
    assert "  -mapping value\n" in text
    assert "  -log-level value\n" in text
    assert "  -auto-scale-webhook-headers value\n" in text
    assert "  -debug\n" in text  # bools have no placeholder
    assert "(env DEBUG)\n" in text  # ... and no "(default false)"
    assert "  -use-asleep-motd string\n" in text


def test_usage_is_sorted() -> None:
    names = [line.split()[0] for line in usage().splitlines()[1:] if line.startswith("  -")]
    assert names == sorted(names)
    assert len(names) == sum(len(o.flags) for o in OPTIONS)


def test_version_text() -> None:
    assert version_text() == f"{mc_router.__version__}, commit none, built at unknown"


# -- main() in-process ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.unconfigure()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    return monkeypatch


def _exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    return caught.value.code


def test_main_version_no_newline(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["-version"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{mc_router.__version__}, commit none, built at unknown"
    assert err == ""


def test_main_version_from_env(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("VERSION", "true")  # Q32: keep
    assert _exit_code([]) == 0
    assert capsys.readouterr().out.endswith("built at unknown")


def test_main_bad_version_env(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("VERSION", "yes")  # Q32: a non-bool VERSION kills startup
    assert _exit_code(["-port", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "level=fatal" in err
    assert "failed to set from environment variable VERSION: parse error" in err


def test_main_unknown_flag(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["-nope"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("flag provided but not defined: -nope\nUsage of mc-router:\n")


def test_main_help(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == usage()


def _install_fake_app(monkeypatch: pytest.MonkeyPatch, run: object) -> None:
    module = types.ModuleType("mc_router.app")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mc_router.app", module)


def test_main_runs_app_with_settings(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []

    def run(settings: Settings) -> int:
        seen.append(settings)
        return 3

    _install_fake_app(clean_env, run)
    clean_env.setenv("DEFAULT", "b:1")
    assert _exit_code(["-port", "7", "leftover"]) == 3
    assert seen == [Settings(port=7, default="b:1")]


def test_main_config_error_from_run(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(settings: Settings) -> int:
        raise ConfigError("influx addr is required")

    _install_fake_app(clean_env, run)
    assert _exit_code(["-metrics-backend", "influxdb"]) == 1
    err = capsys.readouterr().err
    assert "level=fatal" in err
    assert "Could not setup server: influx addr is required" in err


def test_main_sets_log_level(clean_env: pytest.MonkeyPatch) -> None:
    levels: list[int] = []

    def run(settings: Settings) -> int:
        levels.append(logging.getLogger("mc_router").level)
        return 0

    _install_fake_app(clean_env, run)
    assert _exit_code(["-log-level=warn"]) == 0
    assert _exit_code(["-log-level=warn", "-debug"]) == 0
    assert _exit_code(["-debug", "-trace"]) == 0
    assert levels == [logging.WARNING, logging.DEBUG, logs.TRACE]


def test_main_logs_redacted_settings_at_debug(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_fake_app(clean_env, lambda s: 0)
    clean_env.setenv("AUTOMC_WAKER_TOKEN", "tok-SECRET1")
    argv = ["-debug", "-api-token", "tok-SECRET2", "-automc-dsn", "postgres://u:SECRET3@h/db"]
    assert _exit_code(argv) == 0
    err = capsys.readouterr().err
    assert "msg=Settings" in err
    assert "api_token=***" in err
    assert "SECRET" not in err


def test_main_automc_init_db(clean_env: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []

    def init_db(settings: Settings) -> int:
        seen.append(settings)
        return 0

    module = types.ModuleType("mc_router.automc.schema")
    module.init_db = init_db  # type: ignore[attr-defined]
    clean_env.setitem(sys.modules, "mc_router.automc.schema", module)
    clean_env.setenv("AUTOMC_DSN", "postgres://db/automc")
    assert _exit_code(["-port", "1", "automc", "init-db"]) == 0
    assert _exit_code(["automc", "init-db"]) == 0
    assert [s.port for s in seen] == [1, 25565]
    assert all(s.automc_dsn == "postgres://db/automc" for s in seen)


def test_main_automc_unavailable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setitem(sys.modules, "mc_router.automc.schema", None)  # import raises ImportError
    assert _exit_code(["automc", "init-db"]) == 1
    assert "automc is not available" in capsys.readouterr().err


def test_main_automc_unknown_command(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["automc", "drop-db"]) == 2
    assert "unknown automc command: drop-db" in capsys.readouterr().err


# -- the real process -----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {o.env for o in OPTIONS}}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mc_router", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_process_unknown_flag_exits_2() -> None:
    proc = _run(["-nope"])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("flag provided but not defined: -nope\nUsage of mc-router:\n")


def test_process_help_exits_0() -> None:
    proc = _run(["-h"])
    assert proc.returncode == 0
    assert proc.stderr == usage()


def test_process_version_exact() -> None:
    proc = _run(["--version"])
    assert proc.returncode == 0
    assert proc.stdout == f"{mc_router.__version__}, commit none, built at unknown"


def test_process_bad_env_exits_1() -> None:
    proc = _run([], VERSION="1.20.4")
    assert proc.returncode == 1
    assert "failed to set from environment variable VERSION" in proc.stderr


def test_flag_names_cover_table() -> None:
    assert set(OPTIONS_BY_FLAG) == {n for o in OPTIONS for n in o.flags}
