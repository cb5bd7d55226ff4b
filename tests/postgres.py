"""A real PostgreSQL server for tests: Debian's binaries, a cluster in a temp dir, a free port.

postgres refuses to run as root, so as root the cluster belongs to the `postgres` user (made
by the Debian package); otherwise it runs as whoever runs the tests. The socket lives in the
cluster's own directory, and the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .servers import free_port


def binaries() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    """One running cluster; `url` is what --log-db takes."""

    bin: Path
    data: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://tabship:secret@127.0.0.1:{self.port}/tabship"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs = {"user": self.user} if self.user else {}
        return subprocess.run(
            list(args), check=check, capture_output=True, text=True, timeout=120, **kwargs
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data / "db"),
            "-o",
            options,
            "-l",
            str(self.data / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data / "db"),
            "-m",
            mode,
            "-w",
            "stop",
            check=False,
        )

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql as the cluster's superuser; its output."""
        done = self._run(
            str(self.bin / "psql"),
            "-h",
            str(self.data),
            "-p",
            str(self.port),
            "-d",
            database,
            "-U",
            "postgres",
            "-At",
            "-c",
            statement,
        )
        return done.stdout.strip()


def start_postgres() -> Postgres:
    """initdb a cluster in a new temp dir, start it, create the tabship role and database.

    The dir is made directly under the temp root: pytest's own temp tree is private to the
    user running the tests, which the postgres user could not enter.
    """
    found = binaries()
    if found is None:
        pytest.skip("PostgreSQL is missing; `make test` installs Debian's postgresql package")
    user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="tabship-pg-"))
    data = base / "pg"
    data.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        for path in (base, data):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(base, 0o755)
    cluster = Postgres(found, data, free_port(), user)
    cluster._run(
        str(found / "initdb"),
        "-D",
        str(data / "db"),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
    )
    cluster.start()
    cluster.sql("CREATE ROLE tabship LOGIN PASSWORD 'secret'")
    cluster.sql("CREATE DATABASE tabship OWNER tabship")
    return cluster


def wait_stopped(cluster: Postgres, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (cluster.data / "db" / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def remove(cluster: Postgres) -> None:
    cluster.stop("immediate")
    wait_stopped(cluster)
    shutil.rmtree(cluster.data.parent, ignore_errors=True)
