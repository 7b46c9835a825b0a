"""vocdet's own metadata store against a real MySQL-protocol server (MariaDB): URLs, an empty database
with tasks starting together, a store that is down for a while, and refused credentials; and why
PostgreSQL is refused, shown on a real PostgreSQL 15."""

import os
import subprocess
import sys
import time
from concurrent import futures

import pytest

from tests.mysql import PASSWORD
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
    url = store.StoreUrl.parse("mysql://vocdet@db.example:6033/mlmd")
    config = url.connection_config("pw").mysql
    assert (config.host, config.port, config.user, config.database, config.password) == (
        "db.example", 6033, "vocdet", "mlmd", "pw"
    )
    assert str(url) == "mysql://vocdet@db.example:6033/mlmd" and url.needs_password
    assert store.StoreUrl.parse("mysql://vocdet@mysql/mlmd").port == 3306
    grpc = store.StoreUrl.parse("grpc://metadata-grpc-service.kubeflow").connection_config()
    assert (grpc.host, grpc.port) == ("metadata-grpc-service.kubeflow", 8080)
    for bad, message in [
        ("mysql://vocdet:hunter2@db/mlmd", "holds a password"),
        ("mysql://db/mlmd", "needs a user and a database"),
        ("https://db/mlmd", "is not a metadata URL"),
        ("mysql://vocdet@db/mlmd?ssl=1", "takes none"),
        ("postgresql://vocdet@db/mlmd", "cannot store a string holding a backslash"),
    ]:
        with pytest.raises(ValueError, match=message) as raised:
            store.StoreUrl.parse(bad)
        assert "hunter2" not in str(raised.value)
    with pytest.raises(store.StoreError, match=store.PASSWORD_ENV):
        store.password_from_environment(url, {})


def test_postgresql_is_refused_because_mlmd_cannot_store_a_backslash_there():
    """ML Metadata 1.16 on a real PostgreSQL 15: a string with a backslash, which TFX writes for every failed
    execution's message, is an SQL syntax error. On MySQL the same string is kept exactly. Re-run on an
    upgrade of ml-metadata, and allow postgresql:// again when this test fails."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from tests import postgres as postgres_lib

    with postgres_lib.postgres_server() as server:
        server.create_database("backslash")
        config = metadata_store_pb2.ConnectionConfig()
        config.postgresql.host, config.postgresql.port = "127.0.0.1", str(server.port)
        config.postgresql.user, config.postgresql.dbname = postgres_lib.USER, "backslash"
        config.postgresql.password = postgres_lib.PASSWORD
        postgres_store = metadata_store.MetadataStore(config)
        type_id = postgres_store.put_execution_type(metadata_store_pb2.ExecutionType(name="E"))
        execution = metadata_store_pb2.Execution(type_id=type_id)
        execution.custom_properties["message"].string_value = 'Traceback: "C:\\data" not found'
        with pytest.raises(Exception, match="syntax error"):
            postgres_store.put_executions([execution])


def test_an_empty_database_with_tasks_starting_together(mysql):
    """Six first connections at once to an empty database: ML Metadata's schema creation races
    (kubeflow/metadata#228), and every one of them must still end connected, the schema created once."""
    url = store.StoreUrl.parse(mysql.create_database("empty_together"))
    with futures.ProcessPoolExecutor(6) as pool:
        results = list(pool.map(_connect_and_count, [str(url)] * 6))
    assert results == [0] * 6
    # The first task's preparation on a database that is already there changes nothing.
    assert store.prepare(url, PASSWORD).get_context_types() == []


def _connect_and_count(url: str) -> int:
    return len(store.connect(store.StoreUrl.parse(url), PASSWORD, wait_seconds=60).get_context_types())


def test_the_prepare_task_waits_for_a_store_that_is_down_for_20_seconds(mysql):
    url = mysql.create_database("down_for_a_while")
    mysql.stop()
    try:
        task = _prepare_task(url, PASSWORD, wait_seconds=120)
        time.sleep(20)
        assert task.poll() is None, task.communicate()[0][-2000:]  # still waiting
    finally:
        mysql.start()
    log, _ = task.communicate(timeout=120)
    assert task.returncode == 0, log[-3000:]
    assert "vocdet node state: COMPLETE" in log
    assert log.count("not ready (cannot connect to 127.0.0.1") >= 3, log[-3000:]


def test_refused_credentials_fail_at_once_in_one_line(mysql):
    url = mysql.create_database("wrong_password")
    started = time.time()
    task = _prepare_task(url, "not-the-password")
    log, _ = task.communicate(timeout=120)
    assert task.returncode == 1 and time.time() - started < 30
    (line,) = [line for line in log.splitlines() if " ERROR " in line]
    assert f"{url}: the store refused the credentials" in line
    assert "MariaDB" in line and "access denied" in line and store.PASSWORD_ENV in line
    assert "not-the-password" not in log


def test_a_store_that_never_comes_up_fails_in_one_line_naming_the_host():
    url = store.StoreUrl.parse("mysql://vocdet@127.0.0.1:9/mlmd")  # the discard port: nothing listens
    started = time.time()
    with pytest.raises(store.StoreError) as raised:
        store.connect(url, PASSWORD, wait_seconds=3)
    assert time.time() - started < 15
    message = str(raised.value)
    assert message.startswith("mysql://vocdet@127.0.0.1:9/mlmd: the metadata store did not answer in 3s")
    assert "NetworkPolicy" in message and "\n" not in message
