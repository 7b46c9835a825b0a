"""A real MySQL-protocol server (Debian's MariaDB) for the tests, started in a temporary folder and stopped after.

The cluster's metadata store is MySQL (k8s/metadata-store.yaml), so the tests that prove the store's
paths run against a real server, never a double: MariaDB 10.11 here (`.ci/run` installs
`mariadb-server`), which ML Metadata's MySQL client speaks to as to MySQL. Without it the tests fail,
they never skip. As root, the server runs as the `mysql` user (`runuser`); password authentication
is on, as on a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time

from tests.ports import free_ports

USER = "vocdet"
PASSWORD = "test-password-4e1b"
_TOOLS = ("mariadb-install-db", "mariadbd", "mariadb")


@dataclasses.dataclass
class MysqlServer:
    """A running server: `url(database)` is a metadata URL without the password (`PASSWORD`)."""

    folder: str
    port: int
    process: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"mysql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database the test user may use; its metadata URL."""
        self.sql(f"CREATE DATABASE `{name}`; GRANT ALL ON `{name}`.* TO '{USER}'@'%'")
        return self.url(name)

    def sql(self, statements: str) -> None:
        completed = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "--user=root", "--execute", statements],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-2000:]

    @property
    def socket(self) -> str:
        return os.path.join(self.folder, "mysqld.sock")

    def start(self) -> None:
        prefix = ["runuser", "-u", "mysql", "--"] if os.geteuid() == 0 else []
        log = open(os.path.join(self.folder, "server.log"), "a")
        self.process = subprocess.Popen(
            [*prefix, "mariadbd", "--no-defaults", f"--datadir={self.folder}/data", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.socket}", f"--pid-file={self.folder}/mysqld.pid",
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(self.socket) and subprocess.run(
                ["mariadb", f"--socket={self.socket}", "--user=root", "--execute", "SELECT 1"], capture_output=True
            ).returncode == 0:
                return
            assert self.process.poll() is None, open(os.path.join(self.folder, "server.log")).read()[-2000:]
            time.sleep(0.3)
        raise AssertionError("MariaDB did not start in 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.process = None


@contextlib.contextmanager
def mysql_server():
    """Starts MariaDB with a password-authenticated user on a free port; stops it and removes its folder after."""
    missing = [tool for tool in _TOOLS if not shutil.which(tool)]
    assert not missing, (
        f"MariaDB's {', '.join(missing)} not installed: the metadata-store tests need a real MySQL server "
        "(apt-get install mariadb-server, as .ci/run does)"
    )
    folder = tempfile.mkdtemp(prefix="vocdet-mysql-")
    os.chmod(folder, 0o777)
    (port,) = free_ports(1)
    prefix = ["runuser", "-u", "mysql", "--"] if os.geteuid() == 0 else []
    completed = subprocess.run(
        [*prefix, "mariadb-install-db", "--no-defaults", f"--datadir={folder}/data", "--skip-test-db",
         "--auth-root-authentication-method=socket"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    server = MysqlServer(folder, port)
    server.start()
    try:
        server.sql(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
