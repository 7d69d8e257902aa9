"""What a run did, read back from ML Metadata: spans, blessing, test metrics, checks, push."""

from __future__ import annotations

import dataclasses
import os

import lineage
from lineage import metadata_store


def load_schema(schema_dir: str):
    """Parses ``schema_dir/schema.pbtxt``."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = os.path.join(schema_dir, "schema.pbtxt")
    with open(path) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def ingested_spans(metadata_path: str, pipeline_name: str) -> set[int]:
    """``lineage.ingested_spans`` of ``pipeline_name`` in an earlier run (none: no store yet)."""
    if not metadata_store.exists(metadata_path):
        return set()
    return lineage.ingested_spans(
        lineage.Graph.load(lineage.open_store(metadata_path)), pipeline_name
    )


@dataclasses.dataclass
class Summary:
    nodes: list  # progress.NodeRun
    spans: list[int]
    blessed: bool | None
    reasons: list[str]
    infra_blessed: bool | None
    pushed_version: str | None
    pushed_to: str | None
    model_uri: str | None
    # Overall metrics on the held-out test split (TestEvaluator), name -> value.
    test_metrics: dict = dataclasses.field(default_factory=dict)
    # BehavioralChecks' JSON report (``passed``, ``failed``, ``cases``), if it ran.
    behavioral: dict | None = None
    # Tuner's best hyperparameter values, if a Tuner ran.
    tuned: dict | None = None
    # Where the pushed version's model card was written (set by the runner).
    model_card: str | None = None
    # ModelSelection's cv_result.json (folds, per-family summaries, decision), if it ran.
    selection: dict | None = None
    # Why InfraCanary did not bless the candidate (its blessing's ``reason``).
    infra_reason: str = ""


def _latest(graph: lineage.Graph, node: str, since: float) -> int | None:
    ids = [
        e
        for e, ex in graph.executions.items()
        if graph.node_of(e) == node and ex.create_time_since_epoch / 1000 >= since - 1
    ]
    return max(ids) if ids else None


def blessing_reasons(evaluation_uri: str) -> list[str]:
    """Failed thresholds of a TFMA validation, one readable line each."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            metric = failure.metric_key.name
            kind = "change vs baseline" if failure.metric_key.is_diff else "value"
            reasons.append(
                f"{metric} {kind} {failure.metric_value.double_value.value:.4f} "
                f"fails threshold {failure.metric_threshold}".replace("\n", " ")
            )
    if not result.validation_ok and not reasons:
        reasons.append(str(result.validation_details or "validation failed").replace("\n", " "))
    return reasons


TEST_METRICS = ("auc", "calibration", "binary_accuracy", "example_count")


def overall_metrics(evaluation_uri: str, names=TEST_METRICS) -> dict[str, float]:
    """Overall-slice values of ``names`` in a TFMA evaluation (reporting's loader)."""
    from reporting import model_analysis

    table = model_analysis.sliced_metrics(model_analysis.load_metrics(evaluation_uri), names=names)
    if model_analysis.OVERALL not in table.index:
        return {}
    row = table.loc[model_analysis.OVERALL]
    return {name: float(row[name]) for name in table.columns}


def _readable(read, uri: str) -> dict | None:
    """``read(uri)`` (an artifact module's reader), None if the file is missing or broken:
    the summary reports what it can."""
    try:
        return read(uri)
    except (OSError, ValueError):
        return None


def format_selection(result: dict) -> list[str]:
    """Per family mean AUC +- CI over the folds, the chosen family and why."""
    confidence = result.get("confidence", 0.95)
    from components.model_selection.artifact import rows_text

    lines = [
        f"  model selection ({result['folds']}-fold CV on the train split, "
        f"{rows_text(result)}, {result['steps']} steps per fold): "
        f"chose {result['chosen_family']}"
    ]
    for family, info in result["families"].items():
        auc = info["summary"]["auc"]
        half = (auc["ci_high"] - auc["ci_low"]) / 2
        loss = info["summary"]["log_loss"]["mean"]
        calibration = info["summary"]["calibration"]["mean"]
        lines.append(
            f"    {family:<10} AUC {auc['mean']:.4f} +- {half:.4f} ({confidence:.0%} CI "
            f"[{auc['ci_low']:.4f}, {auc['ci_high']:.4f}]), log loss {loss:.4f}, "
            f"calibration {calibration:.3f}"
        )
    lines.append(f"    why: {result['reason']}")
    return lines


