"""The ML Metadata graph and the lineage questions answered from it alone.

* ``Graph``: every artifact, execution and event of a store, loaded at once
  (``Metadata`` holds one store and its graph for one command).
* ``prop``, ``split_names``, ``is_raw_examples``: reading artifacts.
* ``ingested_spans``: the spans a pipeline has accepted (see its docstring).
* ``pushed_versions``: serving version -> its PushedModel.
* ``version_lineage``: which spans, schema, transform graph, trainer run and
  evaluation produced serving version V.
* ``models_for_span``: which models were trained on span S, and which of them
  were pushed (and as which version).
"""

from __future__ import annotations

import dataclasses
import json

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from lineage import metadata_store

# Executions whose outputs count (a cache hit reuses the outputs of a complete one).
DONE_STATES = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
# The node that validates ingested Examples (components/anomalies_gate).
GATE_NODE = "AnomaliesGate"
INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


class LineageError(LookupError):
    """The requested version or span is not in the metadata store."""


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    """The store of a metadata target: an SQLite file opened read-only, or a
    `mysql://` URL (see lineage/metadata_store.py)."""
    return metadata_store.open_store(metadata_path, readonly=True)


@dataclasses.dataclass
class Graph:
    """The whole artifact/execution graph, loaded once (stores here are small)."""

    artifacts: dict[int, metadata_store_pb2.Artifact]
    executions: dict[int, metadata_store_pb2.Execution]
    artifact_types: dict[int, str]
    execution_types: dict[int, str]
    producers: dict[int, set[int]]  # artifact id -> executions that output it
    consumers: dict[int, set[int]]  # artifact id -> executions that input it
    inputs: dict[int, set[int]]  # execution id -> input artifact ids
    outputs: dict[int, set[int]]  # execution id -> output artifact ids
    nodes: dict[int, str]  # execution id -> pipeline node id (e.g. "Trainer")
    pipelines: dict[int, str]  # execution id -> pipeline name (e.g. "taxi")

    @classmethod
    def load(cls, store: mlmd.MetadataStore) -> Graph:
        artifacts = {a.id: a for a in store.get_artifacts()}
        executions = {e.id: e for e in store.get_executions()}
        graph = cls(
            artifacts=artifacts,
            executions=executions,
            artifact_types={t.id: t.name for t in store.get_artifact_types()},
            execution_types={t.id: t.name for t in store.get_execution_types()},
            producers={},
            consumers={},
            inputs={},
            outputs={},
            nodes={},
            pipelines={},
        )
        # TFX attributes every execution to a "node" context named
        # "<pipeline>.<node id>".
        for context in store.get_contexts_by_type("node"):
            pipeline_name, _, node_id = context.name.partition(".")
            for execution in store.get_executions_by_context(context.id):
                graph.nodes[execution.id] = node_id
                graph.pipelines[execution.id] = pipeline_name
        for event in store.get_events_by_execution_ids(list(executions)):
            if event.type in INPUT_EVENTS:
                graph.consumers.setdefault(event.artifact_id, set()).add(event.execution_id)
                graph.inputs.setdefault(event.execution_id, set()).add(event.artifact_id)
            elif event.type in OUTPUT_EVENTS:
                graph.producers.setdefault(event.artifact_id, set()).add(event.execution_id)
                graph.outputs.setdefault(event.execution_id, set()).add(event.artifact_id)
        return graph

    def type_of(self, artifact_id: int) -> str:
        return self.artifact_types[self.artifacts[artifact_id].type_id]

    def node_of(self, execution_id: int) -> str:
        """Pipeline node id of an execution (e.g. ``Trainer``)."""
        if execution_id in self.nodes:
            return self.nodes[execution_id]
        name = self.execution_types[self.executions[execution_id].type_id]
        return name.rsplit(".", 1)[-1]

    def pipeline_of(self, execution_id: int) -> str | None:
        """Name of the pipeline an execution ran in (None: not a pipeline node)."""
        return self.pipelines.get(execution_id)

    def producer(self, artifact_id: int) -> int | None:
        """The execution that wrote ``artifact_id`` (the first, not a cache hit)."""
        producers = sorted(self.producers.get(artifact_id, ()))
        return producers[0] if producers else None

    def linked(self, execution_ids, edges: dict, type_name: str) -> list[int]:
        """Artifacts of ``type_name`` that ``edges`` links to ``execution_ids``."""
        found = set()
        for execution_id in execution_ids:
            found |= {a for a in edges.get(execution_id, ()) if self.type_of(a) == type_name}
        return sorted(found)

    def executions_of(self, artifact_ids, edges: dict, node_part: str) -> list[int]:
        """Executions of nodes named like ``node_part`` that ``edges`` links to."""
        found = set()
        for artifact_id in artifact_ids:
            found |= {e for e in edges.get(artifact_id, ()) if node_part in self.node_of(e)}
        return sorted(found)


