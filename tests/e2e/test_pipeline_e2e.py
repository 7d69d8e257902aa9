"""End-to-end: the whole pipeline on a small sample, then re-runs and bad data.

Uses the session's ``taxi_run`` (3 spans x 400 rows). Tests that change
state work on copies of its data and output directories.
"""

import csv
import glob
import itertools
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from sklearn.metrics import roc_auc_score
from taxi_runs import REPO_ROOT, run_pipeline

import lineage
from components import features
from components.behavioral.artifact import BehavioralBlessing, read_report

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALL_NODES = {
    "CsvExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "SchemaGen",
    "ExampleValidator",
    "InfraCanary",
    "AnomaliesGate",
    "Transform",
    "ModelSelection",
    "Trainer",
    "Evaluator",
    "TestEvaluator",
    "BehavioralChecks",
    "Pusher",
}


def _graph(metadata):
    return lineage.Graph.load(lineage.open_store(metadata))


def _states(metadata):
    """node id -> list of execution states, in execution order."""
    graph = _graph(metadata)
    states = {}
    for execution_id in sorted(graph.executions):
        state = metadata_store_pb2.Execution.State.Name(
            graph.executions[execution_id].last_known_state
        )
        states.setdefault(graph.node_of(execution_id), []).append(state)
    return states


def _versions(serving_dir):
    return sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else []


def _copy_run(taxi_run, tmp_path):
    """Data and output dirs copied; MLMD keeps pointing at the original artifacts."""
    data_dir = str(tmp_path / "data")
    output_dir = str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    shutil.copytree(taxi_run["output_dir"], output_dir)
    return data_dir, output_dir


def test_every_component_executed(taxi_run):
    states = _states(taxi_run["metadata"])
    for node in ALL_NODES:
        assert "COMPLETE" in states.get(node, []), f"{node} never completed: {states.get(node)}"
    # Two backfill runs (2013, 2014) and the main run (2015) each ingested a span.
    assert states["CsvExampleGen"].count("COMPLETE") == 3
    assert "trained on spans: 2013, 2014, 2015" in taxi_run["stdout"]
    assert "blessing: BLESSED" in taxi_run["stdout"]


def test_pushed_model_predicts_from_plain_values(taxi_run):
    versions = _versions(taxi_run["serving_dir"])
    assert len(versions) == 1 and versions[0].isdigit()  # no staging dir left behind
    model = tf.saved_model.load(os.path.join(taxi_run["serving_dir"], versions[0]))
    serve = model.signatures["serving_default"]
    spec = serve.structured_input_signature[1]
    with open(os.path.join(taxi_run["data_dir"], "span-2015", "data.csv")) as f:
        rows = list(itertools.islice(csv.DictReader(f), 8))
    request = {}
    for key, tensor_spec in spec.items():
        values = []
        for row in rows:
            text = row[key]
            if tensor_spec.dtype == tf.string:
                values.append(text)
            elif tensor_spec.dtype.is_floating:
                values.append(float(text) if text else float("nan"))
            else:
                values.append(int(float(text)) if text else -1)
        request[key] = tf.constant(values, dtype=tensor_spec.dtype)
    probabilities = serve(**request)["probabilities"].numpy()
    assert probabilities.shape == (8, 1)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert len(set(probabilities[:, 0].round(4))) > 1  # not a constant model


def _outputs_of(metadata, node, type_name):
    graph = _graph(metadata)
    executions = [e for e in graph.executions if graph.node_of(e) == node]
    return [graph.artifacts[a] for a in graph.linked(executions, graph.outputs, type_name)]


def _test_split_predictions(taxi_run):
    """Records of the test split the TestEvaluator read, their labels, the model's scores."""
    graph = _graph(taxi_run["metadata"])
    [execution] = [
        e
        for e in graph.executions
        if graph.node_of(e) == "TestEvaluator"
        and graph.executions[e].last_known_state == metadata_store_pb2.Execution.COMPLETE
    ]
    files = sorted(
        path
        for a in graph.linked([execution], graph.inputs, "Examples")
        for path in glob.glob(os.path.join(graph.artifacts[a].uri, "Split-test", "*"))
    )
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    [version] = _versions(taxi_run["serving_dir"])
    model = tf.saved_model.load(os.path.join(taxi_run["serving_dir"], version))
    batch = tf.constant(records)
    [(name, _)] = model.signatures["transform_features"].structured_input_signature[1].items()
    labels = model.signatures["transform_features"](**{name: batch})[features.LABEL_KEY]
    [(name, _)] = model.signatures["serving_examples"].structured_input_signature[1].items()
    scores = model.signatures["serving_examples"](**{name: batch})["probabilities"]
    return records, np.ravel(labels.numpy()), np.ravel(scores.numpy())


