"""The metadata store's URL, its connection config, and a connection that waits for the store.

URLs (`kubeflow.metadata`, `vocdet run --package --metadata`):

- `mysql://USER@HOST[:PORT]/DATABASE`: ML Metadata 1.16's own MySQL client
  (`ConnectionConfig.mysql`), the store `k8s/metadata-store.yaml` deploys (MySQL 8.0; MariaDB too);
- `grpc://HOST[:PORT]`: an ML Metadata gRPC server, such as KFP's `metadata-grpc-service` on a KFP
  release that still has it;
- `sqlite:///PATH`: a file, as `vocdet run` uses.

`postgresql://` is refused: ML Metadata 1.16's PostgreSQL backend builds SQL that breaks on a string
holding a backslash (tested: `tests/test_metadata_store.py`), and TFX records such strings, e.g. the
error message of every failed execution.

The password is never in the URL (it would end up in the compiled package, which KFP stores and
shows): the tasks read it from `$VOCDET_METADATA_PASSWORD`, which kfp-kubernetes fills from a
Kubernetes secret.

`connect` waits for a store that is not up yet (a pod starting, a database restarting) with
backoff, for a bounded time, and then fails in one line naming the host and what to check. A store
that refuses the credentials fails at once. ML Metadata creates its schema on the first connection,
and concurrent first connections to an empty database can fail ("MLMDEnv table exists but no
schema_version", kubeflow/metadata#228): those are retried too, and `prepare` creates (or upgrades)
the schema once before the tasks fan out. ML Metadata's MySQL
client gives no reason when it cannot connect, so the server's own greeting tells a server that is
not up from one that refused the credentials.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
import urllib.parse

# The environment variable the store's password is read from, in every task and command.
PASSWORD_ENV = "VOCDET_METADATA_PASSWORD"
DEFAULT_PORTS = {"mysql": 3306, "grpc": 8080}
SCHEMES = ("mysql", "grpc", "sqlite")
# Schemes ML Metadata 1.16 connects to but vocdet refuses, and why.
REFUSED_SCHEMES = {
    "postgresql": "ML Metadata 1.16's PostgreSQL backend cannot store a string holding a backslash (TFX records "
    "such strings: every failed execution's message); use mysql:// (MySQL 8.0 or MariaDB)",
}
# How long a task waits for a store that is not up, by default (a database pod's start, a restart).
DEFAULT_WAIT_SECONDS = 300.0
# Backoff between attempts: doubling from the first, capped, with jitter (tasks start together).
_FIRST_DELAY_SECONDS = 1.0
_MAX_DELAY_SECONDS = 15.0

# What the store answered when it is not there yet, or not ready (the MySQL client's and gRPC's words).
_UNREACHABLE = (
    "can't connect to mysql server",
    "unknown mysql server host",
    "lost connection to mysql server",
    "failed to connect to all addresses",
    "deadline exceeded",
)
# Concurrent first connections creating the schema (safe to retry: the first one wins).
_SCHEMA_RACE = ("mlmdenv table exists but no schema_version", "already exists", "deadlock", "duplicate entry",
                "lock wait timeout", "concurrent connection to the empty database", "table definition has changed")
# The credentials were refused: waiting does not help.
_REFUSED = ("access denied for user",)


class StoreError(Exception):
    """The metadata store cannot be used: one line naming the store and what to check."""


@dataclasses.dataclass(frozen=True)
class StoreUrl:
    """A parsed metadata URL (see the module docstring); it never holds a password."""

    scheme: str
    host: str = ""
    port: int = 0
    user: str = ""
    database: str = ""
    path: str = ""

    @classmethod
    def parse(cls, url: str, setting: str = "kubeflow.metadata") -> "StoreUrl":
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme
        if scheme in REFUSED_SCHEMES:
            raise ValueError(f"{setting}: {scheme}:// is not supported: {REFUSED_SCHEMES[scheme]}")
        if scheme not in SCHEMES:
            raise ValueError(f"{setting}: {url!r} is not a metadata URL ({', '.join(s + '://' for s in SCHEMES)})")
        if scheme == "sqlite":
            path = parts.path if not parts.netloc else parts.netloc + parts.path
            if not path:
                raise ValueError(f"{setting}: {url!r} names no file (sqlite:///path/to/metadata.sqlite)")
            return cls("sqlite", path=path)
        if parts.password is not None:
            raise ValueError(
                f"{setting}: the URL holds a password; leave it out (it would be compiled into the package) and put "
                f"it in the store's secret (kubeflow.metadata_secret), which the tasks read as ${PASSWORD_ENV}"
            )
        if not parts.hostname:
            raise ValueError(f"{setting}: {url!r} names no host")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"{setting}: {url!r} has a port that is not a number") from None
        database = parts.path.lstrip("/")
        if scheme == "grpc":
            if database or parts.username:
                raise ValueError(f"{setting}: a grpc:// store is HOST:PORT only, got {url!r}")
            return cls("grpc", host=parts.hostname, port=port)
        if not parts.username or not database:
            raise ValueError(f"{setting}: {url!r} needs a user and a database ({scheme}://USER@HOST:PORT/DATABASE)")
        if parts.query:
            raise ValueError(f"{setting}: {url!r} has options ({parts.query}); vocdet's store URL takes none")
        return cls(scheme, host=parts.hostname, port=port, user=parts.username, database=database)

    @property
    def needs_password(self) -> bool:
        return self.scheme == "mysql"

    def __str__(self) -> str:
        if self.scheme == "sqlite":
            return f"sqlite://{self.path}" if self.path.startswith("/") else f"sqlite:{self.path}"
        if self.scheme == "grpc":
            return f"grpc://{self.host}:{self.port}"
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.database}"

    def connection_config(self, password: str | None = None):
        """ML Metadata's connection config (`ConnectionConfig`, or `MetadataStoreClientConfig` for gRPC)."""
        from ml_metadata.proto import metadata_store_pb2

        if self.scheme == "grpc":
            return metadata_store_pb2.MetadataStoreClientConfig(host=self.host, port=self.port)
        config = metadata_store_pb2.ConnectionConfig()
        if self.scheme == "sqlite":
            config.sqlite.filename_uri = self.path
            config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        else:
            config.mysql.host = self.host
            config.mysql.port = self.port
            config.mysql.user = self.user
            config.mysql.database = self.database
            config.mysql.password = password or ""
        return config


