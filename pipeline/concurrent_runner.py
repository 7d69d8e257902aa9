"""A local DAG runner that runs independent components at the same time.

TFX 1.16's ``LocalDagRunner`` launches the nodes one after the other in
topological order, even where the DAG allows more (its own source carries a
TODO to that effect). After the Trainer four nodes only need the model —
Evaluator, TestEvaluator, BehavioralChecks and InfraCanary (which mostly waits
for a server subprocess to boot) — so running them side by side saves most of
their combined wall time on a multi-core machine.

Everything a node does still goes through TFX's own ``Launcher`` (driver,
cache lookup, executor, publisher), exactly as ``LocalDagRunner`` calls it.
What changes:

* a node starts as soon as all its upstream nodes have finished, on a pool of
  ``max_workers`` threads (TF, Beam's in-memory runner and our executors are
  thread-safe; each node has its own Beam pipeline);
* on SQLite, ML Metadata access is serialized: all launchers of the process
  (also those of pipeline runs started at the same time from other threads)
  share one lock around their MLMD sessions, because SQLite rejects concurrent
  writers instead of waiting. A launcher only holds its session while
  preparing and publishing an execution, never while the executor runs. On
  MySQL/MariaDB (a server that lets writers wait for each other's row locks)
  there is no lock: each launcher has its own connection, and a call that
  MySQL rolled back after a deadlock with another writer is repeated;
* with a ``worker_pool`` (``pipeline.worker_processes``), Beam components'
  executors run in its worker processes, so they also use several cores;
* after each node, cyclic garbage is collected and free heap returned to
  the OS (``pipeline.memory``);
* a ``listener`` (e.g. ``pipeline.progress.Progress``) is told when each
  node starts and how it ended: COMPLETE or CACHED (its execution's state in
  MLMD), RESOLVED (a resolver, which has no executor) or FAILED;
* on the first failure no new node starts, running nodes finish, and the
  first error is re-raised as is (so callers can catch e.g. the anomalies
  gate's error type).

Partial runs (``run_options``) are delegated to ``LocalDagRunner`` unchanged
(without ``listener`` calls).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
from typing import Any, Protocol

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import launcher, runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2

from core import compat
from lineage import metadata_store
from pipeline import memory
from pipeline.worker_processes import WorkerPool

# One lock per process: every MLMD session opened by these runners takes it.
_MLMD_LOCK = threading.RLock()


class _SerializedMetadata(metadata.Metadata):
    """An MLMD connection whose sessions take a lock shared by all launchers."""

    def __init__(self, connection_config, lock: threading.RLock):
        super().__init__(connection_config)
        self._session_lock = lock

    def __enter__(self):
        self._session_lock.acquire()
        try:
            return super().__enter__()
        except BaseException:
            self._session_lock.release()
            raise

    def __exit__(self, *exc_info):
        try:
            return super().__exit__(*exc_info)
        finally:
            self._session_lock.release()


class _RetryingMetadata(metadata.Metadata):
    """An MLMD connection to MySQL whose calls are repeated when MySQL rolled them
    back (a deadlock with another writer; see metadata_store.RetryingStore)."""

    def __enter__(self):
        super().__enter__()
        compat.wrap_metadata_store(self, _retrying)
        return self


def _retrying(store):
    """``store`` behind ``metadata_store.RetryingStore`` (once)."""
    if isinstance(store, metadata_store.RetryingStore):
        return store
    return metadata_store.RetryingStore(store)


def mlmd_connection(connection) -> metadata.Metadata:
    """A launcher's MLMD connection: behind the process-wide lock for SQLite,
    on its own (retrying rolled-back calls) for MySQL."""
    connection_config = getattr(connection, connection.WhichOneof("connection_config"))
    if connection_config.WhichOneof("config") == "mysql":
        return _RetryingMetadata(connection_config)
    return _SerializedMetadata(connection_config, _MLMD_LOCK)


class NodeListener(Protocol):
    """What a runner tells about each node it launches (called from worker threads)."""

    def node_started(self, node_id: str) -> Any:
        """``node_id`` starts; returns a token for the calls below."""

    def node_finished(self, token: Any, state: str) -> None:
        """The node ended well: COMPLETE, CACHED or RESOLVED."""

    def node_failed(self, token: Any) -> None:
        """The node raised (the runner then re-raises its error)."""


def execution_state(connection, info) -> str:
    """COMPLETE or CACHED: the MLMD state of ``info``'s execution (RESOLVED without one)."""
    if info is None or not info.execution_id:
        return "RESOLVED"
    with mlmd_connection(connection) as m:
        [execution] = m.store.get_executions_by_id([info.execution_id])
    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def ready_nodes(upstream: dict[str, set[str]], done: set[str], started: set[str]) -> list[str]:
    """Nodes not started yet whose upstream nodes are all done, in ``upstream``'s order."""
    return [n for n, deps in upstream.items() if n not in started and deps <= done]


