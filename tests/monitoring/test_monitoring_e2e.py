"""End-to-end: the pipeline's model served with request logging, then `monitor`.

Uses the session's pipeline run (`taxi_run` in tests/conftest.py) and a real
server subprocess (`start_server` from tests/serving/conftest.py's factory,
re-declared here as a fixture of this directory).
"""

import csv
import json
import os
import time

import pytest

from monitoring import cli
from serving.client import ServingClient, build_instance

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _complete_rows(data_dir, features, limit):
    """Rows of the newest span with a value for every served feature but `company`."""
    span = sorted(os.listdir(data_dir))[-1]
    with open(os.path.join(data_dir, span, "data.csv"), newline="") as f:
        rows = [
            r
            for r in csv.DictReader(f)
            if all(r.get(k, "") != "" for k in features if k != "company")
        ]
    return rows[:limit]


def test_monitor_served_traffic_against_training(taxi_run, start_server, tmp_path):
    prefix = str(tmp_path / "logs" / "taxi")
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'taxi' base_path: '{taxi_run['serving_dir']}' "
        f"model_platform: 'tensorflow' logging_config {{ log_collector_config {{ "
        f"filename_prefix: '{prefix}' }} sampling_config {{ sampling_rate: 1.0 }} }} }} }}"
    )
    server = start_server([f"--model_config_file={config}"], ready_model="taxi")
    client = ServingClient(server.url, timeout=30)
    dtypes = client.input_dtypes("taxi")
    start = time.time() - 1
    rows = _complete_rows(taxi_run["data_dir"], dtypes, 120)
    assert len(rows) >= 40
    for i in range(0, len(rows), 8):
        client.predict("taxi", [build_instance(r, dtypes) for r in rows[i : i + 8]])
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

    code = cli.main(["spans", "--metadata", taxi_run["metadata"], "--out", str(out)])
    assert code in (cli.EXIT_OK, cli.EXIT_FOUND)
    spans = json.loads((out / "spans" / "summary.json").read_text())
    assert len(spans["spans"]) >= 2 and spans["findings"]
    assert os.listdir(out / "spans" / "anomalies")