def summarize(metadata_path: str, nodes: list, since: float) -> Summary:
    # Imported here: this module is also used before TF is imported (run cache).
    from components import hyperparameters
    from components.behavioral.artifact import BehavioralBlessing, read_report
    from components.model_selection.artifact import CrossValidationResult, read_result

    graph = lineage.Graph.load(lineage.open_store(metadata_path))
    spans, blessed, reasons, version, pushed_to, model_uri = [], None, [], None, None, None
    transform = _latest(graph, "Transform", since)
    if transform is not None:
        spans = sorted(
            lineage.span_of(graph, a)
            for a in graph.inputs.get(transform, ())
            if lineage.is_raw_examples(graph, a)
        )
    evaluator = _latest(graph, "Evaluator", since)
    if evaluator is not None:
        for a in graph.outputs.get(evaluator, ()):
            if graph.type_of(a) == "ModelBlessing":
                blessed = lineage.prop(graph.artifacts[a], "blessed") == 1
            if graph.type_of(a) == "ModelEvaluation":
                reasons = blessing_reasons(graph.artifacts[a].uri)
    infra_blessed, infra_reason = None, ""
    canary = _latest(graph, "InfraCanary", since)
    if canary is not None:
        for a in graph.linked([canary], graph.outputs, "InfraBlessing"):
            infra_blessed = lineage.prop(graph.artifacts[a], "blessed") == 1
            infra_reason = lineage.prop(graph.artifacts[a], "reason") or ""
    pusher = _latest(graph, "Pusher", since)
    if pusher is not None:
        for a in graph.outputs.get(pusher, ()):
            artifact = graph.artifacts[a]
            if lineage.prop(artifact, "pushed") == 1:
                version = str(lineage.prop(artifact, "pushed_version"))
                pushed_to = lineage.prop(artifact, "pushed_destination")
        models = graph.linked([pusher], graph.inputs, "Model")
        model_uri = graph.artifacts[models[0]].uri if models else None
    test_metrics = {}
    test_evaluator = _latest(graph, "TestEvaluator", since)
    if test_evaluator is not None:
        for a in graph.linked([test_evaluator], graph.outputs, "ModelEvaluation"):
            test_metrics = overall_metrics(graph.artifacts[a].uri)
    behavioral = None
    checks = _latest(graph, "BehavioralChecks", since)
    if checks is not None:
        for a in graph.linked([checks], graph.outputs, BehavioralBlessing.TYPE_NAME):
            behavioral = _readable(read_report, graph.artifacts[a].uri)
    tuned = None
    tuner = _latest(graph, "Tuner", since)
    if tuner is not None:
        for a in graph.linked([tuner], graph.outputs, "HyperParameters"):
            tuned = _readable(hyperparameters.read_values, graph.artifacts[a].uri)
    selection = None
    selector = _latest(graph, "ModelSelection", since)
    if selector is not None:
        for a in graph.linked([selector], graph.outputs, CrossValidationResult.TYPE_NAME):
            selection = _readable(read_result, graph.artifacts[a].uri)
    return Summary(
        nodes,
        spans,
        blessed,
        reasons,
        infra_blessed,
        version,
        pushed_to,
        model_uri,
        test_metrics,
        behavioral,
        tuned,
        selection=selection,
        infra_reason=infra_reason,
    )


def format_summary(
    summary: Summary, output_dir: str, serving_dir: str, seconds: float, metadata: str = ""
) -> str:
    lines = ["", "=== run summary ==="]
    for node in summary.nodes:
        lines.append(f"  {node.node_id:<24} {node.state.lower():<9} {node.seconds:6.1f}s")
    lines.append(f"  trained on spans: {', '.join(map(str, summary.spans)) or '-'}")
    if summary.blessed is None:
        lines.append("  blessing: not evaluated")
    elif summary.blessed:
        lines.append(
            "  blessing: BLESSED (AUC and calibration within thresholds, no regression vs baseline)"
        )
    else:
        lines.append("  blessing: NOT BLESSED")
        lines += [f"    - {reason}" for reason in summary.reasons]
    if summary.tuned:
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(summary.tuned.items())
        )
        fed = (
            "the wide & deep candidate of model selection"
            if summary.selection
            else "fed to the Trainer"
        )
        lines.append(f"  tuned (best of the Tuner's trials, {fed}): {shown}")
    if summary.selection:
        lines += format_selection(summary.selection)
    if summary.test_metrics:
        shown = ", ".join(
            f"{name} {value:.0f}" if name == "example_count" else f"{name} {value:.4f}"
            for name, value in summary.test_metrics.items()
        )
        lines.append(f"  held-out test split (report only, not a gate): {shown}")
    if summary.behavioral is not None:
        from components.behavioral.checks import format_report

        total = len(summary.behavioral.get("cases", []))
        if summary.behavioral.get("passed"):
            lines.append(f"  behavioral checks: passed ({total} cases)")
        else:
            failed = summary.behavioral.get("failed", 0)
            lines.append(f"  behavioral checks: FAILED ({failed} of {total} cases)")
            lines += [f"    - {line}" for line in format_report(summary.behavioral)]
    if summary.infra_blessed is not None:
        verdict = "passed" if summary.infra_blessed else "FAILED (see the InfraCanary report)"
        lines.append(f"  serving canary (REST + gRPC on the candidate, parity): {verdict}")
        if summary.infra_reason:
            lines.append(f"    - {summary.infra_reason}")
    if summary.pushed_version:
        lines.append(f"  pushed: version {summary.pushed_version} -> {summary.pushed_to}")
    else:
        lines.append("  pushed: nothing (previous versions untouched)")
    lines.append(f"  model: {summary.model_uri or '-'}")
    if summary.model_card:
        lines.append(f"  model card: {summary.model_card}")
    lines.append(f"  serving dir: {serving_dir}")
    lines.append(
        f"  metadata: {metadata_store.redact(metadata or os.path.join(output_dir, 'metadata.sqlite'))}"
    )
    lines.append(f"  total: {seconds:.1f}s")
    return "\n".join(lines)