def test_held_out_test_split_is_reported_not_gated(taxi_run):
    from reporting import model_analysis

    [evaluation] = _outputs_of(taxi_run["metadata"], "TestEvaluator", "ModelEvaluation")
    [gate_evaluation] = _outputs_of(taxi_run["metadata"], "Evaluator", "ModelEvaluation")
    test = model_analysis.sliced_metrics(model_analysis.load_metrics(evaluation.uri))
    gate = model_analysis.sliced_metrics(model_analysis.load_metrics(gate_evaluation.uri))
    # Different rows: the test split is not the eval split.
    assert test.loc["Overall", "example_count"] != gate.loc["Overall", "example_count"]
    # The metrics are the served model's on every row of the test split: the row count
    # and the AUC of its predictions (TFMA's 1,000-threshold AUC, within 2e-3).
    records, labels, probabilities = _test_split_predictions(taxi_run)
    assert test.loc["Overall", "example_count"] == len(records)
    assert test.loc["Overall", "auc"] == pytest.approx(
        roc_auc_score(labels, probabilities), abs=2e-3
    )
    assert {"payment_type", "trip_start_hour"} <= {s.split(":")[0] for s in test.index}
    line = next(x for x in taxi_run["stdout"].splitlines() if "held-out test split" in x)
    assert f"example_count {test.loc['Overall', 'example_count']}" in line and "auc 0." in line
    # TestEvaluator never blesses: no threshold, no `blessed` property.
    [blessing] = _outputs_of(taxi_run["metadata"], "TestEvaluator", "ModelBlessing")
    assert "blessed" not in blessing.custom_properties


def test_behavioral_checks_ran_and_gate_the_push(taxi_run):
    [blessing] = _outputs_of(taxi_run["metadata"], "BehavioralChecks", BehavioralBlessing.TYPE_NAME)
    assert blessing.custom_properties["blessed"].int_value == 1
    report = read_report(blessing.uri)
    assert report["passed"] and len(report["cases"]) == 6
    assert "behavioral checks: passed (6 cases)" in taxi_run["stdout"]


def test_lineage_answers(taxi_run):
    graph = lineage.Graph.load(lineage.open_store(taxi_run["metadata"]))
    [version] = _versions(taxi_run["serving_dir"])
    info = lineage.version_lineage(graph, version)
    assert info["spans"] == [2013, 2014, 2015]
    assert info["destination"] == os.path.join(taxi_run["serving_dir"], version)
    assert info["trainer"]["node"] == "Trainer"
    assert info["transform"]["node"] == "Transform"
    assert len(info["schema"]) >= 1 and all("ImportSchemaGen" in uri for uri in info["schema"])
    assert info["blessing"][0]["blessed"] is True
    assert info["baseline_model"] == []  # first run: nothing to compare with
    for span in (2013, 2015):
        models = lineage.models_for_span(graph, span)["models"]
        assert [m["pushed_versions"] for m in models] == [[version]]
    with pytest.raises(lineage.LineageError, match="never ingested"):
        lineage.models_for_span(graph, 1999)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "lineage.cli",
            "--output-dir",
            taxi_run["output_dir"],
            "version",
            version,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "spans:           2013, 2014, 2015" in cli.stdout


def test_unchanged_rerun_is_cached(taxi_run):
    # The shared run was re-run with --force (taxi_runs.shared_run): through TFX,
    # every component was a cache hit, and nothing new was pushed.
    states = _states(taxi_run["metadata"])
    for node in ALL_NODES:
        assert states[node][-1] == "CACHED", (node, states[node])
    assert states["Trainer"] == ["COMPLETE", "CACHED"] and states["Pusher"] == [
        "COMPLETE",
        "CACHED",
    ]
    assert len(_versions(taxi_run["serving_dir"])) == 1
    assert "blessing: BLESSED" in taxi_run["forced_stdout"]

    # Without --force nothing reaches TFX: the runner compares inputs and code
    # with its last successful run (this changes nothing in the shared run).
    quick = run_pipeline(taxi_run["output_dir"], taxi_run["data_dir"])
    assert quick.returncode == 0, quick.stderr
    assert "Nothing changed since the successful run" in quick.stdout


