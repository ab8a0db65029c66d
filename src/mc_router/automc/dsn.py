"""`AUTOMC_DSN` handling: validate it once, add connection defaults, describe it without secrets.

Any libpq DSN is accepted, keyword (`host=db user=mc sslmode=require`) or URL
(`postgresql://mc:pw@db/automc?sslmode=require`). Options the user set are never overridden;
we only add what a long-lived LISTEN connection needs when the user left it unset.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mc_router.errors import ConfigError

# Defaults for the one persistent connection. TCP keepalives notice a silently dead peer (a
# partition, a vanished NAT entry) in about idle + interval * count = 10 + 3 * 5 = 25 s even when
# nothing is sent; libpq's connect_timeout bounds each connection attempt (its minimum is 2 s).
CONNECTION_DEFAULTS: Final[dict[str, str]] = {
    "application_name": "mc-router-automc",
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}

# Shown in logs and messages, in this order, when present; never the password.
_DESCRIBED: Final = ("host", "hostaddr", "port", "dbname", "user", "sslmode")


def parse(dsn: str) -> dict[str, str]:
    """The DSN's options; ConfigError (with no secret in it) if libpq would refuse it."""
    if not dsn.strip():
        raise ConfigError("AUTOMC_DSN is empty")
    try:
        options = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        # libpq's message names the bad option, never its value; still mask to be sure.
        raise ConfigError(f"invalid AUTOMC_DSN: {mask(str(exc), dsn)}") from None
    return {key: str(value) for key, value in options.items() if value is not None}


def with_defaults(dsn: str) -> str:
    """The DSN plus `CONNECTION_DEFAULTS` for every option it does not set."""
    options = parse(dsn)
    missing = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in options}
    return make_conninfo(dsn, **missing)


def describe(dsn: str) -> str:
    """`host=db port=5432 dbname=automc user=mc` -- safe to log: no password, ever."""
    try:
        options = parse(dsn)
    except ConfigError:
        return "(invalid DSN)"
    shown = [f"{key}={options[key]}" for key in _DESCRIBED if options.get(key)]
    return " ".join(shown) if shown else "(libpq defaults)"


def mask(text: str, dsn: str) -> str:
    """`text` with the DSN's password (if any) replaced by `***` -- for error messages."""
    if dsn and dsn in text:
        text = text.replace(dsn, describe(dsn))
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        text = text.replace(str(password), "***").replace(quote(str(password), safe=""), "***")
    return text
