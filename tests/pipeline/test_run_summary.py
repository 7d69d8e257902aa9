"""The runner's summary text: held-out test metrics and behavioral check failures."""

from components.behavioral import checks
from pipeline import run_summary


def _summary(**changes):
    fields = dict(
        nodes=[],
        spans=[2015],
        blessed=True,
        reasons=[],
        infra_blessed=True,
        pushed_version=None,
        pushed_to=None,
        model_uri="/m",
    )
    return run_summary.Summary(**{**fields, **changes})


def test_summary_shows_test_metrics_and_passed_checks():
    report = checks.run_cases(lambda rows: [0.5] * len(rows), [checks.default_cases()[0]])
    text = run_summary.format_summary(
        _summary(test_metrics={"auc": 0.81234, "example_count": 120.0}, behavioral=report),
        "/out",
        "/serve",
        1.0,
    )
    assert "held-out test split (report only, not a gate): auc 0.8123, example_count 120" in text
    assert "behavioral checks: passed (1 cases)" in text


def test_summary_lists_each_failed_behavioral_case():
    inverted = checks.run_cases(
        lambda rows: [0.9 if r["payment_type"] == "Cash" else 0.3 for r in rows],
        checks.default_cases(),
    )
    text = run_summary.format_summary(_summary(behavioral=inverted), "/out", "/serve", 1.0)
    assert "behavioral checks: FAILED (3 of 6 cases)" in text
    assert (
        "    - directional: cash instead of credit card lowers the tip probability: "
        "expected p lower by >= 0.05, got p 0.3000 -> 0.9000 (change +0.6000)" in text
    )
    assert "held-out test split" not in text  # no TestEvaluator ran
