"""AUTOMC_DSN: both libpq forms, defaults only where unset, never shown with a secret."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from mc_router.automc import dsn
from mc_router.errors import ConfigError


def test_defaults_fill_only_what_is_unset() -> None:
    options = conninfo_to_dict(
        dsn.with_defaults("postgresql://mc:pw@db/automc?sslmode=require&connect_timeout=9")
    )
    assert options["sslmode"] == "require"
    assert options["connect_timeout"] == "9"
    assert options["keepalives"] == "1"
    assert options["application_name"] == "mc-router-automc"
    assert options["password"] == "pw"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://mc:p%40ss%3Aw@db:6543/automc?sslmode=verify-full",
        "host=db port=6543 dbname=automc user=mc password='p@ss:w' sslmode=verify-full",
    ],
)
def test_describe_never_shows_the_password(text: str) -> None:
    assert dsn.describe(text) == "host=db port=6543 dbname=automc user=mc sslmode=verify-full"
    assert dsn.mask(f"failed: {text} / p@ss:w / p%40ss%3Aw", text).count("p@ss") == 0
    assert "p%40ss" not in dsn.mask(f"{text} p%40ss%3Aw", text)


@pytest.mark.parametrize("text", ["", "   ", "host=db bogus=1", "postgresql://db/x?bogus=1"])
def test_invalid_dsn_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        dsn.parse(text)
