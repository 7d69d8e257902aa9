"""Crash safety: ``kill -9`` of one worker process, then of the runner, while a large span
is being ingested; then the next run completes.

Data: span 1 is the bundled span 2014 scaled 5x by ``scripts/scale_taxi_spans.py`` (25,725
rows: ingestion takes seconds), span 2 the first 400 rows of span 2013. A run backfills
both side by side; it is killed as soon as a worker process has span 1's CSV open (read
from ``/proc``: no fixed sleep) and ImportSchemaGen has finished. The two crashes and the
recovery are one history in one output dir, so that a single completing run (the costly
part) checks recovery from both; it trains on span 2 alone (``--num-spans 1``) with a
small budget.
"""

import glob
import gzip
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from taxi_runs import DATA_DIR, REPO_ROOT, pipeline_command, run_pipeline, write_sample

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="watches the runner through /proc"),
]

BIG_SPAN, SMALL_SPAN = 1, 2
BIG_FACTOR, BIG_SOURCE_ROWS = 5, 5145  # bundled span 2014 has 5,145 rows
FAST_RUN = (
    "--processes=2",
    "--num-spans=1",
    "--train-epochs=0",
    "--tune-trials=0",
    "--cv-folds=0",
    "--no-canary",
)
DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
RUNNING, FAILED = metadata_store_pb2.Execution.RUNNING, metadata_store_pb2.Execution.FAILED
DEADLINE = 300  # s: generous, for a busy 2-core machine


@pytest.fixture
def data_dir(tmp_path):
    """Span 1 scaled 5x, span 2 small."""
    root = tmp_path / "crash_data"
    source = root / "source" / f"span-{BIG_SPAN}"
    source.mkdir(parents=True)
    shutil.copy(os.path.join(DATA_DIR, "span-2014", "data.csv"), source)
    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    try:
        import scale_taxi_spans
    finally:
        sys.path.remove(os.path.join(REPO_ROOT, "scripts"))
    data = root / "data"
    rows = scale_taxi_spans.scale_spans(str(source.parent), str(data), BIG_FACTOR)
    assert rows == {BIG_SPAN: BIG_FACTOR * BIG_SOURCE_ROWS}
    small = str(root / "small")
    write_sample(small, spans=(2013,))
    shutil.copytree(os.path.join(small, "span-2013"), data / f"span-{SMALL_SPAN}")
    return str(data)


def _children(pid: int) -> list[int]:
    children = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                children += [int(c) for c in f.read().split()]
        except OSError:  # the thread or the process ended
            pass
    return children


def _has_open(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class _Run:
    """``taxi-pipeline`` in the background, its output in files."""

    def __init__(self, output_dir: str, data_dir: str, logs):
        self.data_dir, self.output_dir = data_dir, output_dir
        self.stdout, self.stderr = logs.with_suffix(".stdout"), logs.with_suffix(".stderr")
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                pipeline_command(self.output_dir, data_dir, *FAST_RUN),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=err,
            )
        self.workers: list[int] = []

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()[-3000:]}\nstderr:\n{self.stderr.read_text()[-3000:]}"

    def worker_ingesting(self, csv: str) -> int:
        """Waits until a worker process has ``csv`` open and ImportSchemaGen has finished
        (a node the next run can take from the cache); returns the worker's pid."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the run ended first\n{self.output()}"
            self.workers = _children(self.process.pid)
            holders = [pid for pid in self.workers if _has_open(pid, csv)]
            if holders and "end   ImportSchemaGen" in self.stdout.read_text():
                return holders[0]
            time.sleep(0.05)
        pytest.fail(f"no worker was ingesting {csv} within {DEADLINE} s\n{self.output()}")

    def workers_end(self) -> None:
        """Waits until none of the runner's worker processes runs any more."""
        deadline = time.monotonic() + DEADLINE
        while any(_running(pid) for pid in self.workers):
            assert time.monotonic() < deadline, f"workers {self.workers} outlived the run"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)
        for pid in self.workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_run(tmp_path, data_dir):
    """Starts ``taxi-pipeline`` runs on ``data_dir``, all into one output dir; kills what is left."""
    runs = []

    def start() -> _Run:
        runs.append(_Run(str(tmp_path / "out"), data_dir, tmp_path / f"run{len(runs) + 1}"))
        return runs[-1]

    yield start
    for run in runs:
        run.stop()


