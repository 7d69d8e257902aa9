"""Reference statistics found through ML Metadata (never by path guessing).

* `training_statistics`: the train split statistics of the newest span the
  served version was trained on (lineage.version_lineage gives its Examples; the
  StatisticsGen execution that consumed them gives the statistics).
* `span_statistics`: train split statistics of every ingested span.
"""

from __future__ import annotations

import ml_metadata as mlmd
from tensorflow_metadata.proto.v0 import statistics_pb2

import lineage
from monitoring.artifacts import load_split_statistics


def _statistics_of(graph: lineage.Graph, examples_id: int):
    """Newest ExampleStatistics artifact computed from Examples `examples_id`."""
    executions = graph.executions_of([examples_id], graph.consumers, "StatisticsGen")
    stats = graph.linked(executions, graph.outputs, "ExampleStatistics")
    return graph.artifacts[stats[-1]] if stats else None


def _raw_examples_by_span(graph: lineage.Graph) -> dict[int, list[int]]:
    """Span -> ids of its raw Examples (every ingestion, validated or not), oldest first."""
    spans: dict[int, list[int]] = {}
    for artifact_id in sorted(graph.artifacts):
        if lineage.is_raw_examples(graph, artifact_id):
            spans.setdefault(lineage.span_of(graph, artifact_id), []).append(artifact_id)
    return spans


def training_statistics(
    store: mlmd.MetadataStore, version: str, split: str = "train"
) -> tuple[int, statistics_pb2.DatasetFeatureStatisticsList]:
    """(span, statistics) of the newest span behind serving `version`.

    Raises:
      lineage.LineageError: unknown version, or no statistics for its span.
    """
    span, artifact = training_statistics_artifact(store, version)
    return span, load_split_statistics(artifact, split)


def training_statistics_artifact(store: mlmd.MetadataStore, version: str):
    """(span, ExampleStatistics MLMD artifact) of the newest span behind `version`.

    Raises:
      lineage.LineageError: unknown version, or no statistics for its span.
    """
    graph = lineage.Graph.load(store)
    info = lineage.version_lineage(graph, str(version))
    uris = set(info["examples"])
    candidates = [
        (lineage.span_of(graph, a), a)
        for ids in _raw_examples_by_span(graph).values()
        for a in ids
        if graph.artifacts[a].uri in uris
    ]
    for span, artifact_id in sorted(candidates, reverse=True):
        artifact = _statistics_of(graph, artifact_id)
        if artifact is not None:
            return span, artifact
    raise lineage.LineageError(f"no StatisticsGen output for the spans of version {version}")


def span_statistics(
    store: mlmd.MetadataStore, split: str = "train"
) -> dict[int, statistics_pb2.DatasetFeatureStatisticsList]:
    """Span -> statistics of its newest ingestion that has statistics."""
    graph = lineage.Graph.load(store)
    result = {}
    for span, ids in sorted(_raw_examples_by_span(graph).items()):
        for artifact_id in reversed(ids):
            artifact = _statistics_of(graph, artifact_id)
            if artifact is not None:
                result[span] = load_split_statistics(artifact, split)
                break
    return result
