"""Rollback: target choice, config pinning, MLMD record, and a real server switching."""

import os
import sys
import time

import pytest
import requests

from monitoring import cli, rollback


def _config(path, base, policy=""):
    path.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' {policy} logging_config {{ log_collector_config {{ "
        f"filename_prefix: '/tmp/x' }} sampling_config {{ sampling_rate: 0.5 }} }} }} }}"
    )
    return str(path)


def test_choose_target():
    assert rollback.choose_target([1, 2, 3], [1, 2, 3], current=3) == 2
    assert rollback.choose_target([1, 3], [1, 2, 3], current=3) == 1  # 2 not blessed
    assert rollback.choose_target([1, 2, 3], [1, 3], current=3) == 1  # 2 not on disk
    assert rollback.choose_target([1, 2, 3], [1, 2, 3], current=2, named=3) == 3
    with pytest.raises(rollback.RollbackError, match="no blessed version older than 1"):
        rollback.choose_target([1, 2], [1, 2], current=1)
    with pytest.raises(rollback.RollbackError, match="version 7 is not a blessed version"):
        rollback.choose_target([1, 2], [1, 2], current=2, named=7)


def test_rollback_pins_config_and_records_in_mlmd(tmp_path, capsys, fake_store):
    base = tmp_path / "models"
    for version in (1, 2, 3):
        (base / str(version)).mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    config = _config(tmp_path / "models.config", base)
    argv = [
        "rollback",
        "--metadata",
        metadata,
        "--model-config",
        config,
        "--model-name",
        "m",
        "--reason",
        "p99 latency alert",
        "--requested-by",
        "on-call",
    ]
    assert cli.main(argv) == 0
    assert "rolled back m: 3 -> 2" in capsys.readouterr().out
    parsed = rollback.read_config(config).model_config_list.config[0]
    assert list(parsed.model_version_policy.specific.versions) == [2]
    assert parsed.logging_config.sampling_config.sampling_rate == 0.5  # rest kept
    assert sorted(os.listdir(base)) == ["1", "2", "3"]  # nothing deleted
    assert cli.main(argv) == 0  # again: from the pinned 2 to 1
    assert cli.main(argv + ["--to", "3"]) == 0  # roll forward to a named version
    history = rollback.history(rollback.writable_store(metadata))
    assert [(h["from_version"], h["to_version"]) for h in history] == [
        ("3", "2"),
        ("2", "1"),
        ("1", "3"),
    ]
    assert history[0]["reason"] == "p99 latency alert"
    assert history[0]["requested_by"] == "on-call"
    store = rollback.writable_store(metadata)
    events = store.get_events_by_execution_ids([history[0]["id"]])
    (artifact,) = store.get_artifacts_by_id([events[0].artifact_id])
    assert artifact.uri == "/pushed/2"


def test_rollback_refusals_change_nothing(tmp_path, capsys, fake_store):
    base = tmp_path / "models"
    (base / "1").mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1])
    config = _config(tmp_path / "models.config", base)
    before = open(config).read()
    common = ["rollback", "--model-config", config, "--model-name", "m", "--reason", "r"]
    assert cli.main(common + ["--metadata", metadata]) == 2
    assert cli.main(common + ["--metadata", str(tmp_path / "none.sqlite")]) == 2
    assert (
        cli.main(
            [
                "rollback",
                "--metadata",
                metadata,
                "--model-config",
                config,
                "--model-name",
                "other",
                "--reason",
                "r",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no blessed version older than 1" in err and "metadata not found" in err
    assert "model 'other' is not in the model config file" in err
    assert open(config).read() == before
    assert rollback.history(rollback.writable_store(metadata)) == []


def _predict(url):
    response = requests.post(f"{url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
    return response.json()["predictions"][0]


@pytest.mark.slow
@pytest.mark.e2e
def test_server_serves_the_rolled_back_version(tmp_path, start_server, fake_store):
    factory = sys.modules["model_factory"]
    base = tmp_path / "models"
    factory.save_half_plus_two(str(base / "1"), a=0.5, b=2.0)  # y(1) = 2.5
    factory.save_half_plus_two(str(base / "2"), a=0.5, b=3.0)  # y(1) = 3.5
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])
    config = _config(tmp_path / "models.config", base)
    server = start_server(
        [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"],
        ready_model="m",
    )
    assert _predict(server.url) == 3.5
    assert (
        cli.main(
            [
                "rollback",
                "--metadata",
                metadata,
                "--model-config",
                config,
                "--model-name",
                "m",
                "--reason",
                "test",
                "--requested-by",
                "pytest",
            ]
        )
        == 0
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _predict(server.url) != 2.5:
        time.sleep(0.2)
    assert _predict(server.url) == 2.5
    status = requests.get(f"{server.url}/v1/models/m", timeout=5).json()["model_version_status"]
    assert {s["version"]: s["state"] for s in status}.get("1") == "AVAILABLE"
    assert sorted(os.listdir(base)) == ["1", "2"]
