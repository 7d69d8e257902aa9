"""The replay scenario: its data (fast) and the whole run (slow, e2e)."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from core import resources
from monitoring import cli
from monitoring.scenario import data, replay, settings

SOURCE = resources.data_root()


def test_inject_drift_scales_and_shifts_but_keeps_the_label():
    rows = [
        {"trip_miles": "2.0", "fare": "10.0", "tips": "3.0", "payment_type": "Credit Card"}
        for _ in range(200)
    ] + [{"trip_miles": "", "fare": "5.0", "tips": "0.0", "payment_type": "Cash"}]
    drifted = data.inject_drift(rows)
    assert drifted[0]["trip_miles"] == "3.22" and drifted[0]["fare"] == "15.00"
    assert [data.big_tipper(r) for r in drifted] == [data.big_tipper(r) for r in rows]
    cash = sum(r["payment_type"] == "Cash" for r in drifted[:200])
    assert 70 < cash < 130 and drifted[-1]["trip_miles"] == ""
    assert rows[0]["fare"] == "10.0"  # the input is not modified


def test_prepare_data_writes_only_under_the_work_dir(tmp_path):
    small = dataclasses.replace(settings.SMALL, history_rows=1000)
    parts = data.prepare_data(str(tmp_path), small, SOURCE)
    assert sorted(os.listdir(tmp_path / "data")) == ["span-2013", "span-2014"]
    assert len(data.read_rows(str(tmp_path / "data" / "span-2013" / "data.csv"))) == 1000
    ids = [json.dumps(r, sort_keys=True) for p in ("normal", "drift", "canary") for r in parts[p]]
    assert len(parts["normal"]) == 400 and len(parts["canary"]) == 800
    # Rows with gaps are traffic too (sent as missing, not zero-filled).
    assert any(r["dropoff_census_tract"] == "" for r in parts["canary"])
    assert len(set(ids)) == len(ids) and parts["new_span"]


def test_scenario_refuses_a_used_work_dir(tmp_path, capsys):
    (tmp_path / "something").write_text("x")
    assert cli.main(["scenario", "--work-dir", str(tmp_path), "--small"]) == cli.EXIT_BAD_INPUT
    assert "is not empty" in capsys.readouterr().err
    # its own entry point, `python -m monitoring.scenario`, too
    assert replay.main(["--work-dir", str(tmp_path), "--small"]) == cli.EXIT_BAD_INPUT
    assert "is not empty" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_monitoring_scenario_runs_the_package(tmp_path):
    (tmp_path / "something").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "monitoring.scenario", "--work-dir", str(tmp_path), "--small"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == cli.EXIT_BAD_INPUT, result.stderr[-2000:]
    assert "error: scenario stopped: work dir" in result.stderr


@pytest.mark.slow
@pytest.mark.e2e
def test_scenario_end_to_end(tmp_path):
    summary = replay.run(str(tmp_path / "work"), small=True)
    detection = summary["detection"]
    # trip_miles x 1.609 moves TFDV's Jensen-Shannon divergence of 400 rows by less
    # than sampling noise does (monitoring/README.md, "thresholds"): not asserted.
    assert {"fare", "payment_type"} <= set(detection["drift"]["drift"])
    assert detection["normal"]["drift"] == []  # no previous window for the first one
    assert summary["monitor_pipeline"]["exit"] == cli.EXIT_FOUND
    assert summary["monitor_pipeline"]["executions"]
    assert "serving drift" in summary["alerts"]["fired"]
    retrain = summary["retrain"]
    assert retrain["candidate"] > retrain["stable"] and retrain["deploy_execution"]
    decision = summary["decision"]
    assert decision["action"] in ("promote", "abort") and decision["execution"]
    actions = [e["action"] for e in summary["canary_executions"]]
    assert actions[0] == "pin" and "deploy" in actions and actions[-1] == decision["action"]
    recorded = summary["canary_executions"][-1]
    assert recorded["id"] == decision["execution"] and recorded["stable_n"] and recorded["z"]
    assert decision["served_versions"] == [decision["expected_version"]]
    if decision["action"] == "promote":
        assert decision["expected_version"] == retrain["candidate"]
    reports = os.listdir(tmp_path / "work" / "monitoring" / "ab")
    assert any(name.endswith(decision["action"]) for name in reports)
    # The pages a person reads: both windows, the drift window with its alert and verdicts.
    from reporting import monitoring_pages

    work = tmp_path / "work"
    paths = monitoring_pages.write_pages(
        str(work / "monitoring"), str(tmp_path / "pages"), [str(work / "alerts.log")]
    )
    assert len(paths) == 3  # index, normal window, drift window
    page = open(paths[-1], encoding="utf-8").read()
    for feature in ("fare", "payment_type"):  # trip_miles: see the detection assert above
        assert re.search(
            rf"<td>{feature}</td>(?:(?!</tr>).)*<td>[a-z, ]*drift[a-z, ]*</td>", page, re.S
        ), feature
    assert "serving drift" in page and f"<td>{decision['action']}</td>" in page
