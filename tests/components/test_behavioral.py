"""Behavioral checks: the cases, the report, and the Pusher gate (no TF model needed)."""

import json
import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.behavioral import BehavioralBlessing, checks
from components.behavioral.artifact import read_report, write_report
from components.pusher import AtomicPushExecutor


def _sane(rows):
    """A model that behaves: cash trips low, credit cards high, nothing else matters."""
    return [0.05 if row["payment_type"] == "Cash" else 0.6 for row in rows]


def _inverted(rows):
    """Broken: cash trips get the high probability; the company moves it a lot."""
    return [
        (0.9 if row["payment_type"] == "Cash" else 0.3) + (0.05 if row["company"] else 0.0)
        for row in rows
    ]


def test_default_cases_pass_on_a_sane_model():
    report = checks.run_cases(_sane, checks.default_cases())
    assert report["passed"] and report["failed"] == 0
    assert {case["kind"] for case in report["cases"]} == {
        "minimum functionality",
        "invariance",
        "directional",
    }
    assert checks.format_report(report) == []


def test_report_is_read_back_as_written(tmp_path):
    report = checks.run_cases(_inverted, checks.default_cases())
    write_report(str(tmp_path), report)
    assert os.listdir(tmp_path) == ["behavioral_report.json"]
    assert read_report(str(tmp_path)) == json.loads(json.dumps(report))
    assert read_report(str(tmp_path))["failed"] == report["failed"] > 0
    with pytest.raises(OSError):
        read_report(str(tmp_path / "missing"))


def test_failures_name_the_case_and_expected_vs_got():
    report = checks.run_cases(_inverted, checks.default_cases())
    assert not report["passed"]
    failed = {case["name"]: case for case in report["cases"] if not case["passed"]}
    assert set(failed) == {
        "cash trip is not a big tipper",
        "long cash trip is not a big tipper",
        "cash instead of credit card lowers the tip probability",
    }
    assert report["failed"] == 3
    lines = checks.format_report(report)
    assert len(lines) == 3
    assert any(
        "directional: cash instead of credit card" in line
        and "expected p lower by >= 0.05" in line
        and "p 0.3500 -> 0.9500" in line
        for line in lines
    )


def test_invariance_measures_the_spread_over_variants():
    case = checks.Invariance("company", "company", ("a", "b", "c"), max_delta=0.1)
    rows = case.rows({"company": "x", "fare": 1.0})
    assert [row["company"] for row in rows] == ["a", "b", "c"]
    ok, expected, got = case.judge([0.5, 0.58, 0.52])
    assert ok and expected == "spread <= 0.10" and got.startswith("spread = 0.0800")
    assert not case.judge([0.5, 0.65, 0.52])[0]
    assert not case.judge([0.5, float("nan"), 0.52])[0]


def test_directional_and_minimum_functionality_bounds():
    up = checks.Directional("d", {"fare": 2.0}, "higher", min_delta=0.1)
    assert up.rows({"fare": 1.0}) == [{"fare": 1.0}, {"fare": 2.0}]
    assert up.judge([0.2, 0.35])[0]
    assert not up.judge([0.2, 0.25])[0]  # right way, too small
    assert not checks.Directional("d", {}, "lower").judge([0.2, 0.2])[0]  # no change
    mft = checks.MinimumFunctionality("m", {}, low=0.1, high=0.4)
    assert mft.judge([0.3])[0] and not mft.judge([0.5])[0] and not mft.judge([float("nan")])[0]


def _pushed(tmp_path, behavioral_blessed):
    model_dir = tmp_path / "model" / "Format-Serving"
    model_dir.mkdir(parents=True)
    (model_dir / "saved_model.pb").write_text("m")
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    model_blessing = standard_artifacts.ModelBlessing()
    model_blessing.set_int_custom_property("blessed", 1)
    behavioral = BehavioralBlessing()
    behavioral.set_int_custom_property("blessed", int(behavioral_blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(tmp_path / "serving"))
    )
    AtomicPushExecutor().Do(
        {"model": [model], "model_blessing": [model_blessing], "behavioral_blessing": [behavioral]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "{}"},
    )
    return pushed, str(tmp_path / "serving")


def test_pusher_pushes_only_when_behavioral_checks_passed(tmp_path):
    pushed, serving = _pushed(tmp_path / "fail", behavioral_blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(serving)
    pushed, serving = _pushed(tmp_path / "pass", behavioral_blessed=True)
    assert pushed.get_int_custom_property("pushed") == 1
    assert len(os.listdir(serving)) == 1
