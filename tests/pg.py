"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, start on 127.0.0.1.

    with PostgresCluster.create() as cluster:      # initdb + start on a free port
        dsn = cluster.create_database("t1")        # a fresh database, trust auth
        cluster.stop(); cluster.start()            # the SAME cluster, same port and data

Built for speed (`fsync=off`, no WAL sync) and for running as root, which `initdb` refuses:
when euid == 0 the data directory is handed to an unprivileged account (`postgres` if it
exists, else `nobody`) and every server binary runs through `runuser`. Local connections use
trust auth, except `PASSWORD_USER`, who must give `PASSWORD` over TCP (scram-sha-256), so the
DSN-with-password path is exercised for real. Missing binaries raise `PostgresUnavailable`
with a message saying what to install: tests never skip silently.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

SUPERUSER: Final = "postgres"
PASSWORD_USER: Final = "automc_pw"
# A password with characters that need quoting in a URL, to exercise DSN parsing and masking.
PASSWORD: Final = "s3cr:t@pw/x"
# Binaries are looked up on PATH first, then where Debian/Ubuntu packages put them.
_SEARCH: Final = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")
# pg_ctl -w waits at most this long for the server to start or stop.
_PG_CTL_TIMEOUT: Final = 30


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries cannot be found or the cluster cannot start."""


def find_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        (p for pattern in _SEARCH for p in glob.glob(pattern) if Path(p, "initdb").exists()),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
    )
    if candidates:
        return Path(candidates[-1])
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        + ", ".join(_SEARCH)
        + ": install the postgresql server package (e.g. apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> str | None:
    """The account to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresUnavailable("running as root and neither 'postgres' nor 'nobody' exists")


class PostgresCluster:
    """One initdb'd cluster in a private temp dir; `start()`/`stop()` may be repeated."""

    def __init__(self, base: Path, bin_dir: Path, port: int, run_as: str | None) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "sock"
        self.logfile = base / "postgres.log"
        self.bin_dir = bin_dir
        self.port = port
        self.run_as = run_as
        self.host = "127.0.0.1"
        self._databases = 0

    @classmethod
    @contextlib.contextmanager
    def create(cls, *, start: bool = True) -> Iterator[PostgresCluster]:
        """initdb a new cluster (and start it unless told not to); remove it afterwards."""
        bin_dir = find_bin_dir()
        run_as = _unprivileged_user()
        # Not under pytest's tmp_path: as root that is mode 0700, which `postgres` cannot enter.
        base = Path(tempfile.mkdtemp(prefix="mcr-pg-"))
        cluster = cls(base, bin_dir, free_port(), run_as)
        try:
            cluster.initdb()
            if start:
                cluster.start()
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop()
            shutil.rmtree(base, ignore_errors=True)

    # -- server control --------------------------------------------------------------------

    def _run(self, *argv: str) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=_PG_CTL_TIMEOUT + 30
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{argv[0]} failed ({result.returncode}): {result.stderr or result.stdout}"
                + self._log_tail()
            )

    def _log_tail(self) -> str:
        try:
            return "\n--- postgres.log ---\n" + self.logfile.read_text()[-2000:]
        except OSError:
            return ""

    def initdb(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.base, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", SUPERUSER,
            "-E", "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=trust",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        hba = self.data / "pg_hba.conf"
        # First match wins: the password user must authenticate, everyone else is trusted.
        rules = f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
        hba.write_text(rules + hba.read_text())

    def start(self, *, tcp: bool = True) -> None:
        """Start the server; with tcp=False it listens only on its unix socket, so clients
        that dial 127.0.0.1 (the code under test) cannot reach it yet."""
        options = " ".join(
            [
                f"-c port={self.port}",
                "-c listen_addresses=" + (self.host if tcp else "''"),
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options,
            "-w", "-t", str(_PG_CTL_TIMEOUT), "start",
        )  # fmt: skip
        if not (self.data / ".mcr-roles").exists():
            self._create_roles()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `fast` disconnects clients at once, as a crash or restart would."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(_PG_CTL_TIMEOUT), "stop"
        )

    def _create_roles(self) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(PASSWORD_USER), sql.Literal(PASSWORD)
                )
            )
        (self.data / ".mcr-roles").touch()

    # -- connection strings ----------------------------------------------------------------

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """Superuser over the unix socket (works while TCP is off)."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def dsn(self, dbname: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        """A libpq keyword DSN over TCP 127.0.0.1."""
        text = f"host={self.host} port={self.port} dbname={dbname} user={user}"
        if password is not None:
            escaped = password.replace("\\", "\\\\").replace("'", "\\'")
            text += f" password='{escaped}'"
        return text

    def url(self, dbname: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        """The same as a `postgresql://` URL (password percent-encoded)."""
        from urllib.parse import quote  # noqa: PLC0415 -- only this helper needs it

        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}?sslmode=disable"

    def create_database(self, prefix: str = "t") -> str:
        """CREATE a fresh database owned by the password user; return its name."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(PASSWORD_USER)
                )
            )
        return name
