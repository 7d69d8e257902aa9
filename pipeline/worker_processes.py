"""Beam components' executors in forked worker processes.

TFX's local runners call every executor in the orchestrating process. A Beam
executor on the in-memory DirectRunner is mostly Python (graph construction,
TFDV's and TFMA's per-batch code), so executors run side by side on threads
share one interpreter lock: four span ingestions on two cores use about one.
``WorkerPool`` runs them in worker processes instead; everything else about a
node (driver, cache lookup, MLMD registration and publication, the execution
watcher) stays with TFX's ``Launcher`` in the orchestrating process.

How a node's executor reaches a worker: ``BeamWorkerOperator`` (a TFX
executor operator for ``BeamExecutableSpec``) sends the executable spec and
the ``ExecutionInvocation`` proto (``ExecutionInfo.to_proto()``, what TFX's
own container entry points receive) to a worker, which runs TFX's
``BeamExecutorOperator`` on them and sends back the ``ExecutorOutput`` proto.
The output artifacts travel in that proto, as they do in process.

Workers are forked once, when the pool is created: after the heavy imports
(TF, Beam, TFX, TFDV, TFT, TFMA: about 5 s, paid once and shared
copy-on-write) and before any thread, TF runtime or gRPC server exists in the
orchestrating process, so create the pool before starting threads (and,
to keep those shared pages shared, after ``memory.freeze_imports``). An
executor's exception is re-raised in the orchestrator (its traceback from the
worker as the cause).

Crashes: a worker that dies (killed, out of memory) breaks the pool. Every
node that was on it fails with ``WorkerDiedError``, naming the dead worker,
how it died and the node it was running; TFX's launcher then removes those
nodes' outputs and marks their executions FAILED, and the run stops. A worker
dies with the orchestrating process (Linux's parent-death signal), so
``kill -9`` of ``taxi-pipeline`` leaves no worker behind to finish, or hold
memory for, an ingestion nobody will publish; the pool must therefore be
created by a thread that outlives it (the main thread).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import functools
import gc
import multiprocessing
import os
import signal
import sys
import time

from tfx.orchestration.portable import base_executor_operator, beam_executor_operator, data_types
from tfx.proto.orchestration import (
    executable_spec_pb2,
    execution_invocation_pb2,
    execution_result_pb2,
)

from pipeline import memory


def _noop() -> None:
    return None


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PID_FILE = "worker.pid"  # in the execution's tmp dir: which worker runs the node


class WorkerDiedError(RuntimeError):
    """A worker process died (killed, out of memory) while the pool ran a node."""


def _die_with(parent: int) -> None:
    """This worker gets SIGKILL when its parent, process ``parent``, dies.

    Linux only; strictly, when the parent's thread that forked it ends. Without it, a worker whose orchestrator was killed is adopted by init and
    keeps running its executor, then waits forever for more work. If the
    parent already died before the signal was armed, exit now.
    """
    libc = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or libc is None:
        return
    ctypes.CDLL(libc, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _pid_file(execution_info: data_types.ExecutionInfo) -> str | None:
    """Where the worker running ``execution_info`` leaves its pid (None: no tmp dir)."""
    tmp_dir = execution_info.tmp_dir
    return os.path.join(tmp_dir, _PID_FILE) if tmp_dir else None


def _worker_start(parent: int) -> None:
    """In a new worker: dies with ``parent``; objects inherited from it are never collected here.

    A TF resource the parent left in a reference cycle would otherwise be
    finalized by the worker's ``gc.collect()`` (``memory.release``): its
    ``__del__`` runs a TF op, which hangs in a forked child when the parent
    had started TF's runtime threads (seen when tests in random order used
    TF before forking a pool). ``taxi-pipeline`` freezes before forking
    (``memory.freeze_imports``); this makes every pool safe.
    """
    _die_with(parent)
    gc.freeze()


def run_beam_executor(spec: bytes, invocation: bytes) -> bytes:
    """In a worker: runs a Beam executor; returns the serialized ``ExecutorOutput``."""
    execution_info = data_types.ExecutionInfo.from_proto(
        execution_invocation_pb2.ExecutionInvocation.FromString(invocation)
    )
    pid_file = _pid_file(execution_info)
    if pid_file:
        try:
            with open(pid_file, "w") as f:
                f.write(str(os.getpid()))
        except OSError:  # not a local dir: a death is then reported without the node
            pass
    operator = beam_executor_operator.BeamExecutorOperator(
        executable_spec_pb2.BeamExecutableSpec.FromString(spec)
    )
    try:
        return operator.run_executor(execution_info).SerializeToString()
    finally:
        memory.release()
        sys.stdout.flush()
        sys.stderr.flush()


class WorkerPool:
    """``processes`` forked workers for Beam executors; a context manager.

    ``operators()`` is what a ``Launcher`` takes as ``custom_executor_operators``.
    """

    def __init__(self, processes: int):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.processes = processes
        self._pool = concurrent.futures.ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_start,
            initargs=(os.getpid(),),
        )
        before = set(multiprocessing.active_children())
        # With "fork", the first submit forks every worker, here and now.
        self._pool.submit(_noop).result()
        self.workers = [p for p in multiprocessing.active_children() if p not in before]

    def submit(self, spec: bytes, invocation: bytes) -> concurrent.futures.Future:
        return self._pool.submit(run_beam_executor, spec, invocation)

    def deaths(self, timeout: float = 30.0) -> dict[int, str]:
        """pid -> how it ended, for every worker; waits up to ``timeout`` s for them all to end.

        Called once the pool is broken: Python's pool then terminates (SIGTERM)
        the workers that are still alive.
        """
        deadline = time.monotonic() + timeout
        while any(w.exitcode is None for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {w.pid: _how(w.exitcode) for w in self.workers if w.exitcode is not None}

    def operators(self) -> dict:
        return {
            executable_spec_pb2.BeamExecutableSpec: functools.partial(BeamWorkerOperator, pool=self)
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class BeamWorkerOperator(base_executor_operator.BaseExecutorOperator):
    """Runs a ``BeamExecutableSpec`` executor on ``pool`` (a ``WorkerPool``)."""

    SUPPORTED_EXECUTOR_SPEC_TYPE = [executable_spec_pb2.BeamExecutableSpec]
    SUPPORTED_PLATFORM_CONFIG_TYPE = []

    def __init__(
        self,
        executor_spec,
        platform_config=None,
        pipeline_platform_config=None,
        *,
        pool: WorkerPool,
    ):
        super().__init__(executor_spec, platform_config, pipeline_platform_config)
        self.pool = pool

    def run_executor(
        self, execution_info: data_types.ExecutionInfo
    ) -> execution_result_pb2.ExecutorOutput:
        try:
            future = self.pool.submit(
                self._executor_spec.SerializeToString(),
                execution_info.to_proto().SerializeToString(),
            )
            return execution_result_pb2.ExecutorOutput.FromString(future.result())
        except concurrent.futures.process.BrokenProcessPool as e:
            raise WorkerDiedError(_death_message(self.pool, execution_info)) from e


def _how(exitcode: int) -> str:
    if exitcode == -signal.SIGKILL:
        return "was killed by SIGKILL (kill -9, or the kernel's out-of-memory killer)"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"


_STOPPED_BY_POOL = _how(-signal.SIGTERM)


def _death_message(pool: WorkerPool, execution_info: data_types.ExecutionInfo) -> str:
    """Which worker died and how, and what that did to the node of ``execution_info``.

    A worker the pool terminated (SIGTERM) after another one died is not the
    cause, unless every worker ended that way.
    """
    node = f"{execution_info.pipeline_node.node_info.id} (execution {execution_info.execution_id})"
    try:
        with open(_pid_file(execution_info) or os.devnull) as f:
            own = int(f.read())
    except (OSError, ValueError):
        own = None
    deaths = pool.deaths()
    causes = {pid: how for pid, how in deaths.items() if how != _STOPPED_BY_POOL} or deaths
    if own in causes:
        return f"worker process {own} running {node} {causes[own]}"
    dead = "; ".join(f"worker process {pid} {how}" for pid, how in causes.items())
    return f"{node} stopped: {dead or 'a worker process died'}, which broke the worker pool"
