"""`taxi-monitor exporter`: the checks' textfiles, version roles and baseline over HTTP."""

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitoring import cli, exporter, gauges
from monitoring.drift import Finding

MODEL_CONFIG = """model_config_list { config { name: 'taxi' base_path: '/models/taxi'
  model_platform: 'tensorflow' model_version_policy { specific { versions: 1 versions: 2 } }
  version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } } }
"""


def _samples(text: str) -> dict:
    """{(name, sorted labels): value} of an exposition text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def textfile_dir(tmp_path):
    directory = tmp_path / "textfiles"
    directory.mkdir()
    window = [
        Finding("skew", "fare", "jsd", 0.31, 0.1),
        Finding("drift", "fare", "jsd", 0.05, 0.1),
        Finding("drift", "payment_type", "linf", 0.22, 0.1),
    ]
    gauges.write_textfile(
        str(directory / "window.prom"),
        gauges.registry_for(
            "window", window, ["company"], {"ok": 90, "malformed": 2}, 1_700_000_000
        ),
    )
    gauges.write_textfile(
        str(directory / "spans.prom"),
        gauges.registry_for(
            "spans", [Finding("drift", "fare@2016", "jsd", 0.4, 0.1)], [], {}, 1_700_000_500
        ),
    )
    quality = {
        "overall": {"labelled": 400, "accuracy": 0.71, "auc": 0.8},
        "versions": {
            "1": {"labelled": 250, "accuracy": 0.8, "auc": 0.85},
            "2": {"labelled": 150, "accuracy": 0.56, "auc": None},
        },
        "counts": {"joined": 400, "unknown_request_id": 3},
    }
    gauges.write_textfile(
        str(directory / "quality.prom"), gauges.quality_registry(quality, 1_700_000_900)
    )
    (directory / "broken.prom").write_text("taxi_monitor_x{scope=window 1\n")
    (directory / "notes.txt").write_text("not a textfile")
    return directory


def _scrape(collector) -> dict:
    registry = CollectorRegistry()
    registry.register(collector)
    return _samples(generate_latest(registry).decode())


def test_collector_serves_textfiles_roles_and_baseline(textfile_dir, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(MODEL_CONFIG)
    got = _scrape(exporter.MonitorCollector(str(textfile_dir), "taxi", str(config), 0.8))

    def value(name, **labels):
        return got.get((name, tuple(sorted(labels.items()))))

    m = "taxi"
    assert value("taxi_monitor_features_exceeded", model_name=m, scope="window", kind="skew") == 1
    assert value("taxi_monitor_features_exceeded", model_name=m, scope="window", kind="drift") == 1
    assert value("taxi_monitor_features_exceeded", model_name=m, scope="spans", kind="drift") == 1
    assert (
        value(
            "taxi_monitor_feature_distance",
            model_name=m,
            scope="window",
            kind="skew",
            feature="fare",
            measure="jsd",
        )
        == 0.31
    )
    assert value("taxi_monitor_anomalous_features", model_name=m, scope="window") == 1
    assert value("taxi_monitor_records", model_name=m, scope="window", status="malformed") == 2
    assert (
        value("taxi_monitor_last_run_timestamp_seconds", model_name=m, scope="window")
        == 1_700_000_000
    )
    assert value("taxi_monitor_live_accuracy", model_name=m, version="all") == 0.71
    assert value("taxi_monitor_live_accuracy", model_name=m, version="2") == 0.56
    assert value("taxi_monitor_live_auc", model_name=m, version="2") is None  # unknown, not 0
    assert value("taxi_monitor_live_labelled", model_name=m, version="1") == 250
    assert value("taxi_monitor_version_role", model_name=m, version="1", role="stable") == 1
    assert value("taxi_monitor_version_role", model_name=m, version="2", role="canary") == 1
    assert value("taxi_monitor_baseline_accuracy", model_name=m, version="all") == 0.8
    assert value("taxi_monitor_textfile_errors", file="broken.prom") == 1
    assert value("taxi_monitor_textfile_errors", file="window.prom") == 0
    assert not [k for k in got if k[0] == "taxi_monitor_x"]  # nothing of the broken file
    assert not [k for k in got if "notes.txt" in str(k)]


def test_one_family_per_name_across_files(textfile_dir):
    registry = CollectorRegistry()
    registry.register(exporter.MonitorCollector(str(textfile_dir), "taxi"))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE taxi_monitor_features_exceeded gauge") == 1
    assert "taxi_monitor_version_role" not in text  # no model config given


def test_newest_file_wins_for_the_same_series(tmp_path):
    for name, value, mtime in (("a.prom", 5, 1000), ("b.prom", 7, 2000)):
        path = tmp_path / name
        path.write_text(
            f'# TYPE taxi_monitor_anomalous_features gauge\ntaxi_monitor_anomalous_features{{scope="window"}} {value}\n'
        )
        os.utime(path, (mtime, mtime))
    got = _scrape(exporter.MonitorCollector(str(tmp_path), "taxi"))
    key = ("taxi_monitor_anomalous_features", (("model_name", "taxi"), ("scope", "window")))
    assert got[key] == 7


def test_version_roles_errors(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(MODEL_CONFIG)
    assert exporter.version_roles(str(config), "taxi") == {"1": "stable", "2": "canary"}
    with pytest.raises(ValueError, match="model 'other' is not in"):
        exporter.version_roles(str(config), "other")


def test_cli_refuses_bad_input(tmp_path, capsys):
    assert cli.main(["exporter", "--textfile-dir", str(tmp_path / "none")]) == 2
    assert "--textfile-dir" in capsys.readouterr().err
    config = tmp_path / "models.config"
    config.write_text(MODEL_CONFIG)
    argv = [
        "exporter",
        "--textfile-dir",
        str(tmp_path),
        "--model-config",
        str(config),
        "--model-name",
        "x",
    ]
    assert cli.main(argv) == 2
    assert "model 'x' is not in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["exporter", "--textfile-dir", str(tmp_path), "--listen", "nohostport"])


@pytest.mark.slow
def test_http_scrape(textfile_dir):
    server, _ = exporter.serve(exporter.MonitorCollector(str(textfile_dir), "taxi"), "127.0.0.1", 0)
    try:
        response = requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
        response.raise_for_status()
        got = _samples(response.text)
        assert (
            got[("taxi_monitor_anomalous_features", (("model_name", "taxi"), ("scope", "window")))]
            == 1
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_cli_serves_until_sigterm(textfile_dir, tmp_path):
    repo = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    out = tmp_path / "exporter.out"
    argv = [
        "exporter",
        "--textfile-dir",
        str(textfile_dir),
        "--baseline-accuracy",
        "0.8",
        "--listen",
        "127.0.0.1:0",
    ]
    with open(out, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitoring.cli", *argv],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=repo,
        )
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            lines = [
                x for x in out.read_text().splitlines() if x.startswith("exporter listening on ")
            ]
            url = lines[0].split()[-1] if lines else None
            time.sleep(0.2)
        assert url, out.read_text()[-3000:]
        got = _samples(requests.get(url, timeout=10).text)
        key = ("taxi_monitor_baseline_accuracy", (("model_name", "taxi"), ("version", "all")))
        assert got[key] == 0.8
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.e2e
def test_baseline_is_each_versions_evaluation_accuracy(taxi_run, tmp_path):
    import tensorflow_model_analysis as tfma

    import lineage

    graph = lineage.Graph.load(lineage.open_store(taxi_run["metadata"]))
    version = max(lineage.pushed_versions(graph), key=int)
    (evaluation,) = lineage.version_lineage(graph, version)["evaluation"]
    expected = None  # the overall slice's binary_accuracy, read with TFMA's own API
    for slice_metrics in tfma.load_metrics(evaluation):
        if not slice_metrics.slice_key.single_slice_keys:
            for key_and_value in slice_metrics.metric_keys_and_values:
                key = key_and_value.key
                if (
                    key.name == "binary_accuracy"
                    and key.model_name in ("", "candidate")
                    and not key.is_diff
                ):
                    expected = key_and_value.value.double_value.value
    assert expected is not None
    config = tmp_path / "models.config"
    for policy in ("", f"model_version_policy {{ specific {{ versions: {version} }} }}"):
        config.write_text(
            f"model_config_list {{ config {{ name: 'taxi' base_path: '/m' "
            f"model_platform: 'tensorflow' {policy} }} }}"
        )
        collector = exporter.MonitorCollector(
            str(tmp_path), "taxi", str(config), metadata=taxi_run["metadata"]
        )
        got = _scrape(collector)
        key = ("taxi_monitor_baseline_accuracy", (("model_name", "taxi"), ("version", version)))
        assert got[key] == pytest.approx(expected, abs=1e-6), policy
    config.write_text(
        "model_config_list { config { name: 'taxi' base_path: '/m' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 12345 } } } }"
    )
    collector = exporter.MonitorCollector(
        str(tmp_path), "taxi", str(config), metadata=taxi_run["metadata"]
    )
    assert not [k for k in _scrape(collector) if k[0] == "taxi_monitor_baseline_accuracy"]
