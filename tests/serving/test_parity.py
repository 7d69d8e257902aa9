"""Training/serving parity: every way of calling the server gives the evaluated prediction.

The reference is the pushed model's own `serving_examples` signature run in
this process on the pipeline's tf.Examples (what the Evaluator scored and
blessed). Every row of the eval and test splits is then sent to a server on
the same model through REST `:predict` (row and columnar format), gRPC
Predict, gRPC Classify (tf.Examples), REST `:classify` and `:regress` (JSON
tf.Examples) and `serving-client predict --csv` (REST and `--grpc`); each
answer must match within 1e-6. Gaps (empty CSV
cells) travel as NaN / "" (see serving/client.py), never as zeros.

Uses `TAXI_SERVING_MODEL_DIR=<output_dir>/serving/taxi` (examples from
`<output_dir>/pipeline`) when set, otherwise the session's pipeline run.
"""

import csv
import glob
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from serving import client as client_lib
from serving import client_cli
from serving.client import ServingClient, ServingClientError, build_instance, example_to_row

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOLERANCE = 1e-6
BATCH = 200  # rows per request


@pytest.fixture(scope="module")
def taxi_serving_dir(request):
    """The pushed taxi model's base path: $TAXI_SERVING_MODEL_DIR, else the session run's."""
    model_dir = os.environ.get("TAXI_SERVING_MODEL_DIR", "")
    if model_dir:
        return model_dir
    try:
        return request.getfixturevalue("taxi_run")["serving_dir"]
    except pytest.FixtureLookupError:
        pytest.skip("set TAXI_SERVING_MODEL_DIR or run from the repo's tests/ root")


@pytest.fixture(scope="module")
def split_examples(taxi_serving_dir):
    """Every tf.Example of the eval and test splits of the run that pushed the model."""
    output_dir = os.path.dirname(os.path.dirname(taxi_serving_dir))
    pattern = os.path.join(output_dir, "pipeline", "CsvExampleGen", "examples", "*")
    files = sorted(
        f for split in ("eval", "test") for f in glob.glob(f"{pattern}/Split-{split}/*.gz")
    )
    assert files, f"no eval/test examples under {pattern}"
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [tf.train.Example.FromString(r) for r in records.as_numpy_iterator()]


@pytest.fixture(scope="module")
def offline(taxi_serving_dir, split_examples):
    """serving_examples' probability of every example (the evaluated prediction)."""
    version = max(os.listdir(taxi_serving_dir), key=int)
    signature = tf.saved_model.load(os.path.join(taxi_serving_dir, version)).signatures[
        "serving_examples"
    ]
    serialized = [e.SerializeToString() for e in split_examples]
    outputs = [
        signature(examples=tf.constant(serialized[i : i + 1000]))["probabilities"].numpy()
        for i in range(0, len(serialized), 1000)
    ]
    return np.concatenate(outputs).reshape(-1).astype(np.float64)


@pytest.fixture(scope="module")
def server(taxi_serving_dir, tmp_path_factory):
    from serving.process import ServerProcess

    log = str(tmp_path_factory.mktemp("parity") / "server.log")
    args = ["--model_name=taxi", f"--model_base_path={taxi_serving_dir}"]
    with ServerProcess(args, log) as process:
        problem = process.wait_available("taxi", 120)
        assert not problem, problem
        yield process


def _batches(items):
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _assert_parity(served, expected, how):
    served = np.asarray(served, np.float64).reshape(-1)
    assert served.shape == expected.shape, how
    diff = np.abs(served - expected)
    worst = int(np.argmax(diff))
    assert diff.max() <= TOLERANCE, (
        f"{how}: {int(np.sum(diff > TOLERANCE))} of {diff.size} rows differ, max {diff.max():.3g} "
        f"(row {worst}: served {served[worst]}, serving_examples {expected[worst]})"
    )


def test_the_splits_have_gaps_in_every_kind_of_feature(split_examples):
    rows = [example_to_row(e) for e in split_examples]
    assert len(rows) >= 100
    for key in ("dropoff_census_tract", "dropoff_community_area", "company", "dropoff_latitude"):
        assert any(key not in r for r in rows), key


def test_rest_predict_rows_and_columns_match_serving_examples(server, split_examples, offline):
    client = ServingClient(server.url, timeout=60)
    dtypes = client.input_dtypes("taxi")
    assert dtypes["dropoff_census_tract"] == "DT_DOUBLE" and dtypes["fare"] == "DT_FLOAT"
    instances = [build_instance(example_to_row(e), dtypes) for e in split_examples]
    rows = [p for b in _batches(instances) for p in client.predict("taxi", b)["predictions"]]
    _assert_parity(rows, offline, "REST :predict, row format")
    columns = [
        p
        for b in _batches(instances)
        for p in client.predict("taxi", inputs={k: [i[k] for i in b] for k in dtypes})["outputs"]
    ]
    _assert_parity(columns, offline, "REST :predict, columnar format")


