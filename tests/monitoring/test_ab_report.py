"""A/B report files: Markdown, JSON, HTML."""

import json

import pytest

from monitoring import ab, ab_report, cli


def test_report_files(tmp_path):
    result = ab.verdict((160, 200), (170, 200), min_samples=100)
    serving = {"1": {"requests": 250, "errors": 1, "p50_ms": 1.0, "p95_ms": 2.5, "p99_ms": 5.0}}
    report = ab_report.build(result, {"stable": 1, "canary": 2}, serving, {"decision": "promote"})
    paths = ab_report.write(str(tmp_path / "r"), report)
    md = open(paths["md"]).read()
    assert "| 1 (stable) | 250 | 1 | 0.0040 | 1.0000 | 2.5000 | 5.0000 | 200 | 0.8000 |" in md
    assert "| 2 (canary) | n/a | n/a | n/a |" in md and "verdict: **promote**" in md
    saved = json.loads(open(paths["json"]).read())
    assert saved["versions"]["canary"]["accuracy"] == 0.85
    # pooled 0.825, se 0.0380: z = 0.05 / 0.0380; p is the lower tail (a two-sided p: 0.188)
    assert saved["z"] == pytest.approx(1.3159, abs=1e-4)
    assert saved["p_value"] == pytest.approx(0.9059, abs=1e-4)
    assert "<table" in open(paths["html"]).read()


def test_ab_command_writes_the_report(tmp_path, capsys):
    summary = tmp_path / "quality.json"
    summary.write_text(
        json.dumps(
            {
                "versions": {
                    "1": {"labelled": 300, "accuracy": 0.8, "auc": 0.9},
                    "2": {"labelled": 300, "accuracy": 0.7, "auc": 0.8},
                }
            }
        )
    )
    argv = ["ab", "--quality", str(summary), "--stable", "1", "--canary", "2"]
    assert cli.main(argv + ["--report-dir", str(tmp_path / "ab")]) == cli.EXIT_FOUND
    report = json.loads((tmp_path / "ab" / "report.json").read_text())
    # pooled 0.75, se = sqrt(0.75 * 0.25 * 2 / 300) = 0.0354: z = -0.1 / 0.0354 = -2 sqrt(2)
    assert report["verdict"] == "rollback"
    assert report["z"] == pytest.approx(-2.8284, abs=1e-4)
    assert report["p_value"] == pytest.approx(0.00234, abs=1e-5)
    assert "A/B report:" in capsys.readouterr().out