class Metadata:
    """The ML Metadata of one command: its store, opened once, and its graph,
    loaded on first use and then kept (a snapshot).

    A command opens one and passes it down, so a `watch` check reads the
    graph once, not once per question. After something else wrote what the
    command must see (the pipeline run it started), ``refresh`` makes the next
    question read it again; the command's own writes (executions it records)
    do not change what it asks.
    """

    def __init__(self, store: mlmd.MetadataStore, target: str = ""):
        self.store = store
        self.target = target
        self._graph: Graph | None = None

    @classmethod
    def open(cls, target: str, readonly: bool = False) -> Metadata:
        """Opens ``target`` (lineage/metadata_store.py; MetadataError if it cannot be)."""
        return cls(metadata_store.open_store(target, readonly=readonly), target)

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            self._graph = Graph.load(self.store)
        return self._graph

    def refresh(self) -> None:
        """Forgets the snapshot: the next ``graph`` reads the store again."""
        self._graph = None


def prop(artifact: metadata_store_pb2.Artifact, name: str):
    """A custom property (else a property) value of an MLMD artifact, or None."""
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            value = props[name]
            return getattr(value, value.WhichOneof("value"))
    return None


def split_names(artifact: metadata_store_pb2.Artifact) -> list[str]:
    """The ``split_names`` property of Examples/statistics/anomalies artifacts."""
    value = prop(artifact, "split_names")
    return json.loads(value) if value else []


def is_raw_examples(graph: Graph, artifact_id: int) -> bool:
    """Examples written by ExampleGen (not Transform's transformed examples)."""
    if graph.type_of(artifact_id) != "Examples":
        return False
    return any("ExampleGen" in graph.node_of(e) for e in graph.producers.get(artifact_id, ()))


def span_of(graph: Graph, artifact_id: int) -> int:
    """The ``span`` property of an Examples artifact."""
    return int(prop(graph.artifacts[artifact_id], "span"))


def execution_ref(graph: Graph, execution_id: int | None) -> dict | None:
    """``{"execution_id", "node"}`` of an execution (None for None)."""
    if execution_id is None:
        return None
    return {"execution_id": execution_id, "node": graph.node_of(execution_id)}


def ingested_spans(graph: Graph, pipeline_name: str | None = None) -> set[int]:
    """Spans that ``pipeline_name`` (None: any pipeline) has ingested.

    A span is ingested once an AnomaliesGate execution of the pipeline passed
    (completed, or was a cache hit of a completed one) with the span's raw
    Examples as input: its data was read, validated and accepted, which is
    what the span resolver trains on (components/spans.py). Raw Examples
    whose validation failed, or that were never validated, do not count: the
    span is re-ingested by the next run (the runner's backfill, `watch`) once
    its data is fixed.
    """
    spans = set()
    for execution_id, execution in graph.executions.items():
        if GATE_NODE not in graph.node_of(execution_id):
            continue
        if pipeline_name is not None and graph.pipeline_of(execution_id) != pipeline_name:
            continue
        if execution.last_known_state not in DONE_STATES:
            continue
        for artifact_id in graph.inputs.get(execution_id, ()):
            if is_raw_examples(graph, artifact_id):
                spans.add(span_of(graph, artifact_id))
    return spans