def password_from_environment(url: StoreUrl, environ=os.environ) -> str | None:
    """The store's password from `$VOCDET_METADATA_PASSWORD`; `StoreError` when a database store has none."""
    password = environ.get(PASSWORD_ENV) or None
    if url.needs_password and password is None:
        raise StoreError(
            f"{url}: no password in ${PASSWORD_ENV}; on the cluster it comes from the store's secret "
            "(kubeflow.metadata_secret, k8s/metadata-store.yaml); here, export it"
        )
    return password


def connect(url: StoreUrl, password: str | None = None, *, wait_seconds: float = DEFAULT_WAIT_SECONDS,
            upgrade: bool = False, log=None):
    """An ML Metadata `MetadataStore` on `url`, waiting up to `wait_seconds` for a store that is not up.

    With `upgrade`, ML Metadata migrates an older schema to its own version (`prepare` does that,
    once); otherwise an older schema is an error. `log(line)` is told of each wait.
    """
    from ml_metadata.metadata_store import metadata_store

    config = url.connection_config(password)
    deadline = time.monotonic() + wait_seconds
    delay = _FIRST_DELAY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            store = metadata_store.MetadataStore(config, enable_upgrade_migration=upgrade)
            store.get_context_types()  # a gRPC client connects lazily: ask something
            return store
        except Exception as error:  # ML Metadata raises RuntimeError and its own errors module's
            full = " ".join(str(error).split()) or type(error).__name__
        kind, reason = _kind(full), _shortened(full)
        if url.scheme == "mysql" and kind == "other" and "mysql_real_connect failed" in reason:
            # ML Metadata's MySQL client says nothing more for a server that is down and for refused
            # credentials: ask the server itself, which greets every client first (its handshake).
            kind, reason = _mysql_greeting(url.host, url.port)
        if kind == "refused":
            raise StoreError(f"{url}: the store refused the credentials ({reason}); check the password in "
                             f"${PASSWORD_ENV} (the store's secret), the user and its grants") from None
        if kind == "other":
            raise StoreError(f"{url}: {reason}") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StoreError(
                f"{url}: the metadata store did not answer in {wait_seconds:.0f}s ({attempt} attempts; {reason}); "
                "check that its pod or server is running and that a NetworkPolicy lets this pod reach it"
            ) from None
        pause = min(delay * (0.5 + random.random()), remaining)
        if log is not None:
            log(f"metadata store {url} not ready ({reason}); retrying in {pause:.1f}s")
        time.sleep(pause)
        delay = min(delay * 2, _MAX_DELAY_SECONDS)


def prepare(url: StoreUrl, password: str | None = None, *, wait_seconds: float = DEFAULT_WAIT_SECONDS, log=None):
    """Creates the store's schema, or upgrades an older one, once, before the tasks connect to it.

    A gRPC server keeps its own schema (ML Metadata refuses an upgrade through its client): only waited for.
    """
    return connect(url, password, wait_seconds=wait_seconds, upgrade=url.scheme != "grpc", log=log)


# The longest reason a one-line message quotes (ML Metadata's can list every table it checked).
_REASON_CHARS = 300


def _shortened(reason: str) -> str:
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 3] + "..."


def _mysql_greeting(host: str, port: int, timeout: float = 5.0) -> tuple[str, str]:
    """(kind, reason) from a MySQL server's first packet: no answer is "retry", a greeting means it is up
    and refused us ("refused"), an error packet is the server's own reason (too many connections: "retry")."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            header = connection.recv(4)
            payload = connection.recv(max(0, int.from_bytes(header[:3], "little")))
    except OSError as error:
        return "retry", f"cannot connect to {host}:{port} ({error.strerror or error})"
    if payload[:1] == b"\x0a":  # protocol 10's greeting, then the server's version
        version = payload[1:].split(b"\0", 1)[0].decode(errors="replace")
        return "refused", f"server {version} is up; access denied (user, password or database)"
    if payload[:1] == b"\xff" and len(payload) >= 3:
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:].decode(errors="replace").lstrip("#").strip()
        # 1040: too many connections; 1129: host blocked after connection errors (flush-hosts).
        return ("retry" if code == 1040 else "other"), f"MySQL error {code}: {message}"
    return "retry", f"{host}:{port} answered no MySQL greeting"


def _kind(reason: str) -> str:
    text = reason.lower()
    if any(marker in text for marker in _REFUSED):
        return "refused"
    if any(marker in text for marker in _UNREACHABLE) or any(marker in text for marker in _SCHEMA_RACE):
        return "retry"
    return "other"
