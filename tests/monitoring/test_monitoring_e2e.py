"""End-to-end: the pipeline's model served with request logging, then `monitor`.

Uses the session's pipeline run (`taxi_run` in tests/conftest.py) and a real
server subprocess (`start_server` from tests/serving/conftest.py's factory,
re-declared here as a fixture of this directory).
"""

import csv
import json
import os
import re
import shutil
import time

import numpy as np
import pytest
import requests

from monitoring import artifacts, cli
from monitoring import quality as quality_lib
from serving.client import ServingClient, build_instance, json_body

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _rows(data_dir, limit):
    """Rows of the newest span, gaps included (sent as missing: NaN / "")."""
    span = sorted(os.listdir(data_dir))[-1]
    with open(os.path.join(data_dir, span, "data.csv"), newline="") as f:
        return list(csv.DictReader(f))[:limit]


def test_monitor_served_traffic_against_training(taxi_run, start_server, tmp_path, capsys):
    prefix = str(tmp_path / "logs" / "taxi")
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'taxi' base_path: '{taxi_run['serving_dir']}' "
        f"model_platform: 'tensorflow' logging_config {{ log_collector_config {{ "
        f"filename_prefix: '{prefix}' }} sampling_config {{ sampling_rate: 1.0 }} }} }} }}"
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
    )
    server = start_server(
        [f"--model_config_file={config}", f"--monitoring_config_file={monitoring}"],
        ready_model="taxi",
    )
    client = ServingClient(server.url, timeout=30)
    dtypes = client.input_dtypes("taxi")
    start = time.time() - 1
    rows = _rows(taxi_run["data_dir"], 120)
    assert len(rows) >= 40
    labels = ["request_id,label"]
    served = []  # (prediction the server returned for the row, the row's label)
    for i in range(0, len(rows), 8):
        batch = rows[i : i + 8]
        response = requests.post(
            f"{server.url}/v1/models/taxi:predict",
            data=json_body({"instances": [build_instance(r, dtypes) for r in batch]}),
            headers={"x-request-id": f"req-{i}"},
            timeout=30,
        )
        assert response.ok, response.text
        predictions = response.json()["predictions"]
        for j, row in enumerate(batch):  # the pipeline's label: tips > 20% of the fare
            big_tipper = float(row["tips"] or 0) > 0.2 * float(row["fare"] or 0)
            labels.append(f"req-{i}/{j},{int(big_tipper)}")
            served.append((float(np.ravel(predictions[j])[-1]), int(big_tipper)))
    labels.append("req-unknown/0,1")
    (tmp_path / "labels.csv").write_text("\n".join(labels) + "\n")
    (tmp_path / "metrics.txt").write_text(
        requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    )
    version = json.loads(requests.get(f"{server.url}/v1/models/taxi", timeout=10).text)
    version = version["model_version_status"][0]["version"]
    server.stop()  # flushes the request log
    end = time.time() + 1
    out = tmp_path / "out"
    code = cli.main(
        [
            "window",
            "--logs",
            prefix,
            "--start",
            str(start),
            "--end",
            str(end),
            "--metadata",
            taxi_run["metadata"],
            "--out",
            str(out),
        ]
    )
    directory = out / f"window-{int(start)}-{int(end)}"
    summary = json.loads((directory / "summary.json").read_text())
    assert code in (cli.EXIT_OK, cli.EXIT_FOUND), summary["problems"]
    assert summary["rows"] == len(rows) and summary["counts"]["malformed"] == 0
    assert summary["training span"] == max(
        int(s.split("-")[1]) for s in os.listdir(taxi_run["data_dir"])
    )
    kinds = {f["kind"] for f in summary["findings"]}
    assert kinds == {"skew"}  # no previous window: no drift
    assert "drift not computed: no previous statistics" in summary["notes"]

    # The same window as a TFX pipeline run (RequestLogMonitor calls the same
    # monitoring.window.check; the training statistics come through an Importer
    # instead of the MLMD lookup): the same anomalies. On a copy of the store,
    # which the run is recorded in.
    from pipeline import monitoring_runner

    metadata = str(tmp_path / "metadata.sqlite")
    shutil.copy(taxi_run["metadata"], metadata)
    run = monitoring_runner.run_window(
        logs=prefix, start=start, end=end, metadata=metadata, schema_file=cli.DEFAULT_SCHEMA
    )
    assert run.outcome == code and run.facts["rows"] == len(rows)
    assert run.training_span == summary["training span"]
    by_pipeline = artifacts.read_anomalies(run.anomalies.uri, "serving")
    by_command = artifacts.read_anomalies(str(directory / "anomalies"), "serving")
    assert dict(by_pipeline.anomaly_info) == dict(by_command.anomaly_info)
    assert {".".join(i.path.step): i for i in by_pipeline.drift_skew_info} == {
        ".".join(i.path.step): i for i in by_command.drift_skew_info
    }

    code = cli.main(["spans", "--metadata", taxi_run["metadata"], "--out", str(out)])
    assert code in (cli.EXIT_OK, cli.EXIT_FOUND)
    spans = json.loads((out / "spans" / "summary.json").read_text())
    assert len(spans["spans"]) >= 2 and spans["findings"]
    assert os.listdir(out / "spans" / "anomalies")

    window = ["--start", str(start), "--end", str(end)]
    argv = ["quality", "--logs", prefix, "--labels", str(tmp_path / "labels.csv"), *window]
    assert cli.main(argv + ["--out", str(out)]) == cli.EXIT_BAD_INPUT  # the unknown id
    quality = json.loads((out / f"quality-{int(start)}-{int(end)}" / "summary.json").read_text())
    assert quality["counts"]["unknown_request_ids"] == 1
    assert list(quality["versions"]) == [version]
    assert quality["versions"][version]["labelled"] == len(rows)
    # The join gave each logged row its own label: the same accuracy and AUC as the
    # (prediction, label) pairs of the responses, row by row.
    accuracy = sum((p >= 0.5) == bool(y) for p, y in served) / len(served)
    assert quality["overall"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    expected_auc = quality_lib.auc([p for p, _ in served], [y for _, y in served])
    assert quality["overall"]["auc"] == pytest.approx(expected_auc, abs=1e-6)

    code = cli.main(
        [
            "alert",
            "--state",
            str(tmp_path / "alert-state.json"),
            "--summary",
            str(directory / "summary.json"),
            "--metrics-file",
            str(tmp_path / "metrics.txt"),
            "--quality",
            str(out / f"quality-{int(start)}-{int(end)}" / "summary.json"),
            "--baseline-accuracy",
            "1.01",
            "--log-file",
            str(tmp_path / "alerts.log"),
        ]
    )
    assert code == cli.EXIT_FOUND  # accuracy is always below 1.01
    signals = capsys.readouterr().out
    assert re.search(r"error_rate=[0-9.e-]+, ", signals), signals  # measured, not None
    assert re.search(r"p99_latency_ms=[0-9.]+, ", signals), signals
    fired = [json.loads(line)["rule"] for line in open(tmp_path / "alerts.log")]
    assert "live quality drop" in fired and "error rate" not in fired
