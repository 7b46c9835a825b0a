"""vocdet's own metadata store against a real PostgreSQL 15 server: URLs, an empty database with
tasks starting together, a store that is down for a while, and refused credentials."""

import os
import subprocess
import sys
import time
from concurrent import futures

import pytest

from tests.postgres import PASSWORD
from vocdet.pipeline.metadata import store

NODE = [sys.executable, "-m", "vocdet.pipeline.kubeflow.node"]


def _prepare_task(url: str, password: str, wait_seconds: float = 60) -> subprocess.Popen:
    """The compiled package's first task, as a process with the task's environment."""
    return subprocess.Popen(
        [*NODE, "--prepare-metadata-store", "--metadata", url, "--metadata-wait-seconds", str(wait_seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, store.PASSWORD_ENV: password},
    )  # fmt: skip


def test_urls_name_a_store_never_a_password():
    url = store.StoreUrl.parse("postgresql://vocdet@db.example:6543/mlmd?sslmode=require")
    config = url.connection_config("pw")
    assert (config.postgresql.host, config.postgresql.port, config.postgresql.user, config.postgresql.dbname) == (
        "db.example", "6543", "vocdet", "mlmd"
    )
    assert config.postgresql.ssloption.sslmode == "require" and config.postgresql.password == "pw"
    assert str(url) == "postgresql://vocdet@db.example:6543/mlmd?sslmode=require"
    mysql = store.StoreUrl.parse("mysql://vocdet@mysql/mlmd").connection_config("pw").mysql
    assert (mysql.host, mysql.port, mysql.database) == ("mysql", 3306, "mlmd")
    grpc = store.StoreUrl.parse("grpc://metadata-grpc-service.kubeflow").connection_config()
    assert (grpc.host, grpc.port) == ("metadata-grpc-service.kubeflow", 8080)
    for bad, message in [
        ("postgresql://vocdet:hunter2@db/mlmd", "holds a password"),
        ("postgresql://db/mlmd", "needs a user and a database"),
        ("https://db/mlmd", "is not a metadata URL"),
        ("postgresql://vocdet@db/mlmd?sslmod=x", "unknown option"),
    ]:
        with pytest.raises(ValueError, match=message) as raised:
            store.StoreUrl.parse(bad)
        assert "hunter2" not in str(raised.value)
    with pytest.raises(store.StoreError, match=store.PASSWORD_ENV):
        store.password_from_environment(url, {})


def test_an_empty_database_with_tasks_starting_together(postgres):
    """Six first connections at once to an empty database: ML Metadata's schema creation races (duplicate
    key in pg_type), and every one of them must still end connected, the schema created once."""
    url = store.StoreUrl.parse(postgres.create_database("empty_together"))
    with futures.ProcessPoolExecutor(6) as pool:
        results = list(pool.map(_connect_and_count, [str(url)] * 6))
    assert results == [0] * 6
    # The first task's preparation on a database that is already there changes nothing.
    assert store.prepare(url, PASSWORD).get_context_types() == []


def _connect_and_count(url: str) -> int:
    return len(store.connect(store.StoreUrl.parse(url), PASSWORD, wait_seconds=60).get_context_types())


def test_the_prepare_task_waits_for_a_store_that_is_down_for_20_seconds(postgres):
    url = postgres.create_database("down_for_a_while")
    postgres.stop()
    try:
        task = _prepare_task(url, PASSWORD, wait_seconds=120)
        time.sleep(20)
        assert task.poll() is None, task.communicate()[0][-2000:]  # still waiting
    finally:
        postgres.start()
    log, _ = task.communicate(timeout=120)
    assert task.returncode == 0, log[-3000:]
    assert "vocdet node state: COMPLETE" in log
    assert log.count("not ready (PostgreSQL error: could not connect to server") >= 3, log[-3000:]


def test_refused_credentials_fail_at_once_in_one_line(postgres):
    url = postgres.create_database("wrong_password")
    started = time.time()
    task = _prepare_task(url, "not-the-password")
    log, _ = task.communicate(timeout=120)
    assert task.returncode == 1 and time.time() - started < 30
    (line,) = [line for line in log.splitlines() if " ERROR " in line]
    assert f"{url}: the store refused the credentials" in line
    assert 'password authentication failed for user "vocdet"' in line and store.PASSWORD_ENV in line
    assert "not-the-password" not in log


def test_a_store_that_never_comes_up_fails_in_one_line_naming_the_host():
    url = store.StoreUrl.parse("postgresql://vocdet@127.0.0.1:9/mlmd")  # the discard port: nothing listens
    started = time.time()
    with pytest.raises(store.StoreError) as raised:
        store.connect(url, PASSWORD, wait_seconds=3)
    assert time.time() - started < 15
    message = str(raised.value)
    assert message.startswith("postgresql://vocdet@127.0.0.1:9/mlmd: the metadata store did not answer in 3s")
    assert "NetworkPolicy" in message and "\n" not in message
