"""A real PostgreSQL 15 server for the tests, started in a temporary folder and stopped after.

The cluster's metadata store is PostgreSQL (k8s/metadata-store.yaml), so the tests that prove the
store's paths run against the same server, never a double. `initdb` and `postgres` must be on PATH
(Debian's postgresql-15 puts them in /usr/lib/postgresql/15/bin; `.ci/run` installs it): without
them the tests fail, they never skip. PostgreSQL refuses to run as root, so as root the server runs
as the `postgres` user (`runuser`). Password authentication (scram-sha-256) is on, as on a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import subprocess
import tempfile

from tests.ports import free_ports

USER = "vocdet"
PASSWORD = "test-password-4e1b"


@dataclasses.dataclass
class PostgresServer:
    """A running server: `url(database)` is a metadata URL without the password (`PASSWORD`)."""

    folder: str
    port: int
    bin_dir: str

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database owned by the test user; its metadata URL."""
        self._psql(f'CREATE DATABASE "{name}" OWNER {USER}')
        return self.url(name)

    def stop(self) -> None:
        self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"])

    def start(self) -> None:
        self._as_owner([
            os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-w", "-l", os.path.join(self.folder, "server.log"),
            "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start",
        ])  # fmt: skip

    @property
    def data(self) -> str:
        return os.path.join(self.folder, "data")

    def _psql(self, statement: str) -> None:
        self._as_owner([os.path.join(self.bin_dir, "psql"), "-h", self.folder, "-p", str(self.port), "-U", "postgres",
                        "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement])

    def _as_owner(self, command: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        completed = subprocess.run(prefix + command, capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, f"{' '.join(command)}: {completed.stderr[-2000:]}"


def _bin_dir() -> str:
    found = shutil.which("initdb")
    for candidate in [os.path.dirname(os.path.realpath(found)) if found else "", *sorted(glob.glob("/usr/lib/postgresql/*/bin"))]:
        if candidate and all(os.path.exists(os.path.join(candidate, tool)) for tool in ("initdb", "pg_ctl", "psql")):
            return candidate
    raise AssertionError(
        "PostgreSQL's initdb, pg_ctl and psql are not installed: the metadata-store tests need a real server "
        "(apt-get install postgresql-15, as .ci/run does)"
    )


@contextlib.contextmanager
def postgres_server():
    """Starts PostgreSQL with password authentication on a free port; stops it and removes its folder after."""
    bin_dir = _bin_dir()
    folder = tempfile.mkdtemp(prefix="vocdet-postgres-")
    os.chmod(folder, 0o777)
    (port,) = free_ports(1)
    server = PostgresServer(folder, port, bin_dir)
    password_file = os.path.join(folder, "superuser-password")
    with open(password_file, "w") as handle:
        handle.write("unused-superuser-password\n")
    os.chmod(password_file, 0o644)
    server._as_owner([os.path.join(bin_dir, "initdb"), "-D", server.data, "-U", "postgres", "--auth-local=trust",
                      "--auth-host=scram-sha-256", f"--pwfile={password_file}"])
    server.start()
    try:
        server._psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)

