"""`taxi-monitor alert | exporter | alert-receiver`: embedded alerting and the Prometheus side."""

from __future__ import annotations

import logging
import os
import signal
import threading

from core.constants import MODEL_NAME
from monitoring import alert_check, alert_receiver, config, exporter, rollback
from monitoring.cli.common import calls, error, parse_listen, print_problems


def add_parsers(sub) -> None:
    """Registers `alert`, `exporter` and `alert-receiver` on `sub` (argparse subparsers)."""
    a = sub.add_parser("alert", help="evaluate alert rules and notify (log file, webhook)")
    a.add_argument("--state", required=True, help="state file (open incidents, last scrape)")
    a.add_argument("--scope", default=MODEL_NAME, help="model name: incident scope and metrics")
    a.add_argument("--summary", help="summary.json of a `monitor window` run")
    a.add_argument("--metrics-url", help="server's /monitoring/prometheus/metrics URL")
    a.add_argument("--metrics-file", help="a saved copy of the server's metrics")
    a.add_argument("--quality", help="summary.json of a `monitor quality` run")
    a.add_argument("--baseline-accuracy", type=float, help="accuracy the drop is measured from")
    a.add_argument("--max-skew-features", type=float, default=config.MAX_SKEW_FEATURES)
    a.add_argument("--max-drift-features", type=float, default=config.MAX_DRIFT_FEATURES)
    a.add_argument("--max-error-rate", type=float, default=config.MAX_ERROR_RATE)
    a.add_argument("--max-p99-ms", type=float, default=config.MAX_P99_MS)
    a.add_argument("--max-accuracy-drop", type=float, default=config.MAX_ACCURACY_DROP)
    a.add_argument(
        "--cooldown",
        type=float,
        default=config.ALERT_COOLDOWN_SECONDS,
        help="seconds between repeats",
    )
    a.add_argument("--log-file", help="append alerts here (JSON lines)")
    a.add_argument("--webhook", help="POST alerts as JSON to this URL")
    a.set_defaults(func=calls(run_alert))
    e = sub.add_parser("exporter", help="serve the monitor's gauges over HTTP (Prometheus)")
    e.add_argument(
        "--textfile-dir", required=True, help="folder of the checks' --textfile *.prom files"
    )
    e.add_argument("--model-name", default=MODEL_NAME, help="added as label model_name")
    e.add_argument("--model-config", help="the server's --model_config_file (version roles)")
    e.add_argument(
        "--baseline-accuracy",
        type=float,
        help="live-quality baseline of all versions together (version label 'all')",
    )
    e.add_argument(
        "--metadata",
        help="ML Metadata store: each configured version's evaluation accuracy as its baseline",
    )
    e.add_argument(
        "--listen",
        type=parse_listen,
        default=config.EXPORTER_LISTEN,
        help=_listen_help(config.EXPORTER_LISTEN),
    )
    e.set_defaults(func=calls(run_exporter))
    r = sub.add_parser(
        "alert-receiver", help="Alertmanager webhook: log alerts, roll back / abort a canary"
    )
    r.add_argument("--metadata", required=True, help="ML Metadata store (actions are recorded)")
    r.add_argument("--model-config", required=True, help="the server's --model_config_file")
    r.add_argument("--log-file", help="append every received alert here (JSON lines)")
    r.add_argument(
        "--listen",
        type=parse_listen,
        default=config.ALERT_RECEIVER_LISTEN,
        help=_listen_help(config.ALERT_RECEIVER_LISTEN),
    )
    r.set_defaults(func=calls(run_alert_receiver))


def _listen_help(default: tuple[str, int]) -> str:
    return f"host:port (default {default[0]}:{default[1]}; port 0: any free port)"


def run_alert(
    state: str,
    *,
    scope: str = MODEL_NAME,
    summary: str | None = None,
    metrics_url: str | None = None,
    metrics_file: str | None = None,
    quality: str | None = None,
    baseline_accuracy: float | None = None,
    max_skew_features: float = config.MAX_SKEW_FEATURES,
    max_drift_features: float = config.MAX_DRIFT_FEATURES,
    max_error_rate: float = config.MAX_ERROR_RATE,
    max_p99_ms: float = config.MAX_P99_MS,
    max_accuracy_drop: float = config.MAX_ACCURACY_DROP,
    cooldown: float = config.ALERT_COOLDOWN_SECONDS,
    log_file: str | None = None,
    webhook: str | None = None,
) -> int:
    """`alert`: one run of the rules (monitoring/alert_check.py).

    Exit 1 while a rule fires, 2 when a signal could not be read or a sink failed.
    """
    result = alert_check.run(
        state,
        scope=scope,
        limits=alert_check.Limits(
            max_skew_features, max_drift_features, max_error_rate, max_p99_ms, max_accuracy_drop
        ),
        cooldown=cooldown,
        log_file=log_file,
        webhook=webhook,
        summary=summary,
        metrics_url=metrics_url,
        metrics_file=metrics_file,
        quality=quality,
        baseline_accuracy=baseline_accuracy,
    )
    print("signals: " + ", ".join(f"{k}={v}" for k, v in sorted(result.signals.items())))
    for alert in result.firing:
        sent = "notified" if alert in result.notified else "suppressed (open incident, cooldown)"
        print(f"{alert.message()} - {sent}")
    print_problems(result.problems)
    return result.outcome


def run_exporter(
    textfile_dir: str,
    *,
    model_name: str = MODEL_NAME,
    model_config: str | None = None,
    baseline_accuracy: float | None = None,
    metadata: str | None = None,
    listen: tuple[str, int] = config.EXPORTER_LISTEN,
) -> int:
    """`exporter`: serves the gauges until SIGTERM (monitoring/exporter.py)."""
    if not os.path.isdir(textfile_dir):
        return error(f"--textfile-dir {textfile_dir} is not a directory")
    if model_config:
        try:
            exporter.version_roles(model_config, model_name)
        except (OSError, ValueError) as e:
            return error(f"--model-config: {e}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if metadata and not model_config:
        return error("--metadata needs --model-config (which versions are served)")
    collector = exporter.MonitorCollector(
        textfile_dir, model_name, model_config, baseline_accuracy, metadata
    )
    host, port = listen
    server, _ = exporter.serve(collector, host, port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"exporter listening on http://{host}:{server.server_port}/metrics", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def run_alert_receiver(
    metadata: str,
    model_config: str,
    *,
    log_file: str | None = None,
    listen: tuple[str, int] = config.ALERT_RECEIVER_LISTEN,
) -> int:
    """`alert-receiver`: Alertmanager's webhook until SIGTERM (monitoring/alert_receiver.py)."""
    if not os.path.isfile(model_config):
        return error(f"--model-config {model_config} not found")
    try:
        rollback.writable_store(metadata)  # fail now, not at the first alert
    except rollback.RollbackError as e:
        return error(f"--metadata: {e}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = listen
    server = alert_receiver.serve(
        alert_receiver.Receiver(metadata, model_config, log_file), host, port
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"alert receiver listening on http://{host}:{server.server_port}/alerts", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
