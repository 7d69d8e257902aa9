"""Pipeline runs and their artifacts, found through ML Metadata.

A *run* is one ``pipeline_run`` context of the local TFX orchestrator (one
``LocalDagRunner().run(...)`` call): a backfill of one span ("ingest only") or
a full ingest/train/evaluate/push run. Its id is the context name (an ISO
timestamp such as ``2026-11-25T16:25:19.480832``); any execution id of the run
also identifies it.

The MLMD graph itself is ``lineage.Graph``; this module only adds the run
(context) view on top of it.
"""

from __future__ import annotations

import dataclasses
import os

from ml_metadata.proto import metadata_store_pb2

from lineage import metadata_store
from lineage.graph import Metadata, prop

RUN_CONTEXT_TYPE = "pipeline_run"

_STATE_NAMES = {value: name.lower() for name, value in metadata_store_pb2.Execution.State.items()}


class RunNotFoundError(LookupError):
    """No run matches the request (or the run dir holds no metadata)."""


@dataclasses.dataclass
class Run:
    """One pipeline run: its executions keyed by pipeline node id."""

    run_id: str
    context_id: int
    started_ms: int
    executions: dict[str, int]  # node id -> execution id
    states: dict[str, str]  # node id -> complete / cached / failed / running ...

    def node(self, name: str) -> str | None:
        """The run's node called ``name``, else the one whose id contains it.

        Node ids come from MLMD; a custom component may show up under its
        class name (e.g. ``AtomicPusher`` for the ``Pusher`` node), so
        ``node("Pusher")`` finds either.
        """
        if name in self.executions:
            return name
        matches = [node for node in self.executions if name in node]
        return matches[0] if len(matches) == 1 else None

    def has(self, name: str) -> bool:
        return self.node(name) is not None

    @property
    def ingest_only(self) -> bool:
        """A backfill run: ingestion and validation only, no training."""
        return not self.has("Trainer") and not self.has("Transform")

    @property
    def failed_nodes(self) -> list[str]:
        return [node for node, state in self.states.items() if state == "failed"]

    @property
    def succeeded(self) -> bool:
        return all(state in ("complete", "cached") for state in self.states.values())

    @property
    def kind(self) -> str:
        """``train``, ``ingest only`` (a backfill) or ``stopped`` (failed before training)."""
        if not self.ingest_only:
            return "train"
        return "stopped" if self.failed_nodes else "ingest only"


