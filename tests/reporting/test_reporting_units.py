"""Pure functions of the reporting package on small fixtures (no pipeline run)."""

from __future__ import annotations

import os

import nbformat
import pandas as pd
import pytest
from reporting_support import REPO_ROOT
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from lineage import runs as lineage_runs
from reporting import data_validation as dv
from reporting import html_report, runs
from reporting import model_analysis as ma

NOTEBOOKS = ("data_validation", "model_analysis", "lineage")


# -- notebooks -----------------------------------------------------------------


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs_or_paths(name):
    nb = nbformat.read(os.path.join(REPO_ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert "RunStore(RUN_DIR)" in source and "run_dir_from_env()" in source
    assert not any(s in source for s in ("/pipeline/", "metadata.sqlite", "/tmp", "Split-"))


# -- data validation -----------------------------------------------------------


def _anomalies() -> dict[str, anomalies_pb2.Anomalies]:
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["payment_type"]
    reason = info.reason.add()
    reason.type = anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES
    reason.short_description = "Unexpected string values"
    reason.description = "Examples contain values missing from the schema: Bitcoin (~33%)."
    reason = anomalies.anomaly_info["trip_start_hour"].reason.add()
    reason.type = anomalies_pb2.AnomalyInfo.INT_TYPE_BIG_INT
    reason.short_description = "Out-of-range values"
    reason.description = "Unexpectedly large value: 30."
    return {"train": anomalies, "eval": anomalies_pb2.Anomalies()}


def test_anomalies_table_explains_each_reason():
    table = dv.anomalies_table(_anomalies())
    assert list(table["feature"]) == ["payment_type", "trip_start_hour"]
    assert set(table["split"]) == {"train"}
    assert "Bitcoin" in table.iloc[0]["description"]
    assert "not in the schema's domain" in table.iloc[0]["explanation"]
    assert "int_domain max" in table.iloc[1]["explanation"]
    assert dv.anomalies_table({"train": anomalies_pb2.Anomalies()}).empty


def test_explain_anomaly_falls_back_by_prefix_and_default():
    assert "float type or domain" in dv.explain_anomaly("FLOAT_TYPE_NOT_FLOAT")
    assert "TFDV description" in dv.explain_anomaly("SOMETHING_NEW")


def _schema() -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    schema.feature.add(name="payment_type", type=schema_pb2.BYTES)
    schema.feature.add(name="fare", type=schema_pb2.FLOAT)
    hour = schema.feature.add(name="hour", type=schema_pb2.INT)
    hour.int_domain.is_categorical = True
    return schema


def test_drift_comparators_by_feature_kind():
    schema = _schema()
    compared = dv.schema_with_drift_comparators(schema, linf_threshold=0.2, jsd_threshold=0.3)
    by_name = {f.name: f for f in compared.feature}
    assert by_name["payment_type"].drift_comparator.infinity_norm.threshold == 0.2
    assert by_name["hour"].drift_comparator.infinity_norm.threshold == 0.2
    assert by_name["fare"].drift_comparator.jensen_shannon_divergence.threshold == 0.3
    assert not any(f.HasField("drift_comparator") for f in schema.feature)  # input untouched


@pytest.fixture(scope="module")
def span_stats():
    import tensorflow_data_validation as tfdv

    old = pd.DataFrame(
        {
            "payment_type": ["Cash"] * 50 + ["Credit Card"] * 50,
            "fare": [float(i % 10) for i in range(100)],
        }
    )
    new = pd.DataFrame(
        {
            "payment_type": ["Cash"] * 20 + ["Credit Card"] * 80,
            "fare": [float(i % 10) for i in range(100)],
        }
    )
    return {
        2015: tfdv.generate_statistics_from_dataframe(old),
        2016: tfdv.generate_statistics_from_dataframe(new),
    }


def test_span_drift_uses_tfdv_comparators(span_stats):
    schema = _schema()
    del schema.feature[2]
    table = dv.span_drift_table(schema, span_stats)
    rows = table.set_index("feature")
    assert list(table.columns) == dv.DRIFT_COLUMNS
    assert rows.loc["payment_type", "measure"] == "L-infinity"
    assert rows.loc["payment_type", "value"] == pytest.approx(0.3)  # Cash share 0.5 -> 0.2
    assert bool(rows.loc["payment_type", "drifted"])
    assert rows.loc["fare", "measure"] == "Jensen-Shannon"
    assert rows.loc["fare", "value"] == pytest.approx(0.0, abs=1e-6)
    assert not bool(rows.loc["fare", "drifted"])
    assert set(table["previous_span"]) == {2015} and set(table["span"]) == {2016}

    html = html_report.drift_matrix_html(table)
    assert "2015 → 2016" in html and '<td class="bad">0.300</td>' in html
    assert "fewer than two spans" in html_report.drift_matrix_html(table.iloc[0:0]).lower()


def test_feature_summary(span_stats):
    summary = dv.feature_summary(span_stats[2016])
    assert summary.loc["payment_type", "top_value"] == "Credit Card"
    assert summary.loc["payment_type", "unique"] == 2
    assert summary.loc["fare", "mean"] == pytest.approx(4.5)
    assert summary.loc["fare", "missing_pct"] == 0


# -- model analysis ------------------------------------------------------------


def _metrics_protos():
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2

    def add(per_slice, name, value, model="", is_diff=False):
        kv = per_slice.metric_keys_and_values.add()
        kv.key.name, kv.key.model_name, kv.key.is_diff = name, model, is_diff
        kv.value.double_value.value = value

    overall = metrics_for_slice_pb2.MetricsForSlice()
    add(overall, "auc", 0.74, "candidate")
    add(overall, "auc", 0.80, "baseline")
    add(overall, "auc", -0.06, "candidate", is_diff=True)
    add(overall, "example_count", 100, "candidate")
    hours = []
    for hour, auc in ((3, 0.7), (12, 0.8)):
        per_slice = metrics_for_slice_pb2.MetricsForSlice()
        key = per_slice.slice_key.single_slice_keys.add()
        key.column, key.int64_value = "trip_start_hour", hour
        add(per_slice, "auc", auc, "candidate")
        add(per_slice, "auc", auc + 0.05, "baseline")
        hours.append(per_slice)
    pay = metrics_for_slice_pb2.MetricsForSlice()
    key = pay.slice_key.single_slice_keys.add()
    key.column, key.bytes_value = "payment_type", b"Cash"
    add(pay, "auc", 0.5, "candidate")
    return [pay, hours[1], overall, hours[0]]


def test_metrics_tables():
    metrics = ma.metrics_from_protos(_metrics_protos())
    assert ma.has_baseline(metrics)
    sliced = ma.sliced_metrics(metrics)
    assert list(sliced.index) == [
        "Overall",
        "payment_type:Cash",
        "trip_start_hour:3",
        "trip_start_hour:12",
    ]
    assert sliced.loc["trip_start_hour:12", "auc"] == pytest.approx(0.8)
    comparison = ma.comparison(metrics)
    assert comparison.loc["auc"].tolist() == pytest.approx([0.74, 0.80, -0.06])
    assert ma.metric_name("BinaryAccuracy") == "binary_accuracy" and ma.metric_name("AUC") == "auc"


def test_threshold_checks_and_blessing_explanation():
    import tensorflow_model_analysis as tfma

    metrics = ma.metrics_from_protos(_metrics_protos())
    config = tfma.EvalConfig(
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(
                        class_name="AUC",
                        per_slice_thresholds=[
                            tfma.PerSliceMetricThreshold(
                                slicing_specs=[tfma.SlicingSpec()],
                                threshold=tfma.MetricThreshold(
                                    value_threshold=tfma.GenericValueThreshold(
                                        lower_bound={"value": 0.75}
                                    ),
                                    change_threshold=tfma.GenericChangeThreshold(
                                        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                        absolute={"value": -0.01},
                                    ),
                                ),
                            )
                        ],
                    )
                ]
            )
        ]
    )
    validation = tfma.ValidationResult(validation_ok=False)
    per_slice = validation.metric_validations_per_slice.add()
    per_slice.slice_key.SetInParent()
    failure = per_slice.failures.add()
    failure.metric_key.name = "auc"
    failure.metric_key.model_name = "candidate"
    failure.message = "Threshold not met"
    checks = ma.threshold_checks(config, metrics, validation)
    assert [(c.kind, c.status) for c in checks] == [
        ("value", "FAILED"),
        ("change vs baseline", "passed"),
    ]
    assert checks[0].bound == ">= 0.75" and checks[0].actual == pytest.approx(0.74)
    assert checks[1].bound.startswith("absolute change -0.01")
    text = ma.blessing_explanation(False, False, checks, "/models/old")
    assert text.startswith("NOT BLESSED: auc value = 0.7400 violates >= 0.75")
    assert "against the baseline /models/old" in text
    assert ma.blessing_explanation(
        True, True, [c for c in checks if c.status == "passed"], None
    ).startswith("BLESSED")


