"""End to end: Prometheus -> Alertmanager -> our receiver -> rollback, all real.

A model server serves version 3 of `taxi`, which fails half its requests (it
rejects negative inputs and the client sends every second request with one);
versions 1 and 2 are healthy. Real `prometheus` and `prometheus-alertmanager`
(Debian's packages) run the checked-in configuration, with only the timings
shortened (scrape and evaluation every second, `for:` 5 s, Alertmanager
group wait 1 s and repeat interval 3 s) and the targets pointed at this
test's loopback ports. TaxiModelHighErrorRate fires, reaches
`taxi-monitor alert-receiver`, which rolls back: exactly one `Rollback`
execution in MLMD (3 -> 2; a receiver acting on every repeat would go on
to 1) although Alertmanager repeats the alert, and version 2 answers every
request after. The monitor's exporter serves a skewed window's gauges, and
TaxiTrainingServingSkew reaches the receiver as well (logged, no action).
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from monitoring import exporter, gauges, rollback
from monitoring.drift import Finding

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DEPLOY = os.path.join(REPO_ROOT, "deploy")
DEADLINE_S = 240  # typically done in 15-20 s; generous for a loaded machine


def save_faulty_model(export_dir: str) -> None:
    """y = 0.5 x + 3, but a negative x fails the request (INVALID_ARGUMENT)."""
    import tensorflow as tf

    class Faulty(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def predict(self, x):
            check = tf.debugging.assert_non_negative(x, message="injected failure")
            with tf.control_dependencies([check]):
                return {"y": 0.5 * x + 3.0}

    module = Faulty()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.predict})


def _shortened_rules(tmp_path) -> None:
    """The checked-in rules with every `for:` at 5 s (expressions unchanged)."""
    for name in ("recording_rules.yml", "alert_rules.yml"):
        with open(os.path.join(DEPLOY, "prometheus", name)) as f:
            rules = yaml.safe_load(f)
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "5s"
        (tmp_path / name).write_text(yaml.safe_dump(rules, sort_keys=False))


def _prometheus_config(tmp_path, server_target, exporter_target, alertmanager_target) -> str:
    with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager_target]}]
    targets = {"taxi-model-server": server_target, "taxi-monitor": exporter_target}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    _shortened_rules(tmp_path)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _alertmanager_config(tmp_path, receiver_url) -> str:
    with open(os.path.join(DEPLOY, "alertmanager", "alertmanager.yml")) as f:
        config = yaml.safe_load(f)
    routes = [config["route"], *config["route"]["routes"]]
    for route in routes:
        for key, value in (
            ("group_wait", "1s"),
            ("group_interval", "2s"),
            ("repeat_interval", "3s"),
        ):
            if key in route or route is config["route"]:
                route[key] = value
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = receiver_url
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


class ReceiverProcess:
    """`taxi-monitor alert-receiver` on a port the OS chooses (read from its output)."""

    def __init__(self, metadata, model_config, log_file, output_path):
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        self.output_path = output_path
        self._out = open(output_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitoring.cli",
                "alert-receiver",
                f"--metadata={metadata}",
                f"--model-config={model_config}",
                f"--log-file={log_file}",
                "--listen=127.0.0.1:0",
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )

    def url(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.output_path) as f:
                for line in f:
                    if line.startswith("alert receiver listening on "):
                        return line.split()[-1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"receiver did not start: {open(self.output_path).read()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def start_receiver(tmp_path):
    started = []

    def start(*args):
        receiver = ReceiverProcess(*args, str(tmp_path / f"receiver{len(started)}.out"))
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def monitor_exporter(tmp_path):
    """The exporter on a textfile as `taxi-monitor window --textfile` writes it: fare skewed."""
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    findings = [
        Finding("skew", "fare", "jsd", 0.4, 0.1),
        Finding("skew", "company", "linf", 0.02, 0.1),
    ]
    registry = gauges.registry_for("window", findings, [], {"ok": 100}, time.time())
    gauges.write_textfile(str(textfiles / "window.prom"), registry)
    server, _ = exporter.serve(exporter.MonitorCollector(str(textfiles), "taxi"), "127.0.0.1", 0)
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _traffic(url: str, stop: threading.Event, answers: list) -> None:
    """x = 1, -1, 1, -1, ... to the model until `stop`; records (x, status, y)."""
    x = 1.0
    while not stop.is_set():
        try:
            r = requests.post(
                f"{url}/v1/models/taxi:predict", json={"instances": [[x]]}, timeout=10
            )
            y = r.json()["predictions"][0][0] if r.ok else None
            answers.append((x, r.status_code, y))
        except (requests.RequestException, ValueError, KeyError, IndexError):
            answers.append((x, None, None))
        x = -x
        stop.wait(0.02)


def _poll(what: str, check, deadline: float, interval: float = 0.5):
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _log_records(path) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_error_alert_rolls_back_once(
    tmp_path,
    fake_store,
    start_server,
    start_receiver,
    start_prometheus,
    start_alertmanager,
    monitor_exporter,
    tool,
):
    factory = sys.modules["model_factory"]
    base = tmp_path / "models" / "taxi"
    factory.save_half_plus_two(str(base / "1"), a=0.5, b=2.0)  # y(1) = 2.5
    factory.save_half_plus_two(str(base / "2"), a=0.5, b=1.0)  # y(1) = 1.5
    save_faulty_model(str(base / "3"))  # y(1) = 3.5, negative x fails
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    model_config = tmp_path / "models.config"
    model_config.write_text(
        f"model_config_list {{ config {{ name: 'taxi' base_path: '{base}' model_platform: 'tensorflow' }} }}"
    )
    monitoring_config = tmp_path / "monitoring.config"
    monitoring_config.write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
    )
    log_file = tmp_path / "alerts.jsonl"

    receiver = start_receiver(metadata, str(model_config), str(log_file))
    server = start_server(
        [
            f"--model_config_file={model_config}",
            "--model_config_file_poll_wait_seconds=1",
            f"--monitoring_config_file={monitoring_config}",
        ],
        ready_model="taxi",
    )
    alertmanager = start_alertmanager(_alertmanager_config(tmp_path, receiver.url()))
    prometheus = start_prometheus(
        _prometheus_config(
            tmp_path,
            f"127.0.0.1:{server.rest_port}",
            monitor_exporter,
            f"127.0.0.1:{alertmanager.port}",
        )
    )
    deadline = time.monotonic() + DEADLINE_S
    stop, answers = threading.Event(), []
    traffic = threading.Thread(target=_traffic, args=(server.url, stop, answers), daemon=True)
    traffic.start()
    started = time.monotonic()
    try:

        def query(expr):
            r = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
            return r.json()["data"]["result"] if r.ok else []

        # Both targets scraped, and the recorded error ratio of version 3 is about one half.
        _poll("both targets up", lambda: len(query("up == 1")) == 2, deadline)
        # (The first evaluations may see the OK series before the error series.)
        ratio = _poll(
            "the error ratio",
            lambda: query('model:error_ratio:rate5m{model_name="taxi"} > 0.3'),
            deadline,
        )
        assert 0.3 < float(ratio[0]["value"][1]) < 0.7

        rollbacks = _poll(
            "the rollback in MLMD",
            lambda: rollback.history(rollback.writable_store(metadata)),
            deadline,
        )
        (done,) = rollbacks
        print(
            f"rollback recorded {time.monotonic() - started:.1f} s after the faulty traffic began"
        )
        assert (done["from_version"], done["to_version"]) == ("3", "2")
        assert done["requested_by"].startswith("alertmanager:TaxiModelHighErrorRate/")
        episode = done["requested_by"].removeprefix("alertmanager:TaxiModelHighErrorRate/")

        # Version 2 serves every request, the negative ones too.
        mark = len(answers)
        _poll(
            "version 2 answering",
            lambda: (
                [a for a in answers[mark:] if a[0] < 0 and a[1] == 200]
                and [a for a in answers[mark:] if a[0] > 0 and a[2] == 1.5]
            ),
            deadline,
        )

        # Alertmanager repeats the still-firing alert (repeat_interval 3 s); the receiver does nothing more.
        def repeats():
            records = [
                r
                for r in _log_records(log_file)
                if r["alertname"] == "TaxiModelHighErrorRate"
                and r["status"] == "firing"
                and f"{r['fingerprint']}@{r['startsAt']}" == episode
            ]
            return len(records) >= 3 and records

        records = _poll("repeated notifications", repeats, deadline)
        assert records[0]["handled"].startswith("rolled back taxi 3 -> 2")
        assert {r["handled"] for r in records[1:]} == {"already done for this episode"}
        assert len(rollback.history(rollback.writable_store(metadata))) == 1

        # The monitor's path: the skew gauge, scraped from the exporter, alerts too (logged only).
        def skew_alerts():
            return [
                r
                for r in _log_records(log_file)
                if r["alertname"] == "TaxiTrainingServingSkew" and r["status"] == "firing"
            ]

        (skew, *_) = _poll("the skew alert", skew_alerts, deadline)
        assert skew["labels"]["model_name"] == "taxi" and "handled" not in skew
        assert skew["summary"] == "taxi: 1 feature(s) skewed against the training data"
    finally:
        stop.set()
        traffic.join(timeout=30)
