"""Beam components' executors in worker processes, on tiny real TFX pipelines."""

import os
import time

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import apache_beam as beam  # noqa: E402
from tfx.dsl.component.experimental.annotations import (  # noqa: E402
    BeamComponentParameter,
    OutputDict,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component  # noqa: E402
from tfx.orchestration import metadata  # noqa: E402
from tfx.orchestration import pipeline as tfx_pipeline  # noqa: E402

from pipeline import worker_processes  # noqa: E402
from pipeline.concurrent_runner import ConcurrentLocalDagRunner  # noqa: E402
from pipeline.worker_processes import WorkerDiedError, WorkerPool  # noqa: E402


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


@component(use_beam=True)
def BeamSum(  # noqa: N802
    out: Parameter[str],
    n: Parameter[int],
    meet: Parameter[str],
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> OutputDict(total=int):
    """Sums 1..n with Beam; writes "pid start end" to ``out``.

    With ``meet`` (a directory), it then waits up to 120 s for the other node
    of the meeting to be running too (each leaves a file there), else fails.
    """
    start = time.time()
    with beam_pipeline as p:
        _ = (
            p
            | beam.Create(range(1, n + 1))
            | beam.CombineGlobally(sum)
            | beam.Map(lambda total: _write(out + ".total", str(total)))
        )
    if meet:
        _write(os.path.join(meet, os.path.basename(out)), "")
        deadline = time.monotonic() + 120
        while len(os.listdir(meet)) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the other node never ran at the same time")
            time.sleep(0.05)
    _write(out, f"{os.getpid()} {start} {time.time()}")
    with open(out + ".total") as f:
        return {"total": int(f.read())}


@component
def Record(out: Parameter[str], total: int) -> OutputDict(done=int):  # noqa: N802
    """A plain Python component downstream: writes "pid total" to ``out``."""
    _write(out, f"{os.getpid()} {total}")
    return {"done": 1}


@component(use_beam=True)
def BeamFail(  # noqa: N802
    how: Parameter[str],
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> OutputDict(total=int):
    if how == "raise":
        raise ValueError("span 7 has no rows")
    if how.startswith("wait:"):  # leaves its pid in the file named, then waits to be killed
        _write(how[len("wait:") :], str(os.getpid()))
        time.sleep(120)
        raise TimeoutError("the test never killed this worker")
    os._exit(3)  # the worker dies, as if killed


def _pipeline(tmp_path, components) -> tfx_pipeline.Pipeline:
    return tfx_pipeline.Pipeline(
        pipeline_name="workers",
        pipeline_root=str(tmp_path / "root"),
        components=components,
        enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(tmp_path / "m.sqlite")
        ),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    )


COMPLETE, FAILED = 3, 4  # metadata_store_pb2.Execution.State


def _states(p) -> list[int]:
    """The MLMD state of every execution of ``p``, in execution order."""
    with metadata.Metadata(p.metadata_connection_config) as m:
        return [e.last_known_state for e in m.store.get_executions()]


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as workers:
        yield workers


def _read(path) -> list[str]:
    return path.read_text().split()


@pytest.mark.slow
def test_beam_executor_runs_in_a_worker_and_its_outputs_reach_downstream(tmp_path, pool):
    beam_out, py_out = tmp_path / "beam.txt", tmp_path / "py.txt"
    summed = BeamSum(out=str(beam_out), n=10, meet="").with_id("sum")
    record = Record(out=str(py_out), total=summed.outputs["total"]).with_id("record")
    p = _pipeline(tmp_path, [summed, record])
    ConcurrentLocalDagRunner(max_workers=2, worker_pool=pool).run(p)
    beam_pid, py_pid = int(_read(beam_out)[0]), int(_read(py_out)[0])
    assert beam_pid != os.getpid(), "the Beam executor should run in a worker process"
    assert py_pid == os.getpid(), "plain Python executors stay in the orchestrator"
    assert _read(py_out)[1] == "55"  # the worker's output artifact, published and resolved
    assert _states(p) == [COMPLETE, COMPLETE]


@pytest.mark.slow
def test_two_beam_nodes_run_at_once_in_two_workers(tmp_path, pool):
    a_out, b_out, meet = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "meet"
    meet.mkdir()  # each node waits there for the other: they must run at once
    a = BeamSum(out=str(a_out), n=3, meet=str(meet)).with_id("a")
    b = BeamSum(out=str(b_out), n=4, meet=str(meet)).with_id("b")
    ConcurrentLocalDagRunner(max_workers=2, worker_pool=pool).run(_pipeline(tmp_path, [a, b]))
    (a_pid, a0, a1), (b_pid, b0, b1) = (
        [float(x) for x in _read(a_out)],
        [float(x) for x in _read(b_out)],
    )
    assert a_pid != b_pid
    assert a0 < b1 and b0 < a1, "a and b should have run at the same time"


@pytest.mark.slow
def test_an_executor_error_is_raised_with_its_type_and_message(tmp_path, pool):
    out = tmp_path / "after.txt"
    failing = BeamFail(how="raise").with_id("fail")
    after = Record(out=str(out), total=failing.outputs["total"]).with_id("after")
    p = _pipeline(tmp_path, [failing, after])
    with pytest.raises(ValueError, match="span 7 has no rows"):
        ConcurrentLocalDagRunner(max_workers=2, worker_pool=pool).run(p)
    assert not out.exists()
    assert _states(p) == [FAILED]  # recorded in MLMD; nothing downstream ran


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_dead_worker_fails_the_node_instead_of_hanging(tmp_path):
    with WorkerPool(1) as own_pool:
        p = _pipeline(tmp_path, [BeamFail(how="exit").with_id("die")])
        with pytest.raises(
            WorkerDiedError,
            match=r"worker process \d+ running die \(execution 1\) exited with code 3",
        ):
            ConcurrentLocalDagRunner(max_workers=1, worker_pool=own_pool).run(p)
    assert _states(p) == [FAILED]


def _wait_for(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout} s")
        time.sleep(0.05)
    return value


def _read_pid(path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_a_busy_worker_fails_its_node_naming_the_worker_and_signal(tmp_path):
    import signal
    import threading

    pid_file = tmp_path / "worker.pid"
    with WorkerPool(1) as own_pool:
        p = _pipeline(tmp_path, [BeamFail(how=f"wait:{pid_file}").with_id("victim")])
        errors = []

        def run():
            try:
                ConcurrentLocalDagRunner(max_workers=1, worker_pool=own_pool).run(p)
            except Exception as e:  # noqa: BLE001 - inspected below
                errors.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        pid = _wait_for(lambda: _read_pid(pid_file), "worker pid")  # the executor is running
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the run hung after its worker was killed"
    [error] = errors
    assert isinstance(error, WorkerDiedError)
    assert str(error) == (
        f"worker process {pid} running victim (execution 1) was killed by SIGKILL "
        "(kill -9, or the kernel's out-of-memory killer)"
    )
    assert _states(p) == [FAILED]


_POOL_THEN_WAIT = """
import time
from pipeline.worker_processes import WorkerPool
pool = WorkerPool(2)
print(*(w.pid for w in pool.workers), flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="Linux only: the parent-death signal")
def test_workers_die_with_the_process_that_forked_them(tmp_path):
    # kill -9 of taxi-pipeline left its workers running (adopted by init), each
    # finishing its executor and then waiting forever for more work.
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen(
        [sys.executable, "-c", _POOL_THEN_WAIT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    workers = []
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(pid) for pid in workers)
        parent.kill()
        parent.wait(timeout=60)
        _wait_for(lambda: not any(_running(pid) for pid in workers), "end of the workers", 60)
    finally:
        parent.kill()
        parent.wait(timeout=60)
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_pool_size_is_checked():
    with pytest.raises(ValueError, match="processes must be >= 1"):
        WorkerPool(0)


class _Finalized:
    """Garbage in a reference cycle; its finalizer records the pid that ran it."""

    def __init__(self, path):
        self.path, self.cycle = path, self

    def __del__(self):
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")


def _collect_in_worker() -> int:
    from pipeline import memory

    memory.release()
    return os.getpid()


@pytest.mark.slow
def test_a_worker_never_finalizes_garbage_inherited_from_the_parent(tmp_path):
    # A TF resource the parent left in a cycle was finalized by a forked worker's
    # gc.collect(); its __del__ ran a TF op, which hung there (CI, tests in random
    # order). Inherited objects must stay untouched in the worker.
    import gc

    marker = str(tmp_path / "finalized")
    gc.disable()
    try:
        _Finalized(marker)  # unreachable at once, collectable only by gc
        with WorkerPool(1) as workers:
            worker = workers._pool.submit(_collect_in_worker).result(timeout=120)
    finally:
        gc.enable()
    gc.collect()  # the parent finalizes its own garbage
    with open(marker) as f:
        pids = [int(line) for line in f]
    assert worker != os.getpid() and pids == [os.getpid()]


class _DeadPool:
    """A broken pool's ``deaths()``: worker pid -> exit code."""

    def __init__(self, exitcodes: dict[int, int]):
        self.exitcodes = exitcodes

    def deaths(self) -> dict[int, str]:
        return {pid: worker_processes._how(code) for pid, code in self.exitcodes.items()}


def _execution(tmp_path, node: str, worker: int | None):
    from tfx.orchestration.portable import data_types
    from tfx.proto.orchestration import pipeline_pb2

    if worker is not None:
        (tmp_path / "worker.pid").write_text(str(worker))
    pipeline_node = pipeline_pb2.PipelineNode()
    pipeline_node.node_info.id = node
    return data_types.ExecutionInfo(
        execution_id=7, pipeline_node=pipeline_node, tmp_dir=str(tmp_path)
    )


KILLED = "was killed by SIGKILL (kill -9, or the kernel's out-of-memory killer)"


@pytest.mark.parametrize(
    "worker, exitcodes, message",
    [
        # its own worker was killed; the pool terminated the other one
        (11, {11: -9, 12: -15}, f"worker process 11 running StatisticsGen (execution 7) {KILLED}"),
        # its worker was terminated by the pool because another one was killed
        (
            12,
            {11: -9, 12: -15},
            f"StatisticsGen (execution 7) stopped: worker process 11 {KILLED}, "
            "which broke the worker pool",
        ),
        # not started on a worker yet (the pool was already broken)
        (
            None,
            {11: 3, 12: -15},
            "StatisticsGen (execution 7) stopped: worker process 11 exited with code 3, "
            "which broke the worker pool",
        ),
        # every worker ended by SIGTERM (kill without -9): its own is the one named
        (
            12,
            {11: -15, 12: -15},
            "worker process 12 running StatisticsGen (execution 7) was killed by SIGTERM",
        ),
    ],
)
def test_a_death_is_reported_against_the_worker_that_died_first(
    tmp_path, worker, exitcodes, message
):
    info = _execution(tmp_path, "StatisticsGen", worker)
    assert worker_processes._death_message(_DeadPool(exitcodes), info) == message