def test_plot_is_an_embedded_png():
    metrics = ma.metrics_from_protos(_metrics_protos())
    fig = ma.plot_sliced_metric(metrics, "auc")
    assert [ax.get_title() for ax in fig.axes] == ["auc by payment_type", "auc by trip_start_hour"]
    uri = html_report.figure_to_data_uri(fig)
    assert uri.startswith("data:image/png;base64,iVBORw0KGgo")


def test_missing_metadata_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from reporting import cli

    with pytest.raises(lineage_runs.RunNotFoundError, match="run the pipeline first"):
        lineage_runs.RunStore(str(tmp_path))
    monkeypatch.setenv("TAXI_RUN_DIR", str(tmp_path))
    assert runs.run_dir_from_env() == str(tmp_path)
    assert cli.main([]) == 1
    assert "no ML Metadata" in capsys.readouterr().err
    assert cli.main(["--all", "--output", "x.html"]) == 2


CV_RESULT = {
    "split": "train",
    "rows": 900,
    "folds": 2,
    "steps": 10,
    "chosen_family": "wide_deep",
    "reason": "significantly better",
    "rule": "simplest first",
    "families": {
        "logistic": {
            "folds": [
                {"fold": 0, "rows": 450, "auc": 0.90, "log_loss": 0.3},
                {"fold": 1, "rows": 450, "auc": 0.92, "log_loss": 0.28},
            ],
            "summary": {
                "auc": {"mean": 0.91, "ci_low": 0.8829, "ci_high": 0.9371},
                "log_loss": {"mean": 0.29, "ci_low": 0.2, "ci_high": 0.38},
            },
        },
        "wide_deep": {
            "folds": [
                {"fold": 0, "rows": 450, "auc": 0.95, "log_loss": 0.2},
                {"fold": 1, "rows": 450, "auc": 0.96, "log_loss": 0.19},
            ],
            "summary": {
                "auc": {"mean": 0.955, "ci_low": 0.9486, "ci_high": 0.9614},
                "log_loss": {"mean": 0.195, "ci_low": 0.18, "ci_high": 0.21},
            },
        },
    },
    "comparisons": [
        {
            "candidate": "wide_deep",
            "against": "logistic",
            "differences": [0.05, 0.04],
            "mean": 0.045,
            "ci_low": 0.01,
            "ci_high": 0.08,
            "significant": True,
        }
    ],
}


