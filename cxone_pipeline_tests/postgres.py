"""A throwaway PostgreSQL server from the distribution's packages, on a loopback port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cxone_pipeline_tests.servers import free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries: `python3 -m cxone_pipeline.devenv test` installs them."""


def postgres_bin() -> Path:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    if found is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb) not found: install the distribution's "
            "'postgresql' package (python3 -m cxone_pipeline.devenv test does it on Debian)"
        )
    return Path(found).resolve().parent


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    db: str

    def env(self) -> dict[str, str]:
        """The variables `dagster.postgres.yaml` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db,
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": "",
        }


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb + pg_ctl start in a fresh folder; PostgreSQL refuses to run as root, so as root
    the server runs as the `postgres` account, in a folder outside root's private temp dirs."""
    bin_dir = postgres_bin()
    workdir = Path(tempfile.mkdtemp(prefix="cxone-pg-"))
    data = workdir / "pgdata"
    data.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(workdir, account.pw_uid, account.pw_gid)
        os.chown(data, account.pw_uid, account.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if run_as else pwd.getpwuid(os.geteuid()).pw_name
    port = free_port()

    def pg(*args: str | Path) -> None:
        subprocess.run([*run_as, *map(str, args)], check=True, capture_output=True, cwd=workdir)

    pg(bin_dir / "initdb", "-D", data, "-U", user, "--auth=trust", "--no-sync")
    pg(
        bin_dir / "pg_ctl", "-D", data, "-w", "-l", workdir / "postgres.log", "start",
        "-o", f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off",
    )  # fmt: skip
    try:
        pg(bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, "dagster")
        yield Postgres("127.0.0.1", port, user, "dagster")
    finally:
        pg(bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