def pushed_versions(graph: Graph) -> dict[str, int]:
    """Serving version -> PushedModel artifact id, for successful pushes."""
    versions = {}
    for artifact_id, artifact in graph.artifacts.items():
        if graph.type_of(artifact_id) == "PushedModel" and prop(artifact, "pushed") == 1:
            versions[str(prop(artifact, "pushed_version"))] = artifact_id
    return versions


def version_lineage(graph: Graph, version: str) -> dict:
    """What produced serving version ``version``.

    Returns:
      A dict with ``version``, ``destination``, ``spans`` (sorted span
      numbers), ``examples`` (raw Examples URIs), ``schema``, ``transform_graph``,
      ``model``, ``trainer`` (execution), ``evaluation``, ``blessing`` and
      ``pusher`` (execution).

    Raises:
      LineageError: no successful push of that version is recorded.
    """
    versions = pushed_versions(graph)
    if str(version) not in versions:
        known = ", ".join(sorted(versions)) or "none"
        raise LineageError(f"no pushed model with version {version} (pushed versions: {known})")
    pushed_id = versions[str(version)]
    pusher = graph.producer(pushed_id)
    model = graph.linked([pusher], graph.inputs, "Model")
    trainer = graph.producer(model[0]) if model else None
    transform_graph = graph.linked([trainer], graph.inputs, "TransformGraph")
    transform = graph.producer(transform_graph[0]) if transform_graph else None
    raw = [
        a for a in graph.linked([transform], graph.inputs, "Examples") if is_raw_examples(graph, a)
    ]
    blessing = graph.linked([pusher], graph.inputs, "ModelBlessing")
    evaluator = graph.producer(blessing[0]) if blessing else None
    baseline = [a for a in graph.linked([evaluator], graph.inputs, "Model") if a not in model]
    uris = lambda ids: [graph.artifacts[a].uri for a in ids]  # noqa: E731
    pushed = graph.artifacts[pushed_id]
    return {
        "version": str(version),
        "destination": prop(pushed, "pushed_destination"),
        "spans": sorted({span_of(graph, a) for a in raw}),
        "examples": uris(raw),
        "schema": uris(graph.linked([trainer, transform], graph.inputs, "Schema")),
        "transform_graph": uris(transform_graph),
        "model": uris(model),
        "trainer": execution_ref(graph, trainer),
        "transform": execution_ref(graph, transform),
        "evaluation": uris(graph.linked([evaluator], graph.outputs, "ModelEvaluation")),
        "baseline_model": uris(baseline),
        "blessing": [
            {"uri": graph.artifacts[a].uri, "blessed": prop(graph.artifacts[a], "blessed") == 1}
            for a in blessing
        ],
        "pusher": execution_ref(graph, pusher),
    }


def models_for_span(graph: Graph, span: int) -> dict:
    """Models trained on ``span`` and the serving versions they were pushed as.

    Raises:
      LineageError: the span was never ingested (no raw Examples of it).
    """
    raw = [a for a in graph.artifacts if is_raw_examples(graph, a)]
    span_examples = [a for a in raw if span_of(graph, a) == span]
    if not span_examples:
        ingested = sorted({span_of(graph, a) for a in raw})
        raise LineageError(f"span {span} was never ingested (ingested spans: {ingested or 'none'})")
    transforms = graph.executions_of(span_examples, graph.consumers, "Transform")
    graphs = graph.linked(transforms, graph.outputs, "TransformGraph")
    trainers = graph.executions_of(graphs, graph.consumers, "Trainer")
    models = {}
    for model_id in graph.linked(trainers, graph.outputs, "Model"):
        pushers = graph.executions_of([model_id], graph.consumers, "Pusher")
        versions = sorted(
            str(prop(graph.artifacts[a], "pushed_version"))
            for a in graph.linked(pushers, graph.outputs, "PushedModel")
            if prop(graph.artifacts[a], "pushed") == 1
        )
        models[model_id] = {
            "model": graph.artifacts[model_id].uri,
            "artifact_id": model_id,
            "pushed_versions": versions,
        }
    return {"span": span, "models": [models[k] for k in sorted(models)]}
