"""deploy/prometheus: the config and rules load, and every alert is unit-tested."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

pytestmark = pytest.mark.slow  # runs promtool

HERE = os.path.dirname(os.path.abspath(__file__))
PROMETHEUS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "deploy", "prometheus"
)
RULES_TEST = os.path.join(HERE, "alert_rules_test.yml")


def _run(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def _alerts(rules_path: str) -> list[str]:
    with open(rules_path) as f:
        groups = yaml.safe_load(f)["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_config_and_rules(tool):
    config = _run(
        tool("promtool"), "check", "config", os.path.join(PROMETHEUS_DIR, "prometheus.yml")
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert "2 rule files found" in config.stdout
    rules = _run(
        tool("promtool"),
        "check",
        "rules",
        os.path.join(PROMETHEUS_DIR, "recording_rules.yml"),
        os.path.join(PROMETHEUS_DIR, "alert_rules.yml"),
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_pass(tool):
    result = _run(tool("promtool"), "test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case():
    alerts = _alerts(os.path.join(PROMETHEUS_DIR, "alert_rules.yml"))
    assert len(alerts) == len(set(alerts)) >= 13
    with open(RULES_TEST) as f:
        cases = [case for test in yaml.safe_load(f)["tests"] for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert not set(alerts) - firing, f"alerts never seen firing: {set(alerts) - firing}"
    assert not set(alerts) - silent, f"alerts never seen silent: {set(alerts) - silent}"
    assert not (firing | silent) - set(alerts), "tests name alerts that do not exist"


def test_every_alert_routes_and_explains_itself():
    with open(os.path.join(PROMETHEUS_DIR, "alert_rules.yml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    for rule in rules:
        labels = rule["labels"]
        assert labels["severity"] in ("critical", "warning"), rule["alert"]
        assert labels.get("signal"), rule["alert"]  # inhibition matches on it
        assert labels.get("action") in (None, "rollback", "canary_abort"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _copy_with(tmp_path, edit) -> str:
    """The rules and their unit tests in tmp_path, the alert rules passed through `edit`."""
    for name in ("recording_rules.yml", "alert_rules.yml"):
        shutil.copy(os.path.join(PROMETHEUS_DIR, name), tmp_path / name)
    alert_rules = tmp_path / "alert_rules.yml"
    alert_rules.write_text(edit(alert_rules.read_text()))
    with open(RULES_TEST) as f:
        text = f.read().replace("../../../deploy/prometheus/", "")
    (tmp_path / "alert_rules_test.yml").write_text(text)
    return str(tmp_path / "alert_rules_test.yml")


@pytest.mark.parametrize(
    "bug, failing",
    [
        # a threshold ten times too high: the 50% error case still fires, the 1.6% one does not
        (
            lambda t: t.replace(
                "model:error_ratio:rate5m > 0.01", "model:error_ratio:rate5m > 0.1"
            ),
            "TaxiModelErrorRateElevated",
        ),
        # the canary rule without its traffic floor pages on 10 requests
        (lambda t: t.replace("* 300 >= 50", "* 300 >= 0"), None),
        # a p99 in microseconds compared with a millisecond threshold
        (
            lambda t: t.replace(
                "model:latency_p99_ms:rate5m > 100", "model:latency_p99_ms:rate5m * 1000 > 100"
            ),
            "TaxiModelHighLatencyP99",
        ),
        # drift rule reading the skew series
        (lambda t: t.replace('kind="drift"', 'kind="skew"'), "TaxiServingDrift"),
    ],
)
def test_a_wrong_rule_fails_the_unit_tests(tool, tmp_path, bug, failing):
    original = open(os.path.join(PROMETHEUS_DIR, "alert_rules.yml")).read()
    assert bug(original) != original  # the edit applies
    result = _run(tool("promtool"), "test", "rules", _copy_with(tmp_path, bug))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    if failing:
        assert re.search(rf"alertname: {failing}\b", output), output
