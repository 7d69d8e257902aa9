"""Alert rules, de-duplication/cooldown, sinks (log file, local webhook), server metrics."""

import http.server
import json
import socket
import threading

import pytest

from monitoring import alerts, cli, server_metrics

METRICS = """\
:tensorflow:serving:request_count{{model_name="taxi",status="OK"}} {ok}
:tensorflow:serving:request_count{{model_name="taxi",status="INVALID_ARGUMENT"}} {bad}
:tensorflow:serving:request_count{{model_name="other",status="INTERNAL"}} 50
:tensorflow:serving:request_latency_bucket{{model_name="taxi",API="predict",entrypoint="REST",le="1000"}} {fast}
:tensorflow:serving:request_latency_bucket{{model_name="taxi",API="predict",entrypoint="REST",le="200000"}} {ok}
:tensorflow:serving:request_latency_bucket{{model_name="taxi",API="predict",entrypoint="REST",le="+Inf"}} {ok}
"""


def _metrics(ok, bad, fast):
    return METRICS.format(ok=ok, bad=bad, fast=fast)


def test_server_metrics_error_rate_and_p99():
    snap = server_metrics.snapshot(_metrics(ok=98, bad=2, fast=98), "taxi")
    assert snap["requests"] == 100 and snap["errors"] == 2
    assert server_metrics.error_rate(snap) == 0.02
    assert server_metrics.latency_quantile_ms(snap, 0.99) == 1.0
    slow = server_metrics.snapshot(_metrics(ok=200, bad=2, fast=100), "taxi")
    window = server_metrics.delta(slow, snap)
    assert window["requests"] == 102 and server_metrics.error_rate(window) == 0
    assert server_metrics.latency_quantile_ms(window, 0.99) == 200.0
    restarted = server_metrics.snapshot(_metrics(ok=5, bad=0, fast=5), "taxi")
    assert server_metrics.delta(restarted, slow) == restarted
    empty = server_metrics.snapshot("", "taxi")
    assert server_metrics.error_rate(empty) is None
    assert server_metrics.latency_quantile_ms(empty) is None


def test_server_metrics_of_the_real_exposition():
    from serving.metrics import ServingMetrics

    metrics = ServingMetrics()  # renders TYPE lines: the parser then names counters *_total
    for _ in range(3):
        metrics.record_request("taxi", 1, "predict", "REST", "OK", 800.0)
    metrics.record_request("taxi", 1, "predict", "REST", "INVALID_ARGUMENT")
    text = metrics.render().decode()
    snap = server_metrics.snapshot(text, "taxi")
    assert snap["requests"] == 4 and snap["errors"] == 1
    assert server_metrics.latency_quantile_ms(snap, 0.99) == pytest.approx(1.102)
    assert server_metrics.version_snapshots(text, "taxi")["1"]["requests"] == 4


