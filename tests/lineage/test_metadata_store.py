"""ML Metadata on SQLite or MySQL/MariaDB: targets, errors, and concurrent writers
against a real MariaDB server (started by the `mariadb` fixture)."""

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys

import pytest
from ml_metadata import errors as mlmd_errors
from ml_metadata.proto import metadata_store_pb2

import lineage
from lineage import metadata_store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITERS, EXECUTIONS = 4, 40


def test_mysql_url_to_config():
    config = metadata_store.mysql_config("mysql://ml%40team:p%3Aw@db.example:3307/mlmd")
    assert (config.host, config.port, config.database) == ("db.example", 3307, "mlmd")
    assert (config.user, config.password, config.socket) == ("ml@team", "p:w", "")
    config = metadata_store.mysql_config("mysql://u:p@db/mlmd")
    assert config.port == 3306
    config = metadata_store.mysql_config("mysql://u:p@localhost/mlmd?socket=/run/m.sock")
    assert (config.socket, config.host, config.port) == ("/run/m.sock", "", 0)


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u:secret@db:3306/", "must name one database"),
        ("mysql://u:secret@db:3306/a/b", "must name one database"),
        ("mysql://db:3306/mlmd", "names no user"),
        ("mysql://u:secret@db:99999/mlmd", "out of range"),
        ("mysql://u:secret@db/mlmd?sslmode=x", "unknown parameters ['sslmode']"),
        ("mysql://u:secret@/mlmd", "names no host"),
    ],
)
def test_malformed_urls_are_refused_without_the_password(url, message):
    with pytest.raises(metadata_store.MetadataError) as error:
        metadata_store.connection_config(url)
    assert message in str(error.value)
    assert "secret" not in str(error.value)


def test_targets_resolve_and_redact(monkeypatch, tmp_path):
    monkeypatch.delenv(metadata_store.ENV, raising=False)
    assert metadata_store.resolve(None, "/o") == "/o/metadata.sqlite"
    monkeypatch.setenv(metadata_store.ENV, "mysql://u:p@h/d")
    assert metadata_store.resolve(None, "/o") == "mysql://u:p@h/d"
    assert metadata_store.resolve("/x.sqlite", "/o") == "/x.sqlite"
    assert metadata_store.redact("mysql://u:pw@h:1/d") == "mysql://u:***@h:1/d"
    assert metadata_store.exists("mysql://u:p@h/d")
    assert not metadata_store.exists(str(tmp_path / "missing.sqlite"))
    sqlite = metadata_store.connection_config(str(tmp_path / "m.sqlite"), readonly=True).sqlite
    assert sqlite.connection_mode == sqlite.READONLY


def test_transient_errors():
    race = RuntimeError(
        "There are a subset of tables in MLMD instance. This may be due to concurrent "
        "connection to the empty database. Please retry the connection."
    )
    deadlock = RuntimeError(
        "mysql_query aborted: errno: Deadlock found when trying to get lock; "
        "try restarting transaction"
    )
    assert metadata_store.is_transient(race) and metadata_store.is_transient(deadlock)
    assert metadata_store.is_transient(mlmd_errors.AlreadyExistsError("type exists"))
    assert not metadata_store.is_transient(RuntimeError("mysql_real_connect failed: errno: "))
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise deadlock
        return "done"

    assert metadata_store.retry(flaky, deadline=60) == "done" and len(calls) == 3

    def refused():
        calls.append(1)
        raise RuntimeError("mysql_real_connect failed: errno: , error: ")

    with pytest.raises(RuntimeError):
        metadata_store.retry(refused, deadline=60)
    assert len(calls) == 4  # not retried


def test_retrying_store_repeats_only_rolled_back_calls():
    class Store:
        calls = 0
        name = "fake"

        def put_execution(self, value):
            self.calls += 1
            if self.calls < 3:
                raise mlmd_errors.AbortedError("mysql_query aborted: errno: Deadlock found ...")
            return value

        def put_context(self):
            self.calls += 1
            raise mlmd_errors.AlreadyExistsError("Given node already exists")

    store = metadata_store.RetryingStore(Store())
    assert store.name == "fake"
    assert store.put_execution(7) == 7 and store._store.calls == 3
    with pytest.raises(mlmd_errors.AlreadyExistsError):  # TFX handles it: passed on at once
        store.put_context()
    assert store._store.calls == 4


