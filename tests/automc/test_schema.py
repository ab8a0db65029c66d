"""`mc-router automc init-db`: applies the shipped schema idempotently, says so, keeps secrets."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from mc_router.automc import schema
from mc_router.errors import ConfigError
from tests.pg import PASSWORD, PASSWORD_USER, PostgresCluster, free_port


@dataclasses.dataclass(frozen=True)
class Settings:
    automc_dsn: str
    automc_waker_url: str = ""
    automc_waker_token: str = ""


@pytest.fixture
def empty_db(pg_cluster: PostgresCluster) -> str:
    """A fresh database without the schema; its password DSN."""
    return pg_cluster.dsn(pg_cluster.create_database(), user=PASSWORD_USER, password=PASSWORD)


def test_schema_sql_is_the_seed_plus_truncate() -> None:
    sql = schema.schema_sql()
    assert "CREATE TABLE IF NOT EXISTS servers" in sql
    assert "pg_notify('automc_routes_changed', '')" in sql
    assert "AFTER INSERT OR UPDATE OF domain, address, state OR DELETE ON servers" in sql
    assert "AFTER TRUNCATE ON servers" in sql


def test_init_db_applies_the_schema_and_says_so(
    empty_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schema.init_db(Settings(empty_db)) == 0
    out = capsys.readouterr().out
    assert "schema is ready" in out
    assert f"user={PASSWORD_USER}" in out
    assert PASSWORD not in out
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(f"LISTEN {schema.CHANNEL}")
        conn.execute("INSERT INTO servers (name, domain, address) VALUES ('a', 'a.com', 'a:1')")
        row = conn.execute(schema.ROUTES_QUERY).fetchall()
        assert row == [("a", "a.com", "a:1")]
        assert [n.channel for n in conn.notifies(timeout=5, stop_after=1)] == [schema.CHANNEL]


def test_init_db_is_idempotent_and_keeps_data(empty_db: str) -> None:
    assert schema.init_db(Settings(empty_db)) == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO servers (name, domain, address) VALUES ('a', 'a.com', 'a:1')")
    assert schema.init_db(Settings(empty_db)) == 0
    # Concurrent runs serialise on the advisory lock instead of failing.
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: schema.init_db(Settings(empty_db)), range(4))) == [0] * 4
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM servers").fetchone() == (1,)
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'servers'::regclass "
            "AND NOT tgisinternal ORDER BY tgname"
        ).fetchall()
        assert triggers == [("automc_servers_route_notify",), ("automc_servers_truncate_notify",)]


def test_init_db_without_dsn() -> None:
    with pytest.raises(ConfigError, match="AUTOMC_DSN is not set"):
        schema.init_db(Settings(""))


def test_init_db_with_invalid_dsn() -> None:
    with pytest.raises(ConfigError, match="invalid AUTOMC_DSN"):
        schema.init_db(Settings("host=x password=hunter2 bogus=1"))


def test_init_db_unreachable_names_the_target_not_the_password() -> None:
    dsn = f"postgresql://mc:hunter2@127.0.0.1:{free_port()}/automc?connect_timeout=2"
    with pytest.raises(ConfigError) as caught:
        schema.init_db(Settings(dsn))
    message = str(caught.value)
    assert "could not apply the automc schema to host=127.0.0.1" in message
    assert "dbname=automc user=mc" in message
    assert "hunter2" not in message


def test_init_db_wrong_password(pg_cluster: PostgresCluster, empty_db: str) -> None:
    name = empty_db.split("dbname=")[1].split(maxsplit=1)[0]
    dsn = pg_cluster.url(name, user=PASSWORD_USER, password="n0t-it")
    with pytest.raises(ConfigError, match="password authentication failed") as caught:
        schema.init_db(Settings(dsn))
    assert "n0t-it" not in str(caught.value)


async def test_cli_command(empty_db: str) -> None:
    env = {**os.environ, "AUTOMC_DSN": empty_db}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mc_router", "automc", "init-db",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"schema is ready" in out
    assert PASSWORD.encode() not in out + err


async def test_cli_command_failure_is_clear(empty_db: str) -> None:
    env = {**os.environ, "AUTOMC_DSN": f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mc_router", "automc", "init-db",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"could not apply the automc schema" in out + err
    assert b"hunter2" not in out + err