def test_gate_tables():
    from reporting import gates

    trials = gates.tuner_trials(
        [
            {"trial_id": "0", "score": 0.91, "dropout": 0.1},
            {"trial_id": "1", "score": 0.95, "dropout": 0.0},
        ]
    )
    assert list(trials.index) == ["1", "0"]  # best first
    folds = gates.fold_table(CV_RESULT)
    assert folds.loc[("wide_deep", 1), "auc"] == 0.96 and len(folds) == 4
    summary = gates.summary_table(CV_RESULT)
    assert summary.loc["logistic", "auc 95% CI"] == "[0.8829, 0.9371]"
    assert summary["chosen"].to_dict() == {"logistic": "", "wide_deep": "yes"}
    (comparison,) = gates.comparison_table(CV_RESULT).to_dict("records")
    assert comparison["per-fold differences"] == "+0.0500, +0.0400"
    assert comparison["95% CI"] == "[+0.0100, +0.0800]" and comparison["significant"] == "yes"
    checks = [
        {"name": "available", "ok": True, "detail": ""},
        {"name": "rest_predict_0", "ok": True, "detail": ""},
        {"name": "rest_predict_1", "ok": False, "detail": "HTTP 500"},
        {"name": "grpc_predict_0", "ok": True, "detail": ""},
    ]
    table = gates.canary_table({"checks": checks}).set_index("probe")
    assert table.loc["rest_predict", ["probes", "passed", "failed"]].tolist() == [2, 1, 1]
    assert table.loc["rest_predict", "first failure"] == "rest_predict_1: HTTP 500"
    assert table.loc["grpc_predict", "failed"] == 0


def test_gate_plots_are_figures():
    from reporting import gates, html_report

    trials = gates.tuner_trials(
        [{"trial_id": "0", "score": 0.91}, {"trial_id": "1", "score": 0.95}]
    )
    for fig in (gates.plot_folds(CV_RESULT), gates.plot_trials(trials)):
        assert html_report.figure_to_data_uri(fig).startswith("data:image/png;base64,")