def test_launchers_lock_sqlite_only(tmp_path):
    from tfx.proto.orchestration import metadata_pb2

    from pipeline import concurrent_runner

    connection = metadata_pb2.MLMDConnectionConfig()
    connection.database_connection_config.CopyFrom(
        metadata_store.connection_config(str(tmp_path / "m.sqlite"))
    )
    assert isinstance(
        concurrent_runner.mlmd_connection(connection), concurrent_runner._SerializedMetadata
    )
    connection.database_connection_config.CopyFrom(
        metadata_store.connection_config("mysql://u:p@127.0.0.1:1/d")
    )
    mysql = concurrent_runner.mlmd_connection(connection)
    assert isinstance(mysql, concurrent_runner._RetryingMetadata)
    assert not isinstance(mysql, concurrent_runner._SerializedMetadata)


@pytest.fixture
def closed_port():
    """A loopback port bound by this test and not listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "lineage.cli", "--metadata", "{url}", "versions"],
        [
            sys.executable,
            "-m",
            "pipeline.local_runner",
            "--output-dir",
            "{tmp}",
            "--metadata",
            "{url}",
        ],
        [
            *(sys.executable, "-m", "monitoring.cli", "rollback", "--reason", "x"),
            *("--model-config", "c", "--metadata", "{url}"),
        ],
    ],
    ids=["taxi-lineage", "taxi-pipeline", "taxi-monitor"],
)
def test_unreachable_server_is_one_clear_line_and_exit_2(command, closed_port, tmp_path):
    url = f"mysql://taxi:s3cret@127.0.0.1:{closed_port}/mlmd"
    command = [c.replace("{tmp}", str(tmp_path)).replace("{url}", url) for c in command]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
    # TF's import-time log lines aside, the error is one line naming the server.
    lines = [line for line in result.stderr.splitlines() if "MySQL" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].lower().startswith("error:"), lines[0]
    assert f"cannot reach the MySQL server at 127.0.0.1:{closed_port}" in lines[0]
    assert "mysql://taxi:***@" in lines[0]


@pytest.mark.slow
def test_refused_login_is_a_clear_error(mariadb):
    url = mariadb.url().replace(":taxi-pw@", ":wrong-pw@")
    with pytest.raises(metadata_store.MetadataError) as error:
        metadata_store.open_store(url)
    assert "the MySQL server refused ML Metadata mysql://taxi:***@127.0.0.1:" in str(error.value)
    assert "wrong-pw" not in str(error.value)


def _writer(url: str, writer: int, barrier) -> None:
    """One process: opens the (fresh) store at the same moment as the others, then
    records EXECUTIONS executions through the product's write path."""
    from monitoring import rollback

    barrier.wait(timeout=900)
    metadata = lineage.Metadata.open(url)
    for index in range(EXECUTIONS):
        rollback.record_execution(
            metadata, "ConcurrentWrite", {"writer": writer, "index": index}, version=0
        )