def test_evaluate_and_deduplicate_with_cooldown():
    rules = [alerts.Rule("drift", "drift_features", ">", 0), alerts.Rule("p99", "p99", ">", 10)]
    state = {}
    firing = alerts.evaluate(rules, {"drift_features": 2, "p99": None}, "taxi", 100)
    assert [a.rule for a in firing] == ["drift"]
    assert alerts.deduplicate(firing, state, "taxi", cooldown=60, now=100) == firing
    again = alerts.evaluate(rules, {"drift_features": 3}, "taxi", 130)
    assert alerts.deduplicate(again, state, "taxi", 60, 130) == []  # same incident
    later = alerts.evaluate(rules, {"drift_features": 3}, "taxi", 170)
    assert alerts.deduplicate(later, state, "taxi", 60, 170) == later  # cooldown over
    assert state["incidents"]["drift/taxi"]["count"] == 3
    assert alerts.deduplicate([], state, "taxi", 60, 180) == []  # resolved: incident closed
    assert state["incidents"] == {}
    reopened = alerts.evaluate(rules, {"drift_features": 1}, "taxi", 190)
    assert alerts.deduplicate(reopened, state, "taxi", 60, 190) == reopened


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        self.received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A local receiver on 127.0.0.1:<free port>; yields (url, received bodies)."""
    _Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/alerts"


def _summary(tmp_path, skewed=("fare",)):
    path = tmp_path / "summary.json"
    findings = [
        {
            "kind": "skew",
            "feature": f,
            "measure": "jsd",
            "value": 0.5,
            "threshold": 0.1,
            "exceeded": True,
        }
        for f in skewed
    ]
    findings.append(
        {
            "kind": "drift",
            "feature": "fare",
            "measure": "jsd",
            "value": 0.01,
            "threshold": 0.1,
            "exceeded": False,
        }
    )
    path.write_text(json.dumps({"findings": findings}))
    return str(path)


@pytest.mark.slow
def test_alert_command_notifies_once_then_cooldown(tmp_path, webhook, capsys):
    url, received = webhook
    metrics = tmp_path / "metrics.txt"
    metrics.write_text(_metrics(ok=90, bad=10, fast=90))
    quality = tmp_path / "quality.json"
    quality.write_text(json.dumps({"overall": {"accuracy": 0.6}}))
    log_file = tmp_path / "alerts" / "alerts.log"
    argv = [
        "alert",
        "--state",
        str(tmp_path / "state.json"),
        "--summary",
        _summary(tmp_path),
        "--metrics-file",
        str(metrics),
        "--quality",
        str(quality),
        "--baseline-accuracy",
        "0.8",
        "--log-file",
        str(log_file),
        "--webhook",
        url,
    ]
    assert cli.main(argv) == cli.EXIT_FOUND
    ((content_type, body),) = received
    assert content_type == "application/json"
    assert sorted(a["rule"] for a in body["alerts"]) == [
        "error rate",
        "live quality drop",
        "training-serving skew",
    ]
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert len(lines) == 3 and all(line["scope"] == "taxi" for line in lines)

    metrics.write_text(_metrics(ok=190, bad=20, fast=190))  # still 10% errors since last check
    assert cli.main(argv) == cli.EXIT_FOUND  # still firing: exit code says so ...
    assert len(received) == 1 and len(log_file.read_text().splitlines()) == 3  # ... no repeat
    assert "suppressed" in capsys.readouterr().out

    metrics.write_text(_metrics(ok=290, bad=20, fast=290))  # no new errors
    assert cli.main(argv + ["--cooldown", "0"]) == cli.EXIT_FOUND
    (_, repeat) = received[1]
    assert "error rate" not in [a["rule"] for a in repeat["alerts"]]


def test_quiet_signals_exit_0(tmp_path):
    metrics = tmp_path / "metrics.txt"
    metrics.write_text(_metrics(ok=100, bad=0, fast=100))
    assert (
        cli.main(
            [
                "alert",
                "--state",
                str(tmp_path / "s.json"),
                "--summary",
                _summary(tmp_path, skewed=()),
                "--metrics-file",
                str(metrics),
            ]
        )
        == 0
    )


@pytest.mark.slow
def test_failed_webhook_is_reported_and_retried(tmp_path, capsys):
    state = tmp_path / "state.json"
    argv = [
        "alert",
        "--state",
        str(state),
        "--summary",
        _summary(tmp_path),
        "--webhook",
        _closed_port_url(),
    ]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "webhook" in capsys.readouterr().err
    assert not state.exists()  # nothing recorded as notified: the next run sends again


@pytest.mark.slow
def test_unreadable_inputs_are_problems(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert (
        cli.main(
            [
                "alert",
                "--state",
                str(tmp_path / "s.json"),
                "--summary",
                str(bad),
                "--metrics-url",
                _closed_port_url(),
            ]
        )
        == cli.EXIT_BAD_INPUT
    )
    err = capsys.readouterr().err
    assert "monitor summary" in err and "server metrics" in err
