"""Lineage queries on a small, hand-built ML Metadata graph (in-memory store).

Two runs: run 1 trains model A on spans 1-2 and pushes version 100; run 2
ingests span 3, trains model B on spans 1-3 with A as the Evaluator's
baseline, and pushes version 200.
"""

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

import lineage


class Builder:
    def __init__(self):
        config = pb.ConnectionConfig()
        config.fake_database.SetInParent()
        self.store = mlmd.MetadataStore(config)
        self.node_contexts = {}
        node_type = pb.ContextType(name="node")
        self.node_type_id = self.store.put_context_type(node_type)

    def artifact(self, type_name, uri, **props):
        type_id = self.store.put_artifact_type(pb.ArtifactType(name=type_name))
        artifact = pb.Artifact(type_id=type_id, uri=uri)
        for key, value in props.items():
            if isinstance(value, int):
                artifact.custom_properties[key].int_value = value
            else:
                artifact.custom_properties[key].string_value = value
        [artifact_id] = self.store.put_artifacts([artifact])
        return artifact_id

    def execution(self, node, inputs=(), outputs=(), state=pb.Execution.COMPLETE, pipeline="taxi"):
        type_id = self.store.put_execution_type(pb.ExecutionType(name=f"tfx.components.{node}"))
        execution = pb.Execution(type_id=type_id, last_known_state=state)
        [execution_id] = self.store.put_executions([execution])
        events = [
            pb.Event(artifact_id=a, execution_id=execution_id, type=pb.Event.INPUT) for a in inputs
        ]
        events += [
            pb.Event(artifact_id=a, execution_id=execution_id, type=pb.Event.OUTPUT)
            for a in outputs
        ]
        self.store.put_events(events)
        key = (pipeline, node)
        if key not in self.node_contexts:
            [self.node_contexts[key]] = self.store.put_contexts(
                [pb.Context(type_id=self.node_type_id, name=f"{pipeline}.{node}")]
            )
        self.store.put_attributions_and_associations(
            [], [pb.Association(context_id=self.node_contexts[key], execution_id=execution_id)]
        )
        return execution_id


@pytest.fixture(scope="module")
def store():
    b = Builder()
    spans = {}
    for span in (1, 2, 3):
        spans[span] = b.artifact("Examples", f"/ex/{span}", span=span)
        b.execution("CsvExampleGen", outputs=[spans[span]])
    schema = b.artifact("Schema", "/schema")
    b.execution("ImportSchemaGen", outputs=[schema])

    def train(name, span_ids, baseline=None, version=None):
        graph = b.artifact("TransformGraph", f"/tg/{name}")
        b.execution("Transform", inputs=[*span_ids, schema], outputs=[graph])
        model = b.artifact("Model", f"/model/{name}")
        b.execution("Trainer", inputs=[*span_ids, graph, schema], outputs=[model])
        evaluation = b.artifact("ModelEvaluation", f"/eval/{name}")
        blessing = b.artifact("ModelBlessing", f"/bless/{name}", blessed=1)
        inputs = [model, *span_ids] + ([baseline] if baseline else [])
        b.execution("Evaluator", inputs=inputs, outputs=[evaluation, blessing])
        pushed = b.artifact(
            "PushedModel",
            f"/push/{name}",
            pushed=1,
            pushed_version=str(version),
            pushed_destination=f"/serving/{version}",
        )
        b.execution("Pusher", inputs=[model, blessing], outputs=[pushed])
        return model

    model_a = train("a", [spans[1], spans[2]], version=100)
    train("b", [spans[1], spans[2], spans[3]], baseline=model_a, version=200)
    return b.store


@pytest.fixture(scope="module")
def graph(store):
    return lineage.Graph.load(store)


def test_version_lineage(graph):
    info = lineage.version_lineage(graph, "200")
    assert info["spans"] == [1, 2, 3]
    assert info["examples"] == ["/ex/1", "/ex/2", "/ex/3"]
    assert info["schema"] == ["/schema"]
    assert info["transform_graph"] == ["/tg/b"]
    assert info["model"] == ["/model/b"]
    assert info["trainer"]["node"] == "Trainer"
    assert info["evaluation"] == ["/eval/b"]
    assert info["baseline_model"] == ["/model/a"]
    assert info["blessing"] == [{"uri": "/bless/b", "blessed": True}]
    assert info["destination"] == "/serving/200"
    # The baseline's own history does not leak into version 200's lineage.
    assert lineage.version_lineage(graph, "100")["spans"] == [1, 2]
    assert info["trainer"] == lineage.execution_ref(
        graph, graph.producer(graph_id(graph, "/model/b"))
    )


