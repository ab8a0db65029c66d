"""The automc schema (`schema.sql`) and `mc-router automc init-db`, which applies it.

The router itself only reads (`ROUTES_QUERY`) and listens (`CHANNEL`); creating the table,
function and triggers is a separate, explicit, idempotent step.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from typing import Final

import psycopg

from mc_router.automc import AutomcSettings
from mc_router.automc.dsn import describe, mask, with_defaults
from mc_router.errors import ConfigError

#: The channel the trigger notifies and every router LISTENs on.
CHANNEL: Final = "automc_routes_changed"
#: The one query a router runs: every row that is a route.
ROUTES_QUERY: Final = (
    "SELECT name, domain, address FROM servers WHERE domain != '' AND address != ''"
)
# pg_advisory_xact_lock key ("automc" in ASCII): serialises concurrent init-db runs, which
# would otherwise race on CREATE OR REPLACE FUNCTION ("tuple concurrently updated").
_LOCK_KEY: Final = 0x6175746F6D63


def schema_sql() -> str:
    """The text of `schema.sql`, shipped inside the package."""
    return files("mc_router.automc").joinpath("schema.sql").read_text(encoding="utf-8")


def apply(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Apply the schema in one transaction (idempotent)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        # No parameters: psycopg sends it as one simple query, so several statements are fine.
        conn.execute(schema_sql().encode())


def init_db(settings: AutomcSettings) -> int:
    """`mc-router automc init-db`: apply the schema to AUTOMC_DSN; print what was done.

    Returns the exit code; raises ConfigError (message free of secrets) on any failure.
    """
    dsn = settings.automc_dsn
    if not dsn:
        raise ConfigError("AUTOMC_DSN is not set: nothing to initialise")
    conninfo = with_defaults(dsn)
    where = describe(dsn)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            apply(conn)
    except psycopg.Error as exc:
        reason = mask(str(exc).strip(), dsn)
        raise ConfigError(f"could not apply the automc schema to {where}: {reason}") from None
    sys.stdout.write(
        f"automc: schema is ready in {where}: table servers, function "
        f"automc_notify_routes_changed(), triggers on channel {CHANNEL}\n"
    )
    sys.stdout.flush()
    return 0