def test_grpc_predict_matches_serving_examples(server, split_examples, offline):
    client = ServingClient(server.url, server.grpc_target, timeout=60)
    dtypes = client.input_dtypes("taxi")
    instances = [build_instance(example_to_row(e), dtypes) for e in split_examples]
    served = [
        client.predict_grpc("taxi", client_lib.instance_columns(b, dtypes))["probabilities"]
        for b in _batches(instances)
    ]
    _assert_parity(np.concatenate(served), offline, "gRPC Predict")


def test_rest_classify_and_regress_with_examples_match_serving_examples(
    server, split_examples, offline
):
    client = ServingClient(server.url, timeout=60)
    rows = [example_to_row(e) for e in split_examples]
    results = [
        r for b in _batches(rows) for r in client.classify("taxi", b, "classification")["results"]
    ]
    _assert_parity([dict(r)["1"] for r in results], offline, "REST :classify")
    results = [
        r for b in _batches(rows) for r in client.regress("taxi", b, "regression")["results"]
    ]
    _assert_parity(results, offline, "REST :regress")


def test_grpc_classify_with_tf_examples_matches_serving_examples(server, split_examples, offline):
    import grpc
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        scores = []
        for batch in _batches(split_examples):
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = "taxi"
            request.model_spec.signature_name = "classification"
            request.input.example_list.examples.extend(batch)
            result = stub.Classify(request, timeout=60).result
            scores += [
                {c.label: c.score for c in item.classes}["1"] for item in result.classifications
            ]
    _assert_parity(scores, offline, "gRPC Classify")


def _write_csv(path, examples):
    """The examples as the CSV a user would send: one column per feature, gaps empty."""
    rows = [example_to_row(e) for e in examples]
    keys = sorted({k for r in rows for k in r})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in keys} for r in rows)
    return keys


@pytest.mark.parametrize("over", ["rest", "grpc"])
def test_serving_client_csv_matches_serving_examples(
    server, split_examples, offline, tmp_path, capsys, over
):
    path = str(tmp_path / "rows.csv")
    _write_csv(path, split_examples)
    argv = ["predict", "--url", server.url, "--model", "taxi", "--csv", path, "--timeout", "120"]
    if over == "grpc":
        argv += ["--grpc", server.grpc_target]
    assert client_cli.main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    served = answer["predictions"] if over == "rest" else answer["outputs"]["probabilities"]
    _assert_parity(served, offline, f"serving-client predict --csv ({over})")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("trip_start_hour", 1.5, "input trip_start_hour, row 1: 1.5 is not an integer"),
        ("dropoff_census_tract", 2.0**53, "row 1: 9007199254740992 is not an integer"),
        ("pickup_community_area", math.inf, "input pickup_community_area, row 1: inf is not"),
        ("trip_start_day", math.nan, "row 1: nan means missing, but trip_start_day is required"),
        ("payment_type", "", "the empty string means missing, but payment_type is required"),
    ],
)
def test_bad_values_are_invalid_argument_naming_input_row_and_value(
    server, split_examples, key, value, message
):
    client = ServingClient(server.url, server.grpc_target, timeout=60)
    dtypes = client.input_dtypes("taxi")
    instances = [build_instance(example_to_row(e), dtypes) for e in split_examples[:2]]
    instances[1][key] = value
    with pytest.raises(ServingClientError) as rest:
        client.predict("taxi", instances)
    assert rest.value.status == 400 and message in rest.value.message
    with pytest.raises(ServingClientError) as grpc_error:
        client.predict_grpc("taxi", client_lib.instance_columns(instances, dtypes))
    assert grpc_error.value.status == "INVALID_ARGUMENT" and message in grpc_error.value.message


def test_the_pipeline_canary_checked_parity_before_the_push(taxi_serving_dir):
    output_dir = os.path.dirname(os.path.dirname(taxi_serving_dir))
    reports = glob.glob(
        os.path.join(output_dir, "pipeline", "InfraCanary", "blessing", "*", "canary_report.json")
    )
    assert reports, "no InfraCanary report in the run"
    with open(max(reports, key=os.path.getmtime)) as f:
        report = json.load(f)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["passed"] and report["reason"] == ""
    for name in ("parity_rest_predict", "parity_grpc_predict"):
        assert checks[name]["ok"] and " 0 above 1e-06" in checks[name]["detail"], checks[name]
