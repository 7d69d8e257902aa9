"""deploy/alertmanager: the config loads, routes each alert, and inhibits as documented."""

import datetime
import os
import socket
import subprocess
import time

import pytest
import requests
import yaml

pytestmark = pytest.mark.slow  # runs amtool / Alertmanager

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTMANAGER_YML = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(HERE))),
    "deploy",
    "alertmanager",
    "alertmanager.yml",
)


def test_amtool_check_config(tool):
    result = subprocess.run(
        [tool("amtool"), "check-config", ALERTMANAGER_YML],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 inhibit rules" in result.stdout and "3 receivers" in result.stdout


@pytest.mark.parametrize(
    "labels, receiver",
    [
        (
            "alertname=TaxiModelHighErrorRate severity=critical action=rollback model_name=taxi",
            "taxi-action",
        ),
        (
            "alertname=TaxiCanaryAccuracyDivergence severity=critical action=canary_abort",
            "taxi-action",
        ),
        ("alertname=TaxiTrainingServingSkew severity=critical signal=skew", "taxi-critical"),
        ("alertname=TaxiServingDrift severity=warning signal=drift", "taxi-warning"),
        ("alertname=SomethingElse", "taxi-warning"),  # the root route
    ],
)
def test_amtool_routes(tool, labels, receiver):
    result = subprocess.run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_YML}",
            f"--verify.receivers={receiver}",
            *labels.split(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def _alert(name: str, **labels) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + datetime.timedelta(hours=1)).isoformat(),
    }


def test_inhibitions_in_a_real_alertmanager(start_alertmanager, tmp_path):
    with open(ALERTMANAGER_YML) as f:
        config = yaml.safe_load(f)
    with socket.socket() as s:  # a closed port: notifications (if any) go nowhere
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}/alerts"
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = nowhere
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    am = start_alertmanager(str(path))
    alerts = [
        _alert(
            "TaxiModelErrorRateElevated", severity="warning", signal="error_rate", model_name="taxi"
        ),
        _alert(
            "TaxiModelErrorRateElevated",
            severity="warning",
            signal="error_rate",
            model_name="other",
        ),
        _alert("TaxiServingDrift", severity="warning", signal="drift", model_name="taxi"),
        _alert(
            "TaxiModelHighErrorRate",
            severity="critical",
            signal="error_rate",
            model_name="taxi",
            action="rollback",
        ),
        _alert(
            "TaxiCanaryErrorRateDivergence",
            severity="critical",
            signal="canary",
            model_name="taxi",
            version="2",
            action="canary_abort",
        ),
    ]
    requests.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()

    def inhibited() -> dict:
        listed = requests.get(f"{am.url}/api/v2/alerts", timeout=10).json()
        return {
            (a["labels"]["alertname"], a["labels"]["model_name"]): bool(a["status"]["inhibitedBy"])
            for a in listed
        }

    deadline = time.monotonic() + 60
    state = inhibited()
    while time.monotonic() < deadline and not (
        state.get(("TaxiModelErrorRateElevated", "taxi"))
        and state.get(("TaxiModelHighErrorRate", "taxi"))
    ):
        time.sleep(0.5)
        state = inhibited()
    assert state == {
        ("TaxiModelErrorRateElevated", "taxi"): True,  # critical error rate of the same model
        ("TaxiModelErrorRateElevated", "other"): False,  # another model
        ("TaxiServingDrift", "taxi"): False,  # another signal
        ("TaxiModelHighErrorRate", "taxi"): True,  # the canary's errors: abort, not roll back
        ("TaxiCanaryErrorRateDivergence", "taxi"): False,
    }
