"""Model analysis views: TFMA metrics per slice, candidate vs baseline, blessing.

Reads the Evaluator's ModelEvaluation artifact with TFMA's own loaders
(``tfma.load_metrics``, ``tfma.load_validation_result``) and the
ModelBlessing artifact found through MLMD.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pandas as pd

import lineage
from lineage import runs as runs_lib

OVERALL = "Overall"
HEADLINE_METRICS = (
    "auc",
    "binary_accuracy",
    "precision",
    "recall",
    "calibration",
    "mean_label",
    "mean_prediction",
    "example_count",
)
METRIC_COLUMNS = ["slice", "slice_feature", "slice_value", "model", "metric", "is_diff", "value"]


def _tfma():
    import tensorflow_model_analysis as tfma

    return tfma


def metric_name(class_name: str) -> str:
    """TFMA metric key name of a metric class, e.g. ``BinaryAccuracy`` -> ``binary_accuracy``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def slice_parts(slice_key_proto) -> tuple[str, str | None, str | None]:
    """(label, feature, value) of a TFMA SliceKey proto; ``Overall`` for the empty key."""
    from tensorflow_model_analysis.slicer import slicer_lib

    key = slicer_lib.deserialize_slice_key(slice_key_proto)
    if not key:
        return OVERALL, None, None
    label = slicer_lib.stringify_slice_key(key)
    if len(key) == 1:
        feature, value = key[0]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return label, feature, str(value)
    return label, " x ".join(k for k, _ in key), " x ".join(str(v) for _, v in key)


