"""A/B verdict: minimum sample, one-sided z-test, Wilson intervals."""

import math

import pytest

from monitoring import ab, cli


def test_wilson_interval():
    low, high = ab.wilson(80, 100)
    assert low == pytest.approx(0.711, abs=1e-3) and high == pytest.approx(0.867, abs=1e-3)
    assert ab.wilson(0, 0) is None


def test_verdicts():
    assert ab.verdict((90, 100), (80, 100))["verdict"] == "insufficient data"
    worse = ab.verdict((800, 1000), (740, 1000))
    assert worse["verdict"] == "rollback" and worse["z"] < -1.645
    same = ab.verdict((800, 1000), (790, 1000))
    assert same["verdict"] == "promote" and same["p_value"] > 0.05
    better = ab.verdict((800, 1000), (850, 1000))
    assert better["verdict"] == "promote"
    assert ab.verdict((1000, 1000), (1000, 1000))["verdict"] == "promote"  # se = 0


def test_z_and_p_on_a_known_case():
    # Stable 800/1000 vs canary 765/1000: pooled p = 0.7825, se = sqrt(p (1 - p) (2 / 1000))
    # = 0.018450, z = -0.035 / se = -1.8971; one-sided p = 0.0289 (two-sided: 0.0578,
    # which would not reject at 0.05).
    result = ab.verdict((800, 1000), (765, 1000))
    assert result["z"] == pytest.approx(-1.8971, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.0289, abs=1e-4)
    assert result["verdict"] == "rollback"
    # The same data at alpha just above and just below p.
    assert ab.verdict((800, 1000), (765, 1000), alpha=0.0290)["verdict"] == "rollback"
    assert ab.verdict((800, 1000), (765, 1000), alpha=0.0288)["verdict"] == "promote"


def test_variance_is_pooled():
    # 900/1000 vs 160/200: pooled se 0.024866 gives z = -4.0215 (p = 2.9e-5); the
    # unpooled se 0.029833 would give z = -3.3520 (p = 4.0e-4).
    result = ab.verdict((900, 1000), (160, 200))
    assert result["z"] == pytest.approx(-4.0215, abs=1e-4)
    assert result["p_value"] == pytest.approx(2.891e-5, rel=1e-3)
    assert ab.verdict((900, 1000), (160, 200), alpha=0.0002)["verdict"] == "rollback"


def test_minimum_sample_at_the_boundary():
    # Both versions need min_samples labelled predictions; one short of it is not enough.
    assert ab.verdict((160, 200), (150, 200), min_samples=200)["verdict"] == "promote"
    for stable, canary in (((159, 199), (150, 200)), ((160, 200), (149, 199))):
        short = ab.verdict(stable, canary, min_samples=200)
        assert short["verdict"] == "insufficient data" and short["z"] is None


def test_ab_command_reads_a_quality_summary(tmp_path, capsys):
    import json

    summary = tmp_path / "quality.json"
    summary.write_text(
        json.dumps(
            {
                "versions": {
                    "1": {"labelled": 1000, "accuracy": 0.8, "auc": 0.9},
                    "2": {"labelled": 1000, "accuracy": 0.74, "auc": 0.85},
                }
            }
        )
    )
    argv = ["ab", "--quality", str(summary), "--stable", "1", "--canary", "2"]
    assert cli.main(argv) == cli.EXIT_FOUND  # rollback
    out = capsys.readouterr().out
    assert (
        "verdict: rollback" in out
        and "| 2 (canary) | n/a | n/a | n/a / n/a / n/a | 1000 | 0.7400 [0.7119, 0.7662]" in out
    )
    assert cli.main(argv + ["--min-samples", "2000"]) == cli.EXIT_OK
    assert "verdict: insufficient data" in capsys.readouterr().out
    assert cli.main(["ab", "--quality", str(summary), "--stable", "1", "--canary", "9"]) == 2
    assert "no labelled predictions of version 9" in capsys.readouterr().err


def test_ab_with_per_version_serving_metrics(tmp_path, capsys):
    import json

    from serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    for i in range(100):
        metrics.record_request("taxi", 1, "predict", "REST", "OK", 500.0 + i)
    metrics.record_request("taxi", 2, "predict", "REST", "OK", 50_000.0)
    metrics.record_request("taxi", 2, "predict", "REST", "INVALID_ARGUMENT")
    (tmp_path / "metrics.txt").write_bytes(metrics.render())
    summary = tmp_path / "quality.json"
    summary.write_text(
        json.dumps(
            {
                "versions": {
                    "1": {"labelled": 300, "accuracy": 0.8, "auc": 0.9},
                    "2": {"labelled": 300, "accuracy": 0.8, "auc": 0.9},
                }
            }
        )
    )
    out = tmp_path / "verdict.json"
    assert (
        cli.main(
            [
                "ab",
                "--quality",
                str(summary),
                "--stable",
                "1",
                "--canary",
                "2",
                "--metrics-file",
                str(tmp_path / "metrics.txt"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| 1 (stable) | 100 | 0 |" in printed and "| 2 (canary) | 2 | 1 |" in printed
    verdict = json.loads(out.read_text())
    assert verdict["verdict"] == "promote"
    assert verdict["stable"]["p99_ms"] < verdict["canary"]["p99_ms"]
    assert (
        cli.main(
            [
                "ab",
                "--quality",
                str(summary),
                "--stable",
                "1",
                "--canary",
                "2",
                "--metrics-file",
                str(tmp_path / "none.txt"),
            ]
        )
        == 2
    )


def test_small_sample_interval_and_zero_variance():
    # Wilson at n = 2, one success: centre 0.5, half-width 0.41047 (z = 1.95996).
    low, high = ab.wilson(1, 2)
    assert (low, high) == (pytest.approx(0.094531, abs=1e-6), pytest.approx(0.905469, abs=1e-6))
    # Both versions always right: zero variance, no difference: z = 0, p = 0.5.
    same = ab.verdict((1000, 1000), (1000, 1000))
    assert (same["z"], same["p_value"], same["verdict"]) == (0.0, 0.5, "promote")
    # Nothing labelled yet: no accuracy and no interval, not a division by zero.
    empty = ab.verdict((0, 0), (5, 10))
    assert empty["stable"]["accuracy"] is None and empty["stable"]["ci95"] is None
    assert empty["verdict"] == "insufficient data"
    assert ab.verdict((5, 10), (0, 0))["canary"]["accuracy"] is None


def test_wilson_interval_is_clamped_to_zero_and_one():
    # The score interval lies in [0, 1], but in floating point its end can step over by
    # one ulp: 9/9 computes to 1 + 2.2e-16 and 0/21 to a hair below 0.
    assert ab.wilson(9, 9)[1] == 1.0
    assert ab.wilson(0, 21)[0] == 0.0


def test_h0_is_rejected_only_strictly_below_alpha():
    # z < -z_{1-alpha}, i.e. p < alpha: at alpha equal to p the canary is not shown worse.
    result = ab.verdict((800, 1000), (765, 1000))
    assert result["test"] == "one-sided two-proportion z-test (pooled), H1: canary accuracy lower"
    p_value = result["p_value"]
    assert ab.verdict((800, 1000), (765, 1000), alpha=p_value)["verdict"] == "promote"
    above = math.nextafter(p_value, 1.0)
    assert ab.verdict((800, 1000), (765, 1000), alpha=above)["verdict"] == "rollback"
