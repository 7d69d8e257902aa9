"""Runs (``pipeline_run`` contexts) and their artifacts, on a synthetic MLMD store."""

from __future__ import annotations

import json

import pytest
from ml_metadata.proto import metadata_store_pb2

import lineage
from lineage import runs


def _fake_store(path: str) -> None:
    import ml_metadata as mlmd

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    store = mlmd.MetadataStore(config)
    run_type = store.put_context_type(metadata_store_pb2.ContextType(name="pipeline_run"))
    types = {
        name: store.put_execution_type(
            metadata_store_pb2.ExecutionType(name=f"tfx.components.{name}")
        )
        for name in ("CsvExampleGen", "StatisticsGen", "Trainer")
    }
    examples_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    stats_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="ExampleStatistics"))
    for i, (span, nodes) in enumerate(
        (
            (2015, ["CsvExampleGen", "StatisticsGen"]),
            (2016, ["CsvExampleGen", "StatisticsGen", "Trainer"]),
        )
    ):
        context = metadata_store_pb2.Context(type_id=run_type, name=f"2026-01-0{i + 1}T00:00:00")
        [context.id] = store.put_contexts([context])
        examples = metadata_store_pb2.Artifact(type_id=examples_type, uri=f"/x/examples/{span}")
        examples.custom_properties["span"].int_value = span
        examples.custom_properties["split_names"].string_value = json.dumps(["train", "eval"])
        stats = metadata_store_pb2.Artifact(type_id=stats_type, uri=f"/x/stats/{span}")
        stats.custom_properties["split_names"].string_value = json.dumps(["train", "eval"])
        for node in nodes:
            execution = metadata_store_pb2.Execution(
                type_id=types[node], last_known_state=metadata_store_pb2.Execution.COMPLETE
            )
            events = []
            if node == "CsvExampleGen":
                events.append(
                    (examples, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))
                )
            if node == "StatisticsGen":
                events.append(
                    (examples, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT))
                )
                events.append(
                    (stats, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))
                )
            _, artifact_ids, _ = store.put_execution(
                execution, events, [context], reuse_context_if_already_exist=True
            )
            for artifact, artifact_id in zip([a for a, _ in events], artifact_ids, strict=False):
                artifact.id = artifact_id


def test_run_store_on_synthetic_metadata(tmp_path):
    _fake_store(str(tmp_path / "metadata.sqlite"))
    store = runs.RunStore(str(tmp_path))
    assert [r.run_id for r in store.runs()] == ["2026-01-01T00:00:00", "2026-01-02T00:00:00"]
    newest = store.get_run()
    assert newest.kind == "train" and store.span_of_run(newest) == 2016
    first = store.get_run("2026-01-01T00:00:00")
    assert first.kind == "ingest only" and first.succeeded
    assert store.get_run(str(first.executions["StatisticsGen"])).run_id == first.run_id
    assert store.get_run(require="Trainer").run_id == newest.run_id
    assert {span: a.uri for span, a in store.statistics_by_span().items()} == {
        2015: "/x/stats/2015",
        2016: "/x/stats/2016",
    }
    assert lineage.split_names(store.output(first, "StatisticsGen", "ExampleStatistics")) == [
        "train",
        "eval",
    ]
    with pytest.raises(runs.RunNotFoundError, match="no run or execution 'nope'"):
        store.get_run("nope")
    with pytest.raises(runs.RunNotFoundError, match="with a Evaluator execution"):
        store.get_run(require="Evaluator")
