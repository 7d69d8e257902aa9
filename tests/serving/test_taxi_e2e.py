"""End-to-end: serve the pipeline's pushed taxi model and query it every way.

Uses `TAXI_SERVING_MODEL_DIR=<serving_dir>/taxi` when set, otherwise the
session's pipeline run (`taxi_run` in tests/conftest.py). Requests are built
from the raw CSV in `data/taxi` using the served model's signature metadata.
"""

import csv
import glob
import os

import pytest

from serving.client import ServingClient, build_instance, instance_columns

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def taxi_model_dir(request):
    """The pushed taxi model: $TAXI_SERVING_MODEL_DIR, else a fresh pipeline run."""
    model_dir = os.environ.get("TAXI_SERVING_MODEL_DIR", "")
    if model_dir:
        return model_dir
    try:
        return request.getfixturevalue("taxi_run")["serving_dir"]
    except pytest.FixtureLookupError:
        pytest.skip("set TAXI_SERVING_MODEL_DIR or run from the repo's tests/ root")


def _rows(limit=16):
    path = sorted(glob.glob(os.path.join(REPO_ROOT, "data", "taxi", "*", "*.csv")))[0]
    with open(path, newline="") as f:
        return [row for _, row in zip(range(limit), csv.DictReader(f), strict=False)]


def _json_example(row):
    out = {}
    for key, value in row.items():
        if value == "" or key == "tips":
            continue
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def test_taxi_model_rest_and_grpc(start_server, taxi_model_dir):
    server = start_server(
        ["--model_name=taxi", f"--model_base_path={taxi_model_dir}"], ready_model="taxi"
    )
    client = ServingClient(server.url, server.grpc_target, timeout=30)
    dtypes = client.input_dtypes("taxi")
    rows = _rows()
    instances = [build_instance(r, dtypes) for r in rows]
    predictions = client.predict("taxi", instances)["predictions"]
    assert len(predictions) == len(rows)
    assert all(0.0 <= p[0] <= 1.0 for p in predictions)
    columnar = client.predict("taxi", inputs={k: [i[k] for i in instances] for k in dtypes})
    assert [round(v[0], 5) for v in columnar["outputs"]] == [round(p[0], 5) for p in predictions]
    # Typed by the signature: the integer features are DT_DOUBLE (NaN = missing).
    grpc_out = client.predict_grpc("taxi", instance_columns(instances, dtypes))
    import numpy as np

    grpc_values = next(iter(grpc_out.values())).reshape(-1)
    assert np.allclose(grpc_values, [p[0] for p in predictions], atol=1e-5)
    signatures = client.metadata("taxi")["metadata"]["signature_def"]["signature_def"]
    if "classification" in signatures:
        results = client.classify("taxi", [_json_example(r) for r in rows[:4]], "classification")[
            "results"
        ]
        assert len(results) == 4 and all(0.0 <= s <= 1.0 for per in results for _, s in per)