def metrics_from_protos(metrics_for_slices) -> pd.DataFrame:
    """Tidy table of scalar metrics from ``MetricsForSlice`` protos."""
    rows = []
    for per_slice in metrics_for_slices:
        label, feature, value = slice_parts(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            if kv.value.WhichOneof("type") != "double_value":
                continue
            rows.append(
                (
                    label,
                    feature,
                    value,
                    kv.key.model_name or "candidate",
                    kv.key.name,
                    kv.key.is_diff,
                    kv.value.double_value.value,
                )
            )
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def load_metrics(evaluation_uri: str) -> pd.DataFrame:
    """All scalar metrics of an evaluation: one row per slice, model, metric."""
    return metrics_from_protos(_tfma().load_metrics(evaluation_uri))


def has_baseline(metrics: pd.DataFrame) -> bool:
    return bool((metrics["model"] == "baseline").any())


def _slice_order(frame: pd.DataFrame) -> list:
    """Overall first, then by slice feature and numeric-aware slice value."""

    def key(label):
        if label == OVERALL:
            return (0, "", 0, "")
        feature, _, value = label.partition(":")
        try:
            return (1, feature, 0, float(value))
        except ValueError:
            return (1, feature, 1, value)

    return sorted(frame.index, key=key)


def sliced_metrics(
    metrics: pd.DataFrame, model: str = "candidate", names=HEADLINE_METRICS
) -> pd.DataFrame:
    """Slice x metric table of one model's values (Overall first)."""
    rows = metrics[
        (metrics["model"] == model) & (~metrics["is_diff"]) & metrics["metric"].isin(names)
    ]
    table = rows.pivot_table(
        index="slice", columns="metric", values="value", aggfunc="first", dropna=False
    )
    table = table.reindex(columns=[n for n in names if n in table.columns])
    if "example_count" in table:
        table["example_count"] = table["example_count"].astype("Int64")
    return table.loc[_slice_order(table)]


def comparison(
    metrics: pd.DataFrame, slice_label: str = OVERALL, names=HEADLINE_METRICS
) -> pd.DataFrame:
    """Candidate vs baseline (and TFMA's diff) for one slice, one row per metric."""
    rows = metrics[(metrics["slice"] == slice_label) & metrics["metric"].isin(names)]
    result = pd.DataFrame(index=[n for n in names if n in set(rows["metric"])])
    result.index.name = "metric"
    for column, selector in (
        ("candidate", (rows["model"] == "candidate") & ~rows["is_diff"]),
        ("baseline", (rows["model"] == "baseline") & ~rows["is_diff"]),
        ("diff", rows["is_diff"]),
    ):
        result[column] = rows[selector].set_index("metric")["value"].reindex(result.index)
    return result


# -- thresholds and blessing ---------------------------------------------------


@dataclasses.dataclass
class ThresholdCheck:
    metric: str
    slice: str
    kind: str  # "value" or "change vs baseline"
    bound: str
    actual: float | None
    status: str  # passed / FAILED / not checked (no baseline)
    message: str = ""


def _bounds_text(threshold) -> tuple[str | None, str | None]:
    value_text = change_text = None
    if threshold.HasField("value_threshold"):
        vt = threshold.value_threshold
        parts = []
        if vt.HasField("lower_bound"):
            parts.append(f">= {vt.lower_bound.value:g}")
        if vt.HasField("upper_bound"):
            parts.append(f"<= {vt.upper_bound.value:g}")
        value_text = " and ".join(parts)
    if threshold.HasField("change_threshold"):
        ct = threshold.change_threshold
        direction = _tfma().MetricDirection.Name(ct.direction).lower().replace("_", " ")
        parts = []
        if ct.HasField("absolute"):
            parts.append(f"absolute change {ct.absolute.value:+g}")
        if ct.HasField("relative"):
            parts.append(f"relative change {ct.relative.value:+g}")
        change_text = f"{' / '.join(parts)} ({direction})"
    return value_text, change_text


def _slice_label_of_spec(spec) -> str:
    if not spec.feature_keys and not spec.feature_values:
        return OVERALL
    keys = list(spec.feature_keys) + [f"{k}:{v}" for k, v in sorted(spec.feature_values.items())]
    return "slice " + ", ".join(keys)


def threshold_checks(eval_config, metrics: pd.DataFrame, validation_result) -> list[ThresholdCheck]:
    """Every configured threshold with the candidate's value and TFMA's verdict.

    Pass/fail comes from TFMA's validation result (its failures), not from
    re-implementing the comparison here.
    """
    failures = {}
    for per_slice in validation_result.metric_validations_per_slice:
        label = slice_parts(per_slice.slice_key)[0]
        for failure in per_slice.failures:
            failures[(failure.metric_key.name, label, failure.metric_key.is_diff)] = (
                failure.message or "failed"
            )
    baseline = has_baseline(metrics)
    checks = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            name = metric_name(metric.class_name)
            configured = []
            if metric.HasField("threshold"):
                configured.append((OVERALL, metric.threshold))
            for per_slice in metric.per_slice_thresholds:
                for slicing_spec in per_slice.slicing_specs:
                    configured.append((_slice_label_of_spec(slicing_spec), per_slice.threshold))
            for label, threshold in configured:
                value_text, change_text = _bounds_text(threshold)
                for is_diff, kind, bound in (
                    (False, "value", value_text),
                    (True, "change vs baseline", change_text),
                ):
                    if bound is None:
                        continue
                    selected = metrics[
                        (metrics["metric"] == name)
                        & (metrics["slice"] == label)
                        & (metrics["is_diff"] == is_diff)
                        & (metrics["model"] == "candidate")
                    ]["value"]
                    actual = float(selected.iloc[0]) if len(selected) else None
                    if is_diff and not baseline:
                        status, message = (
                            "not checked (no baseline)",
                            "first blessed model: nothing to compare with",
                        )
                    elif (name, label, is_diff) in failures:
                        status, message = "FAILED", failures[(name, label, is_diff)]
                    else:
                        status, message = "passed", ""
                    checks.append(ThresholdCheck(name, label, kind, bound, actual, status, message))
    return checks


def checks_table(checks: list[ThresholdCheck]) -> pd.DataFrame:
    return pd.DataFrame(
        [dataclasses.asdict(c) for c in checks],
        columns=[f.name for f in dataclasses.fields(ThresholdCheck)],
    )


def blessing_explanation(
    blessed: bool | None,
    validation_ok: bool,
    checks: list[ThresholdCheck],
    baseline_uri: str | None,
) -> str:
    """Why the model was (not) blessed, in one paragraph."""
    if blessed is None:
        return "The Evaluator did not record a blessing for this run."
    failed = [c for c in checks if c.status == "FAILED"]
    compared = (
        f"against the baseline {baseline_uri}"
        if baseline_uri
        else "with no baseline (no model was blessed before)"
    )
    if blessed:
        passed = ", ".join(f"{c.metric} {c.kind} {c.bound}" for c in checks if c.status == "passed")
        return f"BLESSED: every threshold passed ({passed}); evaluated {compared}."
    if failed:
        reasons = "; ".join(
            f"{c.metric} {c.kind} = {c.actual:.4f} violates {c.bound}"
            if c.actual is not None
            else f"{c.metric} {c.kind} violates {c.bound}"
            for c in failed
        )
        return f"NOT BLESSED: {reasons}; evaluated {compared}."
    if not validation_ok:
        return f"NOT BLESSED: TFMA validation failed (missing thresholds or slices); evaluated {compared}."
    return f"NOT BLESSED; evaluated {compared}."


@dataclasses.dataclass
class RunModelAnalysis:
    """Everything the model analysis views show for one run."""

    run: runs_lib.Run
    evaluation_uri: str
    metrics: pd.DataFrame
    eval_config: object  # tfma.EvalConfig
    validation: object  # tfma.ValidationResult
    blessed: bool | None
    blessing_uri: str | None
    candidate_uri: str | None
    baseline_uri: str | None
    checks: list[ThresholdCheck]

    @property
    def has_baseline(self) -> bool:
        return has_baseline(self.metrics)

    def sliced(self, model: str = "candidate") -> pd.DataFrame:
        return sliced_metrics(self.metrics, model)

    def comparison(self, slice_label: str = OVERALL) -> pd.DataFrame:
        return comparison(self.metrics, slice_label)

    @property
    def checks_table(self) -> pd.DataFrame:
        return checks_table(self.checks)

    @property
    def explanation(self) -> str:
        return blessing_explanation(
            self.blessed, self.validation.validation_ok, self.checks, self.baseline_uri
        )

    def eval_result(self, model_name: str | None = None):
        """``tfma.EvalResult`` for TFMA's notebook widgets."""
        if model_name is None and self.has_baseline:
            model_name = "candidate"
        return _tfma().load_eval_result(self.evaluation_uri, model_name=model_name)


class NoEvaluationError(LookupError):
    """The run has no (completed) Evaluator execution."""


def for_run(store: runs_lib.RunStore, run: runs_lib.Run) -> RunModelAnalysis:
    from tensorflow_model_analysis.writers import eval_config_writer

    evaluation = store.output(run, "Evaluator", "ModelEvaluation")
    if evaluation is None:
        raise NoEvaluationError(f"{store.describe_run(run)} has no model evaluation")
    blessing = store.output(run, "Evaluator", "ModelBlessing")
    candidates = store.outputs(run, "Trainer", "Model")
    candidate_ids = {a.id for a in candidates}
    baseline = [a for a in store.inputs(run, "Evaluator", "Model") if a.id not in candidate_ids]
    metrics = load_metrics(evaluation.uri)
    eval_config = eval_config_writer.load_eval_run(evaluation.uri)[0]
    validation = _tfma().load_validation_result(evaluation.uri)
    blessed = None if blessing is None else lineage.prop(blessing, "blessed") == 1
    return RunModelAnalysis(
        run=run,
        evaluation_uri=evaluation.uri,
        metrics=metrics,
        eval_config=eval_config,
        validation=validation,
        blessed=blessed,
        blessing_uri=blessing.uri if blessing else None,
        candidate_uri=candidates[-1].uri if candidates else None,
        baseline_uri=baseline[-1].uri if baseline else None,
        checks=threshold_checks(eval_config, metrics, validation),
    )


# -- plot ----------------------------------------------------------------------


def plot_sliced_metric(metrics: pd.DataFrame, metric: str = "auc"):
    """Bar chart of ``metric`` per slice value, one panel per slice feature.

    Candidate and (if present) baseline side by side; the overall value is a
    dashed line. Returns a matplotlib Figure (not registered with pyplot).
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    rows = metrics[(metrics["metric"] == metric) & ~metrics["is_diff"]]
    features = sorted(f for f in rows["slice_feature"].dropna().unique())
    models = [m for m in ("candidate", "baseline") if (rows["model"] == m).any()]
    fig = Figure(figsize=(10, 3.2 * max(1, len(features))), dpi=90)
    axes = fig.subplots(max(1, len(features)), 1, squeeze=False)[:, 0]
    for ax, feature in zip(axes, features or [None], strict=False):
        part = rows[rows["slice_feature"] == feature] if feature else rows
        values = sorted(part["slice_value"].dropna().unique(), key=_numeric_first)
        width = 0.8 / max(1, len(models))
        for i, model in enumerate(models):
            by_value = part[part["model"] == model].set_index("slice_value")["value"]
            heights = [_finite(by_value.get(v)) for v in values]
            ax.bar([x + i * width for x in range(len(values))], heights, width=width, label=model)
        overall = rows[(rows["slice"] == OVERALL) & (rows["model"] == "candidate")]["value"]
        if len(overall) and not math.isnan(_finite(overall.iloc[0])):
            ax.axhline(
                float(overall.iloc[0]),
                linestyle="--",
                color="black",
                linewidth=1,
                label="overall (candidate)",
            )
        ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(values))])
        ax.set_xticklabels(values, rotation=45 if len(values) > 8 else 0, fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} by {feature}" if feature else metric)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _numeric_first(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _finite(value) -> float:
    """``value`` as a float; NaN (an empty bar) when missing or infinite."""
    if value is None:
        return float("nan")
    value = float(value)
    return value if math.isfinite(value) else float("nan")