def _written(url):
    store = metadata_store.open_store(url)
    return [
        (int(e.properties["writer"].string_value), int(e.properties["index"].string_value))
        for e in store.get_executions_by_type("ConcurrentWrite")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("via_socket", [False, True], ids=["tcp", "unix-socket"])
def test_concurrent_writers_lose_and_duplicate_nothing(mariadb, via_socket):
    url = mariadb.url(via_socket=via_socket)  # a fresh database: MLMD creates its tables
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    processes = [
        context.Process(target=_writer, args=(url, writer, barrier)) for writer in range(WRITERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=1500)
    codes = [process.exitcode for process in processes]
    for process in processes:
        if process.is_alive():
            process.kill()
    assert codes == [0] * WRITERS
    written = _written(url)
    assert len(written) == WRITERS * EXECUTIONS
    assert set(written) == {(w, i) for w in range(WRITERS) for i in range(EXECUTIONS)}


TINY = (
    *("--train-steps", "150", "--eval-steps", "5"),
    *("--cv-folds", "0", "--tune-trials", "0", "--no-canary"),
)
DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
SUMMARY_LINE = re.compile(r"^  (\S+)\s+(complete|cached)\s+[\d.]+s$")


def _run_nodes(store, pipeline_name):
    """{run context name: [node id of each execution]} of one pipeline in MLMD."""
    graph = lineage.Graph.load(store)
    pipeline = next(c for c in store.get_contexts_by_type("pipeline") if c.name == pipeline_name)
    runs = {}
    for run in store.get_contexts_by_type("pipeline_run"):
        executions = store.get_executions_by_context(run.id)
        in_pipeline = {e.id for e in store.get_executions_by_context(pipeline.id)}
        if executions and {e.id for e in executions} <= in_pipeline:
            assert all(e.last_known_state in DONE for e in executions)
            runs[run.name] = sorted(graph.node_of(e.id) for e in executions)
    return runs


@pytest.mark.slow
@pytest.mark.e2e
def test_pipeline_and_watch_write_one_store_at_once(mariadb, tmp_path):
    """taxi-pipeline and `taxi-monitor watch` (which runs its own pipeline) at the
    same time on one fresh MariaDB database: both finish, and MLMD holds every
    node of each run exactly once, as each runner reported it."""
    from taxi_runs import write_sample

    url = mariadb.url()
    env = {**os.environ, "PYTHONPATH": ROOT, metadata_store.ENV: ""}
    pipeline = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipeline.local_runner", "--metadata", url),
            *("--output-dir", str(tmp_path / "out"), *TINY),
            *("--data-dir", write_sample(str(tmp_path / "data"), spans=(2013,))),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watch = subprocess.Popen(
        [
            *(sys.executable, "-m", "monitoring.cli", "watch", "--metadata", url),
            *("--output-dir", str(tmp_path / "watch-out"), "--max-checks", "1"),
            *("--data-dir", write_sample(str(tmp_path / "watch-data"), spans=(2015,))),
            *(f"--pipeline-arg={arg}" for arg in (*TINY, "--pipeline-name=taxi-watch")),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = pipeline.communicate(timeout=1800)
        watch_out, watch_err = watch.communicate(timeout=1800)
    finally:
        for process in (pipeline, watch):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert pipeline.returncode == 0, out[-3000:] + err[-5000:]
    assert watch.returncode == 0, watch_out[-3000:] + watch_err[-5000:]
    assert "new span(s) [2015]" in watch_out and "pipeline exit 0" in watch_out, watch_out
    assert f"metadata: mysql://taxi:***@127.0.0.1:{mariadb.port}/" in out
    reported = sorted(m.group(1) for m in map(SUMMARY_LINE.match, out.splitlines()) if m)
    store = metadata_store.open_store(url)
    runs = _run_nodes(store, "taxi")
    watch_runs = _run_nodes(store, "taxi-watch")
    assert len(runs) == 1 and len(watch_runs) == 1
    (nodes,) = runs.values()
    assert len(nodes) == len(set(nodes))  # every node once (resolvers included)
    assert [n for n in nodes if not n.endswith("Resolver")] == reported  # none lost
    assert list(watch_runs.values()) == [nodes]  # same flags: the same nodes
    assert {"Trainer", "Evaluator", "Pusher", "SpanResolver"} <= set(nodes)
    assert len(store.get_executions()) == 2 * len(nodes)  # nothing else written
    # The readers work unchanged on the shared store.
    pushed = sorted(lineage.pushed_versions(lineage.Graph.load(store)))
    versions = subprocess.run(
        [sys.executable, "-m", "lineage.cli", "--metadata", url, "--json", "versions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert versions.returncode == 0, versions.stderr
    assert json.loads(versions.stdout) == {"versions": pushed}
    spans = subprocess.run(
        [
            *(sys.executable, "-m", "monitoring.cli", "spans", "--metadata", url),
            *("--out", str(tmp_path / "monitor")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert spans.returncode in (0, 1), spans.stderr
    with open(tmp_path / "monitor" / "spans" / "summary.json") as f:
        assert json.load(f)["spans"] == [2013, 2015]