def graph_id(graph, uri):
    (artifact_id,) = [a for a, artifact in graph.artifacts.items() if artifact.uri == uri]
    return artifact_id


def test_models_for_span(graph):
    by_span = {s: lineage.models_for_span(graph, s)["models"] for s in (1, 3)}
    assert [(m["model"], m["pushed_versions"]) for m in by_span[1]] == [
        ("/model/a", ["100"]),
        ("/model/b", ["200"]),
    ]
    assert [(m["model"], m["pushed_versions"]) for m in by_span[3]] == [("/model/b", ["200"])]


def test_unknown_version_and_span(graph):
    with pytest.raises(lineage.LineageError, match="pushed versions: 100, 200"):
        lineage.version_lineage(graph, "300")
    with pytest.raises(lineage.LineageError, match=r"ingested spans: \[1, 2, 3\]"):
        lineage.models_for_span(graph, 9)


def test_artifact_readers(graph):
    examples = graph_id(graph, "/ex/2")
    assert lineage.is_raw_examples(graph, examples) and lineage.span_of(graph, examples) == 2
    assert not lineage.is_raw_examples(graph, graph_id(graph, "/tg/a"))
    assert lineage.prop(graph.artifacts[graph_id(graph, "/push/b")], "pushed_version") == "200"
    assert lineage.prop(graph.artifacts[examples], "missing") is None
    assert lineage.split_names(graph.artifacts[examples]) == []
    assert lineage.pushed_versions(graph) == {
        "100": graph_id(graph, "/push/a"),
        "200": graph_id(graph, "/push/b"),
    }
    trainer = graph.producer(graph_id(graph, "/model/a"))
    assert graph.pipeline_of(trainer) == "taxi" and graph.node_of(trainer) == "Trainer"


def test_ingested_spans_are_the_spans_a_gate_passed():
    """Known answer. Span 1: gate passed; span 2: gate was a cache hit; span 3:
    gate failed (bad data); span 4: ingested but not validated yet (the run
    stopped before the gate); span 5: passed in another pipeline sharing the
    store; span 6: gate passed, then its re-ingestion failed (still usable).
    Counting raw Examples instead would give 1-6, ignoring the pipeline 1, 2, 5, 6."""
    b = Builder()
    states = {1: [pb.Execution.COMPLETE], 2: [pb.Execution.CACHED], 3: [pb.Execution.FAILED]}
    states[6] = [pb.Execution.COMPLETE, pb.Execution.FAILED]
    for span in (1, 2, 3, 4, 6):
        for index, state in enumerate(states.get(span, [None])):
            examples = b.artifact("Examples", f"/ex/{span}/{index}", span=span)
            b.execution("CsvExampleGen", outputs=[examples])
            if state is not None:
                b.execution("AnomaliesGate", inputs=[examples], state=state)
    other = b.artifact("Examples", "/other/5", span=5)
    b.execution("CsvExampleGen", outputs=[other], pipeline="other")
    b.execution("AnomaliesGate", inputs=[other], pipeline="other")
    # Transform's output is Examples too, and a gate never sees it.
    transformed = b.artifact("Examples", "/transformed/7", span=7)
    b.execution("Transform", outputs=[transformed])
    graph = lineage.Graph.load(b.store)
    assert lineage.ingested_spans(graph, "taxi") == {1, 2, 6}
    assert lineage.ingested_spans(graph, "other") == {5}
    assert lineage.ingested_spans(graph) == {1, 2, 5, 6}
    assert lineage.ingested_spans(graph, "nope") == set()


def test_metadata_reads_the_graph_once_until_refreshed(store, monkeypatch):
    loads = []
    load = lineage.Graph.load
    monkeypatch.setattr(lineage.Graph, "load", lambda s: loads.append(s) or load(s))
    metadata = lineage.Metadata(store, "fake")
    assert loads == []  # nothing read until asked
    first = metadata.graph
    assert metadata.graph is first and len(loads) == 1
    metadata.refresh()
    assert metadata.graph is not first and len(loads) == 2
