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


def _selection():
    def family(mean, low, high):
        summary = {"mean": mean, "ci_low": low, "ci_high": high}
        return {
            "summary": {
                "auc": summary,
                "log_loss": {"mean": 0.41},
                "calibration": {"mean": 1.02},
            }
        }

    return {
        "folds": 3,
        "rows": 12000,
        "steps": 150,
        "confidence": 0.95,
        "families": {
            "logistic": family(0.80, 0.78, 0.82),
            "wide_deep": family(0.81, 0.785, 0.835),
        },
        "chosen_family": "logistic",
        "reason": "wide_deep - logistic ...: the win is not significant, the simpler logistic "
        "is kept",
    }


def test_summary_shows_the_model_selection_evidence():
    text = run_summary.format_summary(_summary(selection=_selection()), "/out", "/serve", 1.0)
    assert (
        "model selection (3-fold CV on the train split, 12000 rows, 150 steps per fold): "
        "chose logistic" in text
    )
    assert "logistic   AUC 0.8000 +- 0.0200 (95% CI [0.7800, 0.8200])" in text
    assert "wide_deep  AUC 0.8100 +- 0.0250" in text
    assert "why: wide_deep - logistic ...: the win is not significant" in text
    assert "model selection" not in run_summary.format_summary(_summary(), "/o", "/s", 1.0)


def test_summary_says_why_the_serving_canary_failed():
    reason = (
        "parity_rest_predict: max |served - serving_examples| 0.039 over 256 rows, 55 above 1e-06"
    )
    text = run_summary.format_summary(
        _summary(infra_blessed=False, infra_reason=reason), "/out", "/serve", 1.0
    )
    assert "serving canary (REST + gRPC on the candidate, parity): FAILED" in text
    assert f"    - {reason}" in text


def test_summary_says_when_selection_ran_on_a_sample():
    sampled = {**_selection(), "rows": 60000, "split_rows": 1200000}
    text = run_summary.format_summary(_summary(selection=sampled), "/out", "/serve", 1.0)
    assert "train split, a 60000-row sample of its 1200000 rows, 150 steps per fold" in text
