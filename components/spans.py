"""Resolver strategy: the newest validated version of each of the newest spans.

TFX's ``SpanRangeStrategy`` returns every artifact in the span range, so a
span ingested twice (its files changed, or a ``--no-cache`` run) would be
trained on twice, and a span whose data failed validation would still be
used. This strategy keeps, per span, the newest Examples artifact that an
``AnomaliesGate`` execution passed, and then the newest ``num_spans`` spans.
"""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.common import resolver

GATE_NODE = "AnomaliesGate"
PASSED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def span_of(artifact) -> int:
    return artifact.get_int_custom_property("span")


def by_span(artifacts: list) -> list:
    """Newest span first; within a span, the newest artifact (highest id) first.

    The order consumers read span artifacts in: TFX itself hands them over in
    artifact-id order, which depends on ingestion order (see span_order.py).
    """
    return sorted(artifacts, key=lambda a: (-(span_of(a) or 0), -a.id))


def select_spans(artifacts: list, passed_ids: set[int], num_spans: int) -> list:
    """Newest passed artifact per span, newest ``num_spans`` spans (0 = all), newest first."""
    newest: dict[int, object] = {}
    for artifact in artifacts:
        if artifact.id not in passed_ids:
            continue
        span = span_of(artifact)
        if span not in newest or artifact.id > newest[span].id:
            newest[span] = artifact
    spans = sorted(newest, reverse=True)
    if num_spans > 0:
        spans = spans[:num_spans]
    return [newest[s] for s in spans]


def gate_passed_ids(store, artifact_ids: list[int]) -> set[int]:
    """Artifact ids that a successful AnomaliesGate execution took as input."""
    if not artifact_ids:
        return set()
    events = [
        e
        for e in store.get_events_by_artifact_ids(artifact_ids)
        if e.type == metadata_store_pb2.Event.INPUT
    ]
    executions = {x.id: x for x in store.get_executions_by_id({e.execution_id for e in events})}
    type_names = {t.id: t.name for t in store.get_execution_types()}
    passed = set()
    for event in events:
        execution = executions.get(event.execution_id)
        if (
            execution is not None
            and execution.last_known_state in PASSED
            and GATE_NODE in type_names.get(execution.type_id, "")
        ):
            passed.add(event.artifact_id)
    return passed


class LatestValidatedSpansStrategy(resolver.ResolverStrategy):
    """Resolves ``examples`` to one validated artifact per span, newest spans first."""

    def __init__(self, num_spans: int = 0):
        self._num_spans = num_spans

    def resolve_artifacts(self, store, input_dict):
        result = {}
        for key, artifacts in input_dict.items():
            passed = gate_passed_ids(store, [a.id for a in artifacts])
            result[key] = select_spans(artifacts, passed, self._num_spans)
        # None (not an empty list) tells TFX the inputs are not ready.
        return result if all(result.values()) else None
