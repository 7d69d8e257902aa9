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
