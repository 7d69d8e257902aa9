"""Canary deploy/promote/abort against a real server, recorded in MLMD."""

import collections
import sys
import time

import pytest
import requests

from monitoring import canary, cli, rollback


def _outputs(url, n=60):
    seen = collections.Counter()
    with requests.Session() as session:
        for _ in range(n):
            r = session.post(f"{url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
            seen[r.json()["predictions"][0]] += 1
    return seen


def _wait_for_only(url, output, timeout=30):
    """Waits (bounded) until 20 requests in a row all give `output` (config polls are 1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and set(_outputs(url, 20)) != {output}:
        time.sleep(0.2)


def _executions(metadata):
    store = rollback.writable_store(metadata)
    return [
        (
            e.properties["action"].string_value,
            e.properties["stable"].string_value,
            e.properties["candidate"].string_value,
        )
        for e in store.get_executions_by_type(canary.EXECUTION_TYPE)
    ]


@pytest.mark.slow
@pytest.mark.e2e
def test_deploy_promote_and_abort(tmp_path, start_server, fake_store):
    factory = sys.modules["model_factory"]
    base = tmp_path / "models"
    for version, b in ((1, 2.0), (2, 3.0), (3, 4.0)):  # y(1) = 2.5, 3.5, 4.5
        factory.save_half_plus_two(str(base / str(version)), b=b)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' model_version_policy {{ specific {{ versions: 1 }} }} }} }}"
    )
    server = start_server(
        [
            f"--model_config_file={config}",
            "--canary_traffic_share=0.5",
            "--model_config_file_poll_wait_seconds=1",
        ],
        ready_model="m",
    )
    common = [
        "--metadata",
        metadata,
        "--model-config",
        str(config),
        "--model-name",
        "m",
        "--requested-by",
        "pytest",
    ]
    assert (
        cli.main(
            [
                "canary",
                "deploy",
                "--candidate",
                "2",
                "--server",
                server.url,
                "--timeout",
                "60",
                "--reason",
                "new span",
                *common,
            ]
        )
        == 0
    )
    assert set(_outputs(server.url)) == {2.5, 3.5}
    assert cli.main(["canary", "promote", "--reason", "ab: promote", *common]) == 0
    _wait_for_only(server.url, 3.5)
    assert set(_outputs(server.url)) == {3.5}
    assert (
        cli.main(
            [
                "canary",
                "deploy",
                "--candidate",
                "3",
                "--server",
                server.url,
                "--timeout",
                "60",
                "--reason",
                "next",
                *common,
            ]
        )
        == 0
    )
    assert cli.main(["canary", "abort", "--reason", "ab: rollback", *common]) == 0
    _wait_for_only(server.url, 3.5)
    assert set(_outputs(server.url)) == {3.5}
    assert cli.main(["canary", "abort", "--reason", "again", *common]) == 2  # none deployed
    assert _executions(metadata) == [
        ("deploy", "1", "2"),
        ("promote", "1", "2"),
        ("deploy", "2", "3"),
        ("abort", "2", "3"),
    ]


def _latest_config(tmp_path, versions):
    base = tmp_path / "models"
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        "model_platform: 'tensorflow' } }"
    )
    return str(config)


def test_pin_under_latest_keeps_what_the_server_serves(tmp_path, fake_store, monkeypatch):
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    config = _latest_config(tmp_path, [1, 2, 3])
    monkeypatch.setattr(canary, "available_versions", lambda url, model: [2])
    pinned = canary.pin(metadata, config, "m", "http://x", "before retraining", "pytest")
    assert pinned["stable"] == 2 and pinned["pinned"] and pinned["execution_id"]
    text = open(config).read()
    assert "versions: 2" in text and 'key: "stable"' in text
    again = canary.pin(metadata, config, "m", "http://x", "again", "pytest")
    assert again == {"stable": 2, "pinned": False, "execution_id": None}
    assert _executions(metadata) == [("pin", "2", "2")]


def test_served_stable_falls_back_to_the_previous_blessed_version(
    tmp_path, fake_store, monkeypatch
):
    config = _latest_config(tmp_path, [1, 2, 3])
    entry = rollback.model_entry(rollback.read_config(config), "m")
    monkeypatch.setattr(canary, "available_versions", lambda url, model: [3])
    assert canary.served_stable(entry, "http://x", "m", {1, 2, 3}, candidate=3) == 2
    assert canary.served_stable(entry, "http://x", "m", {1, 3}, candidate=3) == 1
    with pytest.raises(canary.CanaryError, match="no served version"):
        canary.served_stable(entry, "http://x", "m", {3}, candidate=3)


@pytest.mark.slow
@pytest.mark.e2e
def test_deploy_under_latest_pins_the_served_version(tmp_path, start_server, fake_store):
    factory = sys.modules["model_factory"]
    base = tmp_path / "models"
    factory.save_half_plus_two(str(base / "1"), b=2.0)  # y(1) = 2.5
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])
    config = _latest_config(tmp_path, [])
    server = start_server(
        [
            f"--model_config_file={config}",
            "--canary_traffic_share=0.5",
            "--model_config_file_poll_wait_seconds=1",
            "--file_system_poll_wait_seconds=1",
        ],
        ready_model="m",
    )
    factory.save_half_plus_two(str(base / "2"), b=3.0)  # pushed: `latest` serves it soon
    argv = ["canary", "deploy", "--candidate", "2", "--server", server.url, "--timeout", "60"]
    argv += ["--reason", "new span", "--metadata", metadata, "--model-config", config]
    assert cli.main(argv + ["--model-name", "m", "--requested-by", "pytest"]) == 0
    assert set(_outputs(server.url)) == {2.5, 3.5}  # 1 stable, 2 canary
    store = rollback.writable_store(metadata)
    (deploy,) = store.get_executions_by_type(canary.EXECUTION_TYPE)
    assert "version 1 pinned as stable" in deploy.properties["reason"].string_value