def _write_span(data_dir, span, rows, mutate=None):
    source = os.path.join(REPO_ROOT, "data", "taxi", "span-2016", "data.csv")
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        header, records = reader.fieldnames, list(itertools.islice(reader, rows))
    for i, record in enumerate(records):
        if mutate:
            mutate(i, record)
    os.makedirs(os.path.join(data_dir, f"span-{span}"), exist_ok=True)
    with open(os.path.join(data_dir, f"span-{span}", "data.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def test_bad_csv_is_rejected_before_ingestion(taxi_run, tmp_path):
    data_dir, output_dir = _copy_run(taxi_run, tmp_path)
    _write_span(data_dir, 2016, 50, mutate=lambda i, r: r.update(fare="n/a") if i == 7 else None)
    before = len(_graph(os.path.join(output_dir, "metadata.sqlite")).executions)
    result = run_pipeline(output_dir, data_dir)
    assert result.returncode == 2
    assert "span-2016/data.csv: line 9, column 'fare': 'n/a' is not FLOAT" in result.stderr
    assert len(_graph(os.path.join(output_dir, "metadata.sqlite")).executions) == before
    assert _versions(os.path.join(output_dir, "serving", "taxi")) == _versions(
        taxi_run["serving_dir"]
    )


def test_anomalous_span_stops_then_fixed_span_is_trained_on(taxi_run, tmp_path):
    data_dir, output_dir = _copy_run(taxi_run, tmp_path)
    serving_dir = os.path.join(output_dir, "serving", "taxi")
    served = _versions(serving_dir)

    def bad(i, record):
        if i % 4 == 0:
            record["payment_type"] = "Bitcoin"
        record["trip_start_hour"] = "30" if i % 3 == 0 else record["trip_start_hour"]

    _write_span(data_dir, 2016, 400, mutate=bad)
    result = run_pipeline(output_dir, data_dir)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "column 'payment_type'" in result.stderr and "Bitcoin" in result.stderr
    assert "column 'trip_start_hour'" in result.stderr
    assert "stops before Transform" in result.stderr
    states = _states(os.path.join(output_dir, "metadata.sqlite"))
    assert states["AnomaliesGate"][-1] == "FAILED"
    # Read but rejected: not ingested, so the next run (or `watch`) tries it again.
    metadata = os.path.join(output_dir, "metadata.sqlite")
    assert lineage.ingested_spans(_graph(metadata), "taxi") == {2013, 2014, 2015}
    assert states["Transform"] == _states(taxi_run["metadata"])["Transform"]  # no new Transform
    assert _versions(serving_dir) == served

    # The data is fixed: the span is re-ingested, validated and trained on.
    _write_span(data_dir, 2016, 400)
    # --max-auc-drop 1: the comparison with the first model (the baseline) is made
    # and passes, so the candidate is pushed (a known answer, not either outcome).
    result = run_pipeline(output_dir, data_dir, "--min-auc", "0.6", "--max-auc-drop", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "trained on spans: 2013, 2014, 2015, 2016" in result.stdout
    graph = _graph(metadata)
    assert lineage.ingested_spans(graph, "taxi") == {2013, 2014, 2015, 2016}
    models = lineage.models_for_span(graph, 2016)["models"]
    assert len(models) == 1  # the anomalous ingestion trained nothing
    [newest] = sorted(set(_versions(serving_dir)) - set(served))  # blessed and pushed
    assert _versions(serving_dir) == sorted([*served, newest])
    info = lineage.version_lineage(graph, newest)
    assert info["spans"] == [2013, 2014, 2015, 2016]
    [baseline] = info["baseline_model"]  # compared with the first model, the one served
    [first] = lineage.version_lineage(graph, served[0])["model"]
    assert baseline == first, (baseline, first)


def test_unblessed_candidate_is_not_pushed(taxi_run, tmp_path):
    # The Evaluator refuses (AUC below --min-auc 0.99): nothing new is served.
    data_dir, output_dir = _copy_run(taxi_run, tmp_path)
    serving_dir = os.path.join(output_dir, "serving", "taxi")
    served = _versions(serving_dir)
    result = run_pipeline(output_dir, data_dir, "--min-auc", "0.99")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "blessing: NOT BLESSED" in result.stdout
    assert "pushed: nothing (previous versions untouched)" in result.stdout
    assert _versions(serving_dir) == served
    # The newest PushedModel is this run's (the older one is the first run's push).
    pushed = _outputs_of(os.path.join(output_dir, "metadata.sqlite"), "Pusher", "PushedModel")[-1]
    assert pushed.custom_properties["pushed"].int_value == 0


def test_candidate_failing_the_behavioral_checks_is_not_pushed(taxi_run, tmp_path):
    # Labels inverted by payment type (every cash trip a big tipper, no card trip one)
    # in every span of a new run: the model learns it (the Evaluator blesses it, it
    # serves fine), but the behavioral gate knows cash tips are not recorded.
    data_dir, output_dir = str(tmp_path / "data"), str(tmp_path / "out")
    shutil.copytree(taxi_run["data_dir"], data_dir)
    for span in os.listdir(data_dir):
        path = os.path.join(data_dir, span, "data.csv")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, records = reader.fieldnames, list(reader)
        for record in records:
            record["tips"] = record["fare"] if record["payment_type"] == "Cash" else "0"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
    result = run_pipeline(output_dir, data_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.index("blessing:") :]
    assert "blessing: BLESSED" in summary, summary  # the Evaluator alone would push it
    assert "serving canary (REST + gRPC on the candidate, parity): passed" in summary, summary
    assert "behavioral checks: FAILED" in summary and "cash trip is not a big tipper" in summary
    assert "pushed: nothing (previous versions untouched)" in summary, summary
    assert _versions(os.path.join(output_dir, "serving", "taxi")) == []