class ConcurrentLocalDagRunner(LocalDagRunner):
    """``LocalDagRunner`` that runs up to ``max_workers`` ready nodes at once."""

    def __init__(
        self,
        max_workers: int = 4,
        worker_pool: WorkerPool | None = None,
        listener: NodeListener | None = None,
    ):
        super().__init__()
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._max_workers = max_workers
        self._operators = worker_pool.operators() if worker_pool else None
        self._listener = listener

    def run_with_ir(
        self,
        pipeline: pipeline_pb2.Pipeline,
        run_options: pipeline_pb2.RunOptions | None = None,
    ) -> None:
        if run_options is not None:
            return super().run_with_ir(pipeline, run_options)
        runtime_parameter_utils.substitute_runtime_parameter(
            pipeline,
            {constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()},
        )
        deployment_config = runner_utils.extract_local_deployment_config(pipeline)
        connection = deployment_config.metadata_connection_config

        nodes = {}
        upstream: dict[str, set[str]] = {}
        for node in pipeline.nodes:  # topological order
            pipeline_node = node.pipeline_node
            node_id = pipeline_node.node_info.id
            if pipeline_node.execution_options.HasField("skip"):
                continue
            nodes[node_id] = pipeline_node
            upstream[node_id] = set(pipeline_node.upstream_nodes)
        for deps in upstream.values():
            deps &= nodes.keys()  # skipped nodes do not block anything

        def launch(node_id: str) -> None:
            executor_spec = runner_utils.extract_executor_spec(deployment_config, node_id)
            node_launcher = launcher.Launcher(
                pipeline_node=nodes[node_id],
                mlmd_connection=mlmd_connection(connection),
                pipeline_info=pipeline.pipeline_info,
                pipeline_runtime_spec=pipeline.runtime_spec,
                executor_spec=executor_spec,
                custom_driver_spec=runner_utils.extract_custom_driver_spec(
                    deployment_config, node_id
                ),
                custom_executor_operators=self._operators,
            )
            if self._listener is None:
                node_launcher.launch()
            else:
                token = self._listener.node_started(node_id)
                try:
                    info = node_launcher.launch()
                except BaseException:
                    self._listener.node_failed(token)
                    raise
                # A node without an executor is a system node (a resolver).
                state = "RESOLVED" if executor_spec is None else execution_state(connection, info)
                self._listener.node_finished(token, state)
            memory.release()

        done: set[str] = set()
        started: set[str] = set()
        error: BaseException | None = None
        with concurrent.futures.ThreadPoolExecutor(self._max_workers) as pool:
            running: dict[concurrent.futures.Future, str] = {}
            while True:
                if error is None:
                    for node_id in ready_nodes(upstream, done, started):
                        started.add(node_id)
                        running[pool.submit(launch, node_id)] = node_id
                if not running:
                    break
                finished, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    node_id = running.pop(future)
                    if future.exception() is None:
                        done.add(node_id)
                    elif error is None:
                        error = future.exception()
        if error is not None:
            raise error
        return None
