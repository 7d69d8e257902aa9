"""Shadow before canary against a real server: a bad candidate is rejected, a good one moves on."""

import sys
import time

import pytest
import requests

from monitoring import canary, rollback, shadow, shadow_deploy


def _send(url, prefix, n):
    """n requests with ids <prefix><i> and x = i + 1; returns the answers."""
    answers = []
    with requests.Session() as session:
        for i in range(n):
            r = session.post(
                f"{url}/v1/models/m:predict",
                json={"instances": [[float(i + 1)]]},
                headers={"X-Request-Id": f"{prefix}{i}"},
                timeout=60,
            )
            answers.append(r.json()["predictions"][0][0])
    return answers


def _wait_rows(logs, candidate, n):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [r for r in shadow.read(logs).rows if r["shadow_version"] == candidate]
        if len(rows) >= n:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} shadow rows of version {candidate} after 60 s")


@pytest.mark.slow
@pytest.mark.e2e
def test_shadow_rejects_a_bad_candidate_then_passes_a_good_one_to_canary(
    tmp_path, start_server, fake_store
):
    factory = sys.modules["model_factory"]
    base = tmp_path / "models"
    factory.save_half_plus_two(str(base / "1"))  # stable: 0.5 x + 2 (positive)
    factory.save_half_plus_two(str(base / "2"), a=-1.0, b=0.0)  # bad: -x
    factory.save_half_plus_two(str(base / "3"), a=1.0, b=0.0)  # good: x
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' model_version_policy {{ specific {{ versions: 1 }} }} }} }}"
    )
    logs = str(tmp_path / "shadow" / "m")
    server = start_server(
        [
            f"--model_config_file={config}",
            "--model_config_file_poll_wait_seconds=1",
            "--shadow_traffic_share=1.0",
            "--shadow_version_label=shadow",
            f"--shadow_log_prefix={logs}",
        ],
        ready_model="m",
    )
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "request_id,label\n" + "".join(f"{p}{i},1\n" for p in "ab" for i in range(30))
    )
    policy = shadow.Policy(min_rows=30, max_error_rate=0.0, min_labelled=30, max_accuracy_drop=0.02)
    args = (metadata, str(config), "m")

    deployed = shadow_deploy.deploy(*args, 2, server.url, "new span", "pytest", timeout=60)
    assert (deployed["stable"], deployed["candidate"]) == (1, 2)
    assert _send(server.url, "a", 30) == [0.5 * (i + 1) + 2 for i in range(30)]  # stable only
    _wait_rows(logs, 2, 30)
    rejected = shadow_deploy.evaluate(
        *args, logs, str(labels), server.url, "pytest", policy, timeout=60
    )
    assert rejected["verdict"] == "reject" and rejected["canary"] is None
    assert rejected["figures"]["stable_accuracy"] == 1.0
    assert rejected["figures"]["shadow_accuracy"] == 0.0
    assert shadow_deploy.live(str(config), "m") is None

    shadow_deploy.deploy(*args, 3, server.url, "next span", "pytest", timeout=60)
    assert _send(server.url, "b", 30) == [0.5 * (i + 1) + 2 for i in range(30)]
    _wait_rows(logs, 3, 30)
    passed = shadow_deploy.evaluate(
        *args, logs, str(labels), server.url, "pytest", policy, timeout=60
    )
    assert passed["verdict"] == "pass", passed["why"]
    assert passed["figures"]["shadow_accuracy"] == 1.0
    assert (passed["canary"]["stable"], passed["canary"]["candidate"]) == (1, 3)
    assert canary.deployed(*args)["candidate"] == 3

    store = rollback.writable_store(metadata)
    recorded = [
        tuple(e.properties[k].string_value for k in ("action", "stable", "candidate"))
        for e in store.get_executions_by_type(shadow_deploy.EXECUTION_TYPE)
    ]
    assert recorded == [
        ("deploy", "1", "2"),
        ("reject", "1", "2"),
        ("deploy", "1", "3"),
        ("pass", "1", "3"),
    ]
