"""End-to-end: serve the pipeline's pushed taxi model and query it every way.

Needs a Pusher output: `TAXI_SERVING_MODEL_DIR=<serving_dir>/taxi` (the test
is skipped otherwise). Requests are built from the raw CSV in `data/taxi`
using the served model's own signature metadata.
"""

import csv
import glob
import os

import pytest

from serving.client import ServingClient, build_instance

MODEL_DIR = os.environ.get("TAXI_SERVING_MODEL_DIR", "")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.path.isdir(MODEL_DIR), reason="TAXI_SERVING_MODEL_DIR not set"),
]


def _rows(limit=16):
    path = sorted(glob.glob(os.path.join(REPO_ROOT, "data", "taxi", "*", "*.csv")))[0]
    with open(path, newline="") as f:
        return [row for _, row in zip(range(limit), csv.DictReader(f))]


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


def test_taxi_model_rest_and_grpc(start_server):
    server = start_server(["--model_name=taxi", f"--model_base_path={MODEL_DIR}"],
                          ready_model="taxi")
    client = ServingClient(server.url, server.grpc_target, timeout=30)
    dtypes = client.input_dtypes("taxi")
    rows = _rows()
    instances = [build_instance(r, dtypes) for r in rows]
    predictions = client.predict("taxi", instances)["predictions"]
    assert len(predictions) == len(rows)
    assert all(0.0 <= p[0] <= 1.0 for p in predictions)
    columnar = client.predict("taxi", inputs={k: [i[k] for i in instances] for k in dtypes})
    assert [round(v[0], 5) for v in columnar["outputs"]] == [round(p[0], 5) for p in predictions]
    grpc_out = client.predict_grpc("taxi", {
        k: ([i[k].encode() for i in instances] if dtypes[k] == "DT_STRING" else
            [i[k] for i in instances]) for k in dtypes})
    import numpy as np

    grpc_values = next(iter(grpc_out.values())).reshape(-1)
    assert np.allclose(grpc_values, [p[0] for p in predictions], atol=1e-5)
    signatures = client.metadata("taxi")["metadata"]["signature_def"]["signature_def"]
    if "classification" in signatures:
        results = client.classify("taxi", [_json_example(r) for r in rows[:4]],
                                  "classification")["results"]
        assert len(results) == 4 and all(0.0 <= s <= 1.0 for per in results for _, s in per)