class RunStore:
    """Read-only view of the runs recorded in ML Metadata: ``metadata`` (an SQLite
    file or a ``mysql://`` URL), else ``$TAXI_METADATA``, else ``<run_dir>/metadata.sqlite``.

    The store is opened and its graph loaded once, when the view is made.
    """

    def __init__(self, run_dir: str, metadata: str | None = None):
        self.run_dir = os.path.abspath(run_dir)
        self.metadata_path = metadata_store.resolve(metadata, self.run_dir)
        if not metadata_store.exists(self.metadata_path):
            raise RunNotFoundError(
                f"no ML Metadata at {self.metadata_path}; run the pipeline first "
                f"(taxi-pipeline --output-dir {self.run_dir})"
            )
        self.metadata = Metadata.open(self.metadata_path, readonly=True)
        self.store = self.metadata.store
        self.graph = self.metadata.graph
        self._runs = self._load_runs()

    def _load_runs(self) -> list[Run]:
        runs = []
        for context in self.store.get_contexts_by_type(RUN_CONTEXT_TYPE):
            executions, states = {}, {}
            for execution in sorted(
                self.store.get_executions_by_context(context.id), key=lambda e: e.id
            ):
                node = self.graph.node_of(execution.id)
                executions[node] = execution.id
                states[node] = _STATE_NAMES.get(execution.last_known_state, "unknown")
            runs.append(
                Run(context.name, context.id, context.create_time_since_epoch, executions, states)
            )
        return sorted(runs, key=lambda r: (r.started_ms, r.context_id))

    # -- runs ---------------------------------------------------------------

    def runs(self) -> list[Run]:
        """All runs, oldest first."""
        return list(self._runs)

    def get_run(self, run_id: str | int | None = None, *, require: str | None = None) -> Run:
        """A run by id, by execution id, or the newest one.

        Args:
          run_id: a run id (context name), an execution id (int or digits) of
            any execution in the run, or None for the newest run.
          require: with ``run_id=None``, the newest run that has an execution
            of this node (e.g. ``"Evaluator"``).

        Raises:
          RunNotFoundError: nothing matches.
        """
        if run_id is None or run_id == "":
            candidates = [r for r in self._runs if require is None or r.has(require)]
            if not candidates:
                what = f" with a {require} execution" if require else ""
                raise RunNotFoundError(f"no run{what} in {self.metadata_path}")
            return candidates[-1]
        for run in self._runs:
            if run.run_id == str(run_id):
                return run
        if str(run_id).isdigit():
            execution_id = int(run_id)
            for run in self._runs:
                if execution_id in run.executions.values():
                    return run
        known = ", ".join(r.run_id for r in self._runs) or "none"
        raise RunNotFoundError(
            f"no run or execution {run_id!r} in {self.metadata_path} (runs: {known})"
        )

    # -- artifacts ----------------------------------------------------------

    def artifact(self, artifact_id: int) -> metadata_store_pb2.Artifact:
        return self.graph.artifacts[artifact_id]

    def outputs(self, run: Run, node: str, type_name: str) -> list[metadata_store_pb2.Artifact]:
        """Artifacts of ``type_name`` written (or reused from cache) by ``node`` in ``run``."""
        node = run.node(node)
        if node is None:
            return []
        ids = self.graph.linked([run.executions[node]], self.graph.outputs, type_name)
        return [self.graph.artifacts[a] for a in ids]

    def inputs(self, run: Run, node: str, type_name: str) -> list[metadata_store_pb2.Artifact]:
        """Artifacts of ``type_name`` that ``node`` read in ``run``."""
        node = run.node(node)
        if node is None:
            return []
        ids = self.graph.linked([run.executions[node]], self.graph.inputs, type_name)
        return [self.graph.artifacts[a] for a in ids]

    def output(self, run: Run, node: str, type_name: str) -> metadata_store_pb2.Artifact | None:
        found = self.outputs(run, node, type_name)
        return found[-1] if found else None

    def span_of_run(self, run: Run) -> int | None:
        """The span ingested by the run's ExampleGen."""
        examples = self.output(run, "CsvExampleGen", "Examples")
        return None if examples is None else int(prop(examples, "span"))

    def trained_spans(self, run: Run) -> list[int]:
        """Spans of the raw Examples the run's Transform read."""
        return sorted({int(prop(a, "span")) for a in self.inputs(run, "Transform", "Examples")})

    def statistics_by_span(self) -> dict[int, metadata_store_pb2.Artifact]:
        """Span -> newest ExampleStatistics artifact computed on that span.

        Spans whose ingestion never got as far as StatisticsGen are absent.
        """
        result: dict[int, tuple[int, metadata_store_pb2.Artifact]] = {}
        for artifact_id, artifact in self.graph.artifacts.items():
            if self.graph.type_of(artifact_id) != "ExampleStatistics":
                continue
            producer = self.graph.producer(artifact_id)
            if producer is None:
                continue
            spans = {
                int(prop(self.graph.artifacts[a], "span"))
                for a in self.graph.inputs.get(producer, ())
                if self.graph.type_of(a) == "Examples"
                and prop(self.graph.artifacts[a], "span") is not None
            }
            for span in spans:
                if span not in result or result[span][0] < artifact_id:
                    result[span] = (artifact_id, artifact)
        return {span: artifact for span, (_, artifact) in sorted(result.items())}

    def describe_run(self, run: Run) -> str:
        """One line: id, kind, span, node states."""
        span = self.span_of_run(run)
        failed = f", failed at {', '.join(run.failed_nodes)}" if run.failed_nodes else ""
        return f"run {run.run_id} ({run.kind}, span {span if span is not None else '-'}{failed})"
