"""Canary routing through the server: `--canary_traffic_share` with stable/canary labels."""

import collections

import model_factory
import pytest
import requests

pytestmark = [pytest.mark.slow, pytest.mark.ours]


def test_unversioned_requests_are_split_between_stable_and_canary(
    tmp_path, start_server, monitoring_config
):
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))  # y(1) = 2.5
    model_factory.save_half_plus_two(str(base / "2"), b=3.0)  # y(1) = 3.5
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' model_version_policy {{ all {{}} }} "
        f"version_labels {{ key: 'stable' value: 1 }} version_labels {{ key: 'canary' value: 2 }} "
        f"}} }}"
    )
    server = start_server(
        [
            f"--model_config_file={config}",
            "--canary_traffic_share=0.3",
            "--allow_version_labels_for_unavailable_models=true",
            f"--monitoring_config_file={monitoring_config}",
        ],
        ready_model="m",
    )
    seen = collections.Counter()
    with requests.Session() as session:
        for _ in range(200):
            response = session.post(
                f"{server.url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=10
            )
            seen[response.json()["predictions"][0]] += 1
        pinned = session.post(
            f"{server.url}/v1/models/m/versions/1:predict", json={"instances": [1.0]}, timeout=10
        ).json()
    assert pinned == {"predictions": [2.5]}
    assert set(seen) == {2.5, 3.5}
    assert 30 <= seen[3.5] <= 90  # 30% of 200, binomial sd ~6.5
    metrics = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    per_version = [
        line
        for line in metrics.splitlines()
        if line.startswith(":serving:model_version_request_count")
    ]
    assert any('version="2"' in line for line in per_version)
    assert any('version="1"' in line for line in per_version)
