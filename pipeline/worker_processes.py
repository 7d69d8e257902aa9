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
worker as the cause); a worker that dies (killed, out of memory) fails the
nodes that were on the pool with ``BrokenProcessPool``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import multiprocessing
import sys

from tfx.orchestration.portable import base_executor_operator, beam_executor_operator, data_types
from tfx.proto.orchestration import (
    executable_spec_pb2,
    execution_invocation_pb2,
    execution_result_pb2,
)

from pipeline import memory


def _noop() -> None:
    return None


def _worker_start() -> None:
    """In a new worker: objects inherited from the parent are never collected here.

    A TF resource the parent left in a reference cycle would otherwise be
    finalized by the worker's ``gc.collect()`` (``memory.release``): its
    ``__del__`` runs a TF op, which hangs in a forked child when the parent
    had started TF's runtime threads (seen when tests in random order used
    TF before forking a pool). ``taxi-pipeline`` freezes before forking
    (``memory.freeze_imports``); this makes every pool safe.
    """
    gc.freeze()


def run_beam_executor(spec: bytes, invocation: bytes) -> bytes:
    """In a worker: runs a Beam executor; returns the serialized ``ExecutorOutput``."""
    execution_info = data_types.ExecutionInfo.from_proto(
        execution_invocation_pb2.ExecutionInvocation.FromString(invocation)
    )
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
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start
        )
        # With "fork", the first submit forks every worker, here and now.
        self._pool.submit(_noop).result()

    def submit(self, spec: bytes, invocation: bytes) -> concurrent.futures.Future:
        return self._pool.submit(run_beam_executor, spec, invocation)

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
        future = self.pool.submit(
            self._executor_spec.SerializeToString(),
            execution_info.to_proto().SerializeToString(),
        )
        return execution_result_pb2.ExecutorOutput.FromString(future.result())