def _store(output_dir: str) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.join(output_dir, "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _executions(store, node: str) -> list:
    [context] = [c for c in store.get_contexts_by_type("node") if c.name.endswith(f".{node}")]
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _assert_consistent(store) -> None:
    """Every LIVE artifact was output by a finished execution; an unfinished one output nothing."""
    executions = {e.id: e for e in store.get_executions()}
    events = store.get_events_by_execution_ids(list(executions))
    outputs = [e for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    for event in outputs:
        state = executions[event.execution_id].last_known_state
        assert state in DONE, f"execution {event.execution_id} ({state}) has an output"
    produced = {e.artifact_id for e in outputs}
    for artifact in store.get_artifacts():
        if artifact.state == metadata_store_pb2.Artifact.LIVE:
            assert artifact.id in produced, f"LIVE artifact {artifact.uri} has no producer"


def _records(path: str) -> int:
    """Records in a gzipped TFRecord file, read to the end (a truncated file raises)."""
    count = 0
    with gzip.open(path, "rb") as f:
        while header := f.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            assert len(f.read(length + 4)) == length + 4, f"{path}: truncated record"
            count += 1
    return count


def _span_examples(store, span: int) -> list:
    """The LIVE Examples artifacts ExampleGen wrote for ``span``."""
    ingest = [e.id for e in _executions(store, "CsvExampleGen")]
    events = store.get_events_by_execution_ids(ingest)
    ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    return [
        a
        for a in store.get_artifacts_by_id(ids)
        if a.state == metadata_store_pb2.Artifact.LIVE
        and (a.properties["span"].int_value or a.custom_properties["span"].int_value) == span
    ]


def _ended(line: str) -> tuple[str, str] | None:
    """(node, state) of a progress line ``[hh:mm:ss] end   Node  1.2s  cached``."""
    parts = line.split()
    return (parts[2], parts[4]) if len(parts) == 5 and parts[1] == "end" else None


def _recover(run: _Run, interrupted: list[int]) -> None:
    """The next run completes, reusing what the crashed one finished, and ingests span 1
    in full into a new artifact (never into, or from, the interrupted executions' dirs)."""
    result = run_pipeline(run.output_dir, run.data_dir, *FAST_RUN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ended = [e for e in map(_ended, result.stdout.splitlines()) if e]
    hits = sorted({node for node, state in ended if state == "cached"})
    print(f"cache hits of the run after the crash: {', '.join(hits)}")
    # Finished by a crashed run: not run again (the first ones can only hit its cache).
    assert {state for node, state in ended if node == "ImportSchemaGen"} == {"cached"}
    assert ("CsvExampleGen", "complete") in ended  # the interrupted ingestion: run again

    store = _store(run.output_dir)
    _assert_consistent(store)
    [examples] = _span_examples(store, BIG_SPAN)
    assert all(not examples.uri.endswith(f"/{i}") for i in interrupted), examples.uri
    files = glob.glob(os.path.join(examples.uri, "Split-*", "*.gz"))
    assert not glob.glob(os.path.join(examples.uri, "**", "beam-temp*"), recursive=True)
    assert not os.path.exists(os.path.join(examples.uri, ".ingest-tmp"))  # the shards' temp dir
    assert sum(map(_records, files)) == BIG_FACTOR * BIG_SOURCE_ROWS


def _kill_a_worker_mid_ingestion(run: _Run) -> list[int]:
    """kill -9 of the worker ingesting span 1: the run fails at once, naming it; TFX records
    the failure and removes the half-written output. Returns the failed ingestions."""
    worker = run.worker_ingesting(_big_csv(run))
    os.kill(worker, signal.SIGKILL)
    assert run.process.wait(timeout=DEADLINE) == 1, run.output()
    stderr = run.stderr.read_text()
    assert f"worker process {worker} running CsvExampleGen (execution " in stderr, stderr
    assert "was killed by SIGKILL" in stderr and "Nothing was pushed by this run." in stderr
    run.workers_end()

    store = _store(run.output_dir)
    states = [e.last_known_state for e in store.get_executions()]
    assert metadata_store_pb2.Execution.RUNNING not in states  # every end was recorded
    failed = [e.id for e in _executions(store, "CsvExampleGen") if e.last_known_state == FAILED]
    assert failed
    examples = os.path.join(run.output_dir, "pipeline", "CsvExampleGen", "examples")
    for execution_id in failed:
        assert not os.path.exists(os.path.join(examples, str(execution_id)))
    _assert_consistent(store)
    assert not _span_examples(store, BIG_SPAN)
    return failed


def _kill_the_runner_mid_ingestion(run: _Run) -> list[int]:
    """kill -9 of ``taxi-pipeline`` while a worker ingests span 1: its workers die with it,
    the ingestion stays RUNNING in MLMD with no output. Returns the interrupted ingestions."""
    run.worker_ingesting(_big_csv(run))
    run.process.kill()
    assert run.process.wait(timeout=DEADLINE) == -signal.SIGKILL
    run.workers_end()  # they used to ingest on, orphaned, then wait forever

    store = _store(run.output_dir)
    interrupted = [
        e.id for e in _executions(store, "CsvExampleGen") if e.last_known_state == RUNNING
    ]
    assert interrupted, "the killed ingestion should be left RUNNING (nobody saw it end)"
    _assert_consistent(store)
    assert not _span_examples(store, BIG_SPAN)
    return interrupted


def _big_csv(run: _Run) -> str:
    return os.path.realpath(os.path.join(run.data_dir, f"span-{BIG_SPAN}", "data.csv"))


def test_kill_9_of_a_worker_then_of_the_runner_mid_ingestion_then_the_next_run_completes(
    start_run,
):
    # One history, so that one completing run (the costly part) checks recovery from both.
    failed = _kill_a_worker_mid_ingestion(start_run())
    run = start_run()
    interrupted = _kill_the_runner_mid_ingestion(run)
    _recover(run, failed + interrupted)
    store = _store(run.output_dir)
    left = [e.id for e in _executions(store, "CsvExampleGen") if e.last_known_state == RUNNING]
    assert left == interrupted  # as they were: no output, trusted by nothing
