"""`taxi-monitor`: skew/drift, live quality, alerts, canary, watch and rollback of the served model.

    taxi-monitor window --logs <filename_prefix> --start 2026-11-25T10:00 --end 2026-11-25T11:00 \
        --metadata tfx_runs/metadata.sqlite --out monitoring_out
    taxi-monitor spans --metadata tfx_runs/metadata.sqlite --out monitoring_out

A thin dispatch: one module per command group (`checks`, `quality`,
`alerting`, `deploy`; the scenario is monitoring/scenario/), each with a
`run_<command>(...)` function callable without argv; the logic is in the
monitoring library (monitoring/window.py, live_quality.py, alert_check.py, ...).

`window` (monitoring/window.py) reads the request logs of `[start, end)`,
computes TFDV statistics, validates them against the schema's SERVING
environment, measures skew against the training statistics of the served
version's newest span (found in ML Metadata) and drift against the previous
window of the same length.
`spans` compares the statistics of consecutive ingested spans.

Each run writes into `<out>/<name>/`: `anomalies/Split-<split>/SchemaDiff.pb`,
`statistics/Split-<split>/FeatureStats.pb` (window only), `report.md`,
`summary.json` and `metrics.prom` (also to `--textfile` for the node exporter).

`alert` evaluates rules on skew, drift, error rate, p99 latency and live
quality, and notifies each incident once (then again after `--cooldown`) to
a log file and/or a webhook (see monitoring/alert_check.py).

`quality` joins late labels (CSV request_id,label) to the logged predictions
of a window: accuracy and AUC per model version (see monitoring/live_quality.py).

`ab` gives the canary's verdict against the stable version on live accuracy
(promote / rollback / insufficient data; see monitoring/ab.py); exit 1 means
rollback.

`canary deploy|promote|abort` moves the stable/canary labels in the server's
model config file, recorded in MLMD (see monitoring/canary.py); with
`--k8s-manifest` it rewrites the Kubernetes HTTPRoute and version pins
instead (`route` changes the weight / mirror share; monitoring/k8s_route.py).

`watch` runs the pipeline when a new span arrives or a drift/skew incident is
open, and deploys a newly pushed version as the canary; while a canary is
live it promotes it, aborts it or holds (late labels, A/B test, guard rails;
see monitoring/watch.py and monitoring/decide.py), writing an A/B report.

`monitor-pipeline` runs the `window` check as a TFX pipeline
(components/request_log_monitor, pipeline/monitoring_runner.py): ExampleStatistics and ExampleAnomalies in
the training pipeline's MLMD, linked to the training statistics.

`scenario` replays the spans with an injected drift through detection, alert,
retrain, canary and decision against a real server (see monitoring/scenario/).

`shadow` compares a shadow version with the stable one on the mirrored
requests: agreement, |difference|, latency, and with late labels both
accuracies and AUCs on the same requests (see monitoring/shadow.py); exit 1
when the shadow is rejected.

`rollback` pins the model in the server's model config file to the previous
blessed version (or `--to V`) and records a `Rollback` execution in MLMD
(see monitoring/rollback.py).

`exporter` serves the checks' gauges (their `--textfile` files) and the
version roles over HTTP for Prometheus (see monitoring/exporter.py);
`alert-receiver` is Alertmanager's webhook: it logs alerts and runs their
rollback or canary abort once per alert episode (see monitoring/alert_receiver.py
and deploy/prometheus, deploy/alertmanager).

Exit codes: 0 nothing found / done; 1 something found (anomalies, skew or
drift; an alert rule firing; an `ab` verdict of rollback); 2 bad input or an
action not done (no log files, an empty window, malformed records above
`--max-malformed-fraction`, malformed labels or labels for unknown request
ids, unknown version or metadata, a failed sink, pipeline or deploy) - always
with a message on stderr and the counts in the report.
"""

from __future__ import annotations

import argparse
import sys

from monitoring.cli.common import (  # noqa: F401 - the package's interface
    DEFAULT_SCHEMA,
    EXIT_BAD_INPUT,
    EXIT_FOUND,
    EXIT_OK,
    parse_time,
)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, registered by its command group's module."""
    from monitoring.cli import alerting, checks, deploy, quality
    from monitoring.cli.common import calls
    from monitoring.scenario import replay

    parser = argparse.ArgumentParser(prog="taxi-monitor", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    checks.add_parsers(sub)
    quality.add_parsers(sub)
    alerting.add_parsers(sub)
    deploy.add_parsers(sub)
    sc = sub.add_parser(
        "scenario",
        help="replay: drift -> detection -> alert -> retrain -> canary -> decision",
    )
    replay.add_arguments(sc)
    sc.set_defaults(func=calls(replay.run_command))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
