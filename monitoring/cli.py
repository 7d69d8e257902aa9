"""`monitor`: skew/drift, live quality, alerts, canary, watch and rollback of the served model.

    monitor window --logs <filename_prefix> --start 2026-11-25T10:00 --end 2026-11-25T11:00 \
        --metadata tfx_runs/metadata.sqlite --out monitoring_out
    monitor spans --metadata tfx_runs/metadata.sqlite --out monitoring_out

`window` reads the request logs of `[start, end)`, computes TFDV statistics,
validates them against the schema's SERVING environment, measures skew
against the training statistics of the served version's newest span (found
in ML Metadata) and drift against the previous window of the same length.
`spans` compares the statistics of consecutive ingested spans.

Each run writes into `<out>/<name>/`: `anomalies/Split-<split>/SchemaDiff.pb`,
`statistics/Split-<split>/FeatureStats.pb` (window only), `report.md`,
`summary.json` and `metrics.prom` (also to `--textfile` for the node exporter).

`alert` evaluates rules on skew, drift, error rate, p99 latency and live
quality, and notifies each incident once (then again after `--cooldown`) to
a log file and/or a webhook (see monitoring/alerts.py).

`quality` joins late labels (CSV request_id,label) to the logged predictions
of a window: accuracy and AUC per model version (see monitoring/quality.py).

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
(components/request_log_monitor): ExampleStatistics and ExampleAnomalies in
the training pipeline's MLMD, linked to the training statistics.

`scenario` replays the spans with an injected drift through detection, alert,
retrain, canary and decision against a real server (see monitoring/scenario.py).

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
import dataclasses
import datetime
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK, EXIT_FOUND, EXIT_BAD_INPUT = 0, 1, 2
METADATA_HELP = ": SQLite file or mysql://USER:PASSWORD@HOST:PORT/DB (default: $TAXI_METADATA)"
DEFAULT_SCHEMA = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "schema", "schema.pbtxt"
)


def parse_time(text: str) -> float:
    """Unix seconds, or ISO 8601 (UTC unless an offset is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use unix seconds or ISO 8601)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def build_parser() -> argparse.ArgumentParser:
    metadata_default = os.environ.get("TAXI_METADATA")
    p = argparse.ArgumentParser(prog="monitor", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema (pbtxt)")
    common.add_argument(
        "--metadata",
        default=metadata_default,
        help=f"ML Metadata of the pipeline run{METADATA_HELP}",
    )
    common.add_argument("--out", required=True, help="output directory")
    common.add_argument("--textfile", help="also write the gauges here (node exporter)")
    common.add_argument(
        "--linf",
        type=float,
        default=0.1,
        help="L-infinity threshold for categoricals without one in the schema",
    )
    common.add_argument(
        "--jsd",
        type=float,
        default=0.1,
        help="Jensen-Shannon threshold for numerics without one in the schema",
    )
    w = sub.add_parser("window", parents=[common], help="skew/drift of a request log window")
    w.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    w.add_argument("--start", type=parse_time, required=True)
    w.add_argument("--end", type=parse_time, required=True)
    w.add_argument("--version", help="served version (default: newest in the window)")
    w.add_argument(
        "--null-table",
        help="null distances by window size (default: the bundled monitoring/drift_null.json, "
        "see monitoring/drift_thresholds.py): thresholds are max(--linf/--jsd, null quantile "
        "at the window's size); '' = fixed --linf/--jsd",
    )
    w.add_argument(
        "--max-malformed-fraction",
        type=float,
        default=0.0,
        help="malformed records allowed before exit 2 (default 0)",
    )
    sub.add_parser("spans", parents=[common], help="drift between consecutive data spans")
    mp = sub.add_parser(
        "monitor-pipeline",
        help="a request-log window as a TFX pipeline run (ExampleStatistics/ExampleAnomalies)",
    )
    mp.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    mp.add_argument("--start", type=parse_time, required=True)
    mp.add_argument("--end", type=parse_time, required=True)
    mp.add_argument(
        "--metadata",
        default=metadata_default,
        required=not metadata_default,
        help=f"the training pipeline's ML Metadata{METADATA_HELP}",
    )
    mp.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema (pbtxt)")
    mp.add_argument("--version", help="served version (default: newest in the window)")
    mp.add_argument(
        "--pipeline-root", help="default: <metadata dir>/monitoring_pipeline (MySQL: required)"
    )
    mp.add_argument("--pipeline-name", default="taxi-monitoring")
    mp.add_argument("--linf", type=float, default=0.1)
    mp.add_argument("--jsd", type=float, default=0.1)
    mp.add_argument("--max-malformed-fraction", type=float, default=0.0)
    a = sub.add_parser("alert", help="evaluate alert rules and notify (log file, webhook)")
    a.add_argument("--state", required=True, help="state file (open incidents, last scrape)")
    a.add_argument("--scope", default="taxi", help="model name: incident scope and metrics")
    a.add_argument("--summary", help="summary.json of a `monitor window` run")
    a.add_argument("--metrics-url", help="server's /monitoring/prometheus/metrics URL")
    a.add_argument("--metrics-file", help="a saved copy of the server's metrics")
    a.add_argument("--quality", help="summary.json of a `monitor quality` run")
    a.add_argument("--baseline-accuracy", type=float, help="accuracy the drop is measured from")
    a.add_argument("--max-skew-features", type=float, default=0)
    a.add_argument("--max-drift-features", type=float, default=0)
    a.add_argument("--max-error-rate", type=float, default=0.01)
    a.add_argument("--max-p99-ms", type=float, default=100.0)
    a.add_argument("--max-accuracy-drop", type=float, default=0.05)
    a.add_argument("--cooldown", type=float, default=3600, help="seconds between repeats")
    a.add_argument("--log-file", help="append alerts here (JSON lines)")
    a.add_argument("--webhook", help="POST alerts as JSON to this URL")
    q = sub.add_parser("quality", help="live accuracy/AUC per version from late labels")
    q.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    q.add_argument("--labels", required=True, help="CSV with request_id,label")
    q.add_argument("--start", type=parse_time, required=True)
    q.add_argument("--end", type=parse_time, required=True)
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--textfile", help="also write the gauges here (node exporter)")
    q.add_argument("--threshold", type=float, default=0.5, help="positive at this probability")
    b = sub.add_parser("ab", help="A/B verdict: canary vs stable on live accuracy")
    b.add_argument("--quality", required=True, help="summary.json of a `monitor quality` run")
    b.add_argument("--stable", required=True, help="stable version")
    b.add_argument("--canary", required=True, help="canary version")
    b.add_argument("--min-samples", type=int, default=200)
    b.add_argument("--alpha", type=float, default=0.05)
    b.add_argument("--out", help="write the verdict here (JSON)")
    b.add_argument("--metrics-url", help="server metrics: per-version requests/errors/latency")
    b.add_argument("--metrics-file", help="a saved copy of the server's metrics")
    b.add_argument("--model-name", default="taxi")
    b.add_argument("--report-dir", help="write report.md/.json/.html (A/B report) here")
    c = sub.add_parser("canary", help="deploy a canary, promote it or abort it")
    c.add_argument("action", choices=["deploy", "route", "promote", "abort"])
    c.add_argument(
        "--metadata",
        default=metadata_default,
        required=not metadata_default,
        help=f"ML Metadata (the action is recorded){METADATA_HELP}",
    )
    c.add_argument("--model-config", help="the server's --model_config_file")
    c.add_argument(
        "--k8s-manifest",
        help="instead: the Kubernetes route manifest to rewrite (monitoring/k8s_route.py)",
    )
    c.add_argument("--weight", type=int, help="k8s: canary's percent of requests (deploy: 10)")
    c.add_argument("--mirror-percent", type=int, help="k8s: percent mirrored to the canary")
    c.add_argument("--model-name", default="taxi")
    c.add_argument("--candidate", type=int, help="deploy: the blessed version to canary")
    c.add_argument("--server", help="deploy: server REST URL, to wait for the versions")
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--reason", required=True)
    c.add_argument("--requested-by", default=os.environ.get("USER", "unknown"))
    wa = sub.add_parser("watch", help="new span or drift incident -> pipeline -> canary")
    wa.add_argument("--data-dir", required=True, help="folder of span-<N>/ data")
    wa.add_argument("--output-dir", required=True, help="pipeline output dir (metadata.sqlite)")
    wa.add_argument(
        "--metadata",
        help="ML Metadata for watch and the pipeline it runs: SQLite file or mysql://... "
        "(default: $TAXI_METADATA, else <output-dir>/metadata.sqlite)",
    )
    wa.add_argument("--alert-state", help="state file of `monitor alert` (drift incidents)")
    wa.add_argument("--server", help="server REST URL: deploy a new version as canary")
    wa.add_argument("--model-config", help="the server's --model_config_file")
    wa.add_argument("--model-name", default="taxi")
    wa.add_argument(
        "--pipeline-arg",
        action="append",
        default=[],
        help="extra taxi-pipeline argument (repeatable)",
    )
    wa.add_argument("--timeout", type=float, default=3600, help="pipeline timeout (s)")
    wa.add_argument("--interval", type=float, default=300, help="seconds between checks")
    wa.add_argument("--max-checks", type=int, default=1, help="checks before exiting")
    wa.add_argument("--logs", help="request log filename_prefix or dir (canary decisions)")
    wa.add_argument("--labels", help="late labels: CSV request_id,label or a dir of them")
    wa.add_argument("--report-dir", help="A/B reports (default <output-dir>/monitoring)")
    wa.add_argument("--min-samples", type=int, default=200, help="labelled per version")
    wa.add_argument("--alpha", type=float, default=0.05)
    wa.add_argument(
        "--canary-max-checks",
        type=int,
        default=12,
        help="looks at a canary before aborting for insufficient evidence",
    )
    wa.add_argument(
        "--canary-max-seconds",
        type=float,
        default=3 * 3600,
        help="seconds after the deploy before aborting for insufficient evidence",
    )
    wa.add_argument(
        "--shadow-first",
        action="store_true",
        help="deploy a new version as the shadow first (server: --shadow_version_label=shadow)",
    )
    wa.add_argument("--shadow-logs", help="shadow log prefix or dir (shadow decisions)")
    wa.add_argument("--shadow-min-rows", type=int, default=200, help="mirrored rows needed")
    wa.add_argument("--requested-by", default="monitor watch")
    sc = sub.add_parser(
        "scenario",
        help="replay: drift -> detection -> alert -> retrain -> canary -> decision",
    )
    sc.add_argument("--work-dir", required=True, help="empty or new folder for everything")
    sc.add_argument("--small", action="store_true", help="small samples, few train steps")
    sc.add_argument("--train-steps", type=int, help="override the train steps")
    sc.add_argument("--source", help="span-<year>/data.csv folder (default: data/taxi)")
    sh = sub.add_parser("shadow", help="shadow vs stable on the same mirrored requests")
    sh.add_argument("--logs", required=True, help="shadow log prefix or directory")
    sh.add_argument("--labels", help="late labels: CSV request_id,label or a dir of them")
    sh.add_argument("--start", type=parse_time, default=float("-inf"))
    sh.add_argument("--end", type=parse_time, default=float("inf"))
    sh.add_argument("--out", required=True, help="output directory")
    sh.add_argument("--threshold", type=float, default=0.5, help="positive at this probability")
    sh.add_argument("--min-rows", type=int, default=200)
    sh.add_argument("--min-labelled", type=int, default=200)
    sh.add_argument("--max-error-rate", type=float, default=0.01)
    sh.add_argument("--max-accuracy-drop", type=float, default=0.02)
    r = sub.add_parser("rollback", help="serve the previous blessed (or a named) version")
    r.add_argument(
        "--metadata",
        default=metadata_default,
        required=not metadata_default,
        help=f"ML Metadata (the rollback is recorded){METADATA_HELP}",
    )
    r.add_argument("--model-config", required=True, help="the server's --model_config_file")
    r.add_argument("--model-name", default="taxi")
    r.add_argument("--to", type=int, help="version to serve (default: previous blessed)")
    r.add_argument("--reason", required=True)
    r.add_argument(
        "--requested-by",
        default=os.environ.get("USER", "unknown"),
        help="who or what asked (default: $USER)",
    )
    r.add_argument("--history", action="store_true", help="only list recorded rollbacks")
    from monitoring import alert_receiver, exporter  # their own parsers, `func` defaults

    exporter.add_parser(sub)
    alert_receiver.add_parser(sub)
    return p


def run_quality(args) -> int:
    from monitoring import gauges, quality, request_logs

    if args.end <= args.start:
        print(f"error: --end ({args.end}) must be after --start ({args.start})", file=sys.stderr)
        return EXIT_BAD_INPUT
    labels = quality.read_labels(args.labels)
    logs = request_logs.read_window(args.logs, float("-inf"), float("inf"))
    result = quality.join(logs.predictions, labels, args.start, args.end, args.threshold)
    result["problems"] = logs.problems + result["problems"]
    result["counts"]["malformed_log_records"] = logs.malformed
    result.update(logs=args.logs, labels_file=args.labels, start=args.start, end=args.end)
    if not logs.files:
        result["problems"].append(f"no request log files match {args.logs!r}")
    elif not result["counts"]["predictions_in_window"]:
        result["problems"].append(
            f"missing window: no logged predictions in [{args.start}, {args.end})"
        )
    directory = os.path.join(args.out, f"quality-{int(args.start)}-{int(args.end)}")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(_quality_markdown(result))
    registry = gauges.quality_registry(result, args.end)
    gauges.write_textfile(os.path.join(directory, "metrics.prom"), registry)
    if args.textfile:
        gauges.write_textfile(args.textfile, registry)
    overall = result["overall"]
    print(
        f"live quality: {overall['labelled']} labelled, accuracy={overall['accuracy']}, "
        f"auc={overall['auc']}; counts {result['counts']}; "
        f"report: {os.path.join(directory, 'report.md')}"
    )
    _print_problems(result["problems"])
    bad = (
        not result["counts"]["predictions_in_window"]
        or logs.malformed
        or labels.malformed
        or result["counts"]["unknown_request_ids"]
    )
    return EXIT_BAD_INPUT if bad else EXIT_OK


def _quality_markdown(result: dict) -> str:
    from monitoring.report import _time

    lines = [
        f"# Live quality {_time(result['start'])} .. {_time(result['end'])}",
        "",
        "| version | labelled | accuracy | AUC |",
        "|---|---|---|---|",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for version, m in [("all", result["overall"]), *result["versions"].items()]:
        lines.append(f"| {version} | {m['labelled']} | {fmt(m['accuracy'])} | {fmt(m['auc'])} |")
    lines += ["", "## Counts", ""] + [f"- {k}: {v}" for k, v in result["counts"].items()]
    if result["problems"]:
        lines += ["", f"## Problems ({len(result['problems'])})", ""]
        lines += [f"- {p}" for p in result["problems"][:20]]
    return "\n".join(lines) + "\n"


def run_ab(args) -> int:
    from monitoring import ab

    try:
        with open(args.quality) as f:
            versions = json.load(f)["versions"]
        counts = {}
        for role in ("stable", "canary"):
            version = str(getattr(args, role))
            if version not in versions or not versions[version]["labelled"]:
                raise ValueError(f"no labelled predictions of version {version}")
            m = versions[version]
            counts[role] = (round(m["accuracy"] * m["labelled"]), m["labelled"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {args.quality}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = ab.verdict(counts["stable"], counts["canary"], args.min_samples, args.alpha)
    serving = _version_serving_metrics(args)
    if serving is None:
        return EXIT_BAD_INPUT
    print("| version | requests | errors | p50 / p95 / p99 ms | labelled | accuracy [95% CI] |")
    print("|---|---|---|---|---|---|")
    for role in ("stable", "canary"):
        r = result[role]
        low, high = r["ci95"]
        m = serving.get(str(getattr(args, role)), {})
        r.update(m)
        latency = " / ".join(
            "n/a" if m.get(q) is None else f"{m[q]:g}" for q in ("p50_ms", "p95_ms", "p99_ms")
        )
        print(
            f"| {getattr(args, role)} ({role}) | {m.get('requests', 'n/a')} | "
            f"{m.get('errors', 'n/a')} | {latency} | {r['labelled']} | "
            f"{r['accuracy']:.4f} [{low:.4f}, {high:.4f}] |"
        )
    print(
        f"test: {result['test']}, alpha={args.alpha}, min samples={args.min_samples}; "
        f"z={result['z']}, p={result['p_value']}"
    )
    print(f"verdict: {result['verdict']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.report_dir:
        from monitoring import ab_report

        report = ab_report.build(
            result,
            {"stable": args.stable, "canary": args.canary},
            serving,
            {"quality_summary": os.path.abspath(args.quality)},
        )
        paths = ab_report.write(args.report_dir, report)
        print(f"A/B report: {paths['md']} ({paths['json']}, {paths['html']})")
    return EXIT_FOUND if result["verdict"] == "rollback" else EXIT_OK


def run_canary(args) -> int:
    from monitoring import canary

    if args.k8s_manifest:
        return _run_k8s_canary(args)
    try:
        if args.action == "route":
            raise canary.CanaryError(
                "route needs --k8s-manifest (our server's share is its --canary_traffic_share)"
            )
        if not args.model_config:
            raise canary.CanaryError("needs --model-config (the server's) or --k8s-manifest")
        if args.action == "deploy":
            if args.candidate is None or not args.server:
                raise canary.CanaryError("deploy needs --candidate and --server")
            result = canary.deploy(
                args.metadata,
                args.model_config,
                args.model_name,
                args.candidate,
                args.server.rstrip("/"),
                args.reason,
                args.requested_by,
                args.timeout,
            )
        else:
            result = canary.finish(
                args.metadata,
                args.model_config,
                args.model_name,
                args.action,
                args.reason,
                args.requested_by,
            )
    except canary.CanaryError as e:
        print(f"error: canary {args.action} not done: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"canary {args.action} of {args.model_name}: {json.dumps(result)}")
    return EXIT_OK


def _run_k8s_canary(args) -> int:
    from monitoring import canary, k8s_route

    try:
        result = k8s_route.act(
            args.action,
            args.k8s_manifest,
            args.metadata,
            args.model_name,
            args.reason,
            args.requested_by,
            args.candidate,
            args.weight,
            args.mirror_percent,
        )
    except (k8s_route.RouteError, canary.CanaryError) as e:
        print(f"error: canary {args.action} not done: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"canary {args.action} of {args.model_name} in {args.k8s_manifest}: {json.dumps(result)}")
    return EXIT_OK


def pipeline_command(args) -> list:
    return [
        sys.executable,
        "-m",
        "pipeline.local_runner",
        "--output-dir",
        args.output_dir,
        "--data-dir",
        args.data_dir,
        *(["--metadata", args.metadata] if args.metadata else []),
        *args.pipeline_arg,
    ]


def run_watch(args) -> int:
    import time

    from monitoring import watch
    from pipeline import metadata_store

    metadata = metadata_store.resolve(args.metadata, args.output_dir)
    exit_code = EXIT_OK
    for index in range(max(1, args.max_checks)):
        if index:
            time.sleep(args.interval)
        check = watch.check_once(
            args.data_dir,
            metadata,
            pipeline_command(args),
            alert_state=args.alert_state,
            timeout=args.timeout,
            server_url=args.server,
            model_config=args.model_config,
            model_name=args.model_name,
            requested_by=args.requested_by,
            logs=args.logs,
            labels=args.labels,
            policy=watch.decide.Policy(
                min_samples=args.min_samples,
                alpha=args.alpha,
                max_checks=args.canary_max_checks,
                max_seconds=args.canary_max_seconds,
            ),
            report_dir=args.report_dir,
            shadow_first=args.shadow_first,
            shadow_logs=args.shadow_logs,
            shadow_policy=_shadow_policy(args),
        )
        if not check.reasons:
            print("watch: nothing new")
            continue
        if check.shadow is not None and "verdict" in check.shadow:
            s = check.shadow
            print(
                f"watch: {'; '.join(check.reasons)} -> shadow {s['verdict']} (MLMD execution "
                f"{s['execution_id']}): {s['why']}; canary {json.dumps(s['canary'])}"
            )
        elif check.decision is not None:
            d = check.decision
            print(
                f"watch: {'; '.join(check.reasons)} -> {d.action} "
                f"(MLMD execution {d.execution_id}): {d.reason}; "
                f"report: {d.report_paths['md']}"
            )
        elif check.ran_pipeline:
            pinned = (
                f"pinned stable {check.pinned['stable']} (MLMD execution "
                f"{check.pinned['execution_id']}), "
                if check.pinned and check.pinned["pinned"]
                else ""
            )
            print(
                f"watch: {'; '.join(check.reasons)} -> {pinned}pipeline exit "
                f"{check.returncode}, new versions {check.new_versions}, "
                f"canary {json.dumps(check.deployed)}, shadow {json.dumps(check.shadow)}"
            )
        else:
            print(f"watch: {'; '.join(check.reasons)}")
        _print_problems(check.problems)
        if check.problems:
            exit_code = EXIT_BAD_INPUT
    return exit_code


def _shadow_policy(args):
    from monitoring import shadow

    return shadow.Policy(min_rows=args.shadow_min_rows, min_labelled=args.min_samples)


def _version_serving_metrics(args) -> dict | None:
    """Per-version requests, errors and latency quantiles ({} without metrics, None on error)."""
    from monitoring import server_metrics

    if not args.metrics_url and not args.metrics_file:
        return {}
    try:
        if args.metrics_url:
            text = server_metrics.fetch(args.metrics_url)
        else:
            with open(args.metrics_file) as f:
                text = f.read()
        return server_metrics.version_summary(text, args.model_name)
    except (OSError, ValueError, server_metrics.requests.RequestException) as e:
        print(f"error: server metrics: {e}", file=sys.stderr)
        return None


def run_scenario(args) -> int:
    from monitoring import scenario

    try:
        summary = scenario.run(args.work_dir, args.small, args.source, args.train_steps)
    except scenario.ScenarioError as e:
        print(f"error: scenario stopped: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    decision = summary["decision"]
    return EXIT_OK if decision["served_versions"] == [decision["expected_version"]] else 1


def run_rollback(args) -> int:
    from monitoring import rollback

    try:
        if args.history:
            for item in rollback.history(rollback.writable_store(args.metadata)):
                print(json.dumps(item))
            return EXIT_OK
        result = rollback.rollback(
            args.metadata,
            args.model_config,
            args.model_name,
            args.reason,
            args.requested_by,
            args.to,
        )
    except rollback.RollbackError as e:
        print(f"error: rollback not done: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"rolled back {result['model_name']}: {result['from_version']} -> "
        f"{result['to_version']} (config {result['config_file']}, "
        f"MLMD execution {result['execution_id']})"
    )
    return EXIT_OK


def _write_outputs(
    directory: str,
    args,
    title: str,
    facts: dict,
    validation,
    problems,
    split: str,
    counts: dict,
    end: float,
    scope: str,
    anomalous=None,
) -> None:
    from monitoring import artifacts, gauges, report

    os.makedirs(directory, exist_ok=True)
    if validation is not None and split:
        artifacts.write_anomalies(os.path.join(directory, "anomalies"), split, validation.anomalies)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(report.markdown(title, facts, validation, problems))
    findings = validation.findings if validation is not None else []
    if anomalous is None:
        anomalous = validation.anomalous_features if validation is not None else []
    summary = dict(
        facts,
        counts=counts,
        problems=problems,
        anomalous_features=anomalous,
        findings=[dict(dataclasses.asdict(x), exceeded=x.exceeded) for x in findings],
        notes=validation.notes if validation is not None else [],
    )
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    registry = gauges.registry_for(scope, findings, anomalous, counts, end)
    gauges.write_textfile(os.path.join(directory, "metrics.prom"), registry)
    if args.textfile:
        gauges.write_textfile(args.textfile, registry)


def _window_schema(args, window_rows: int, previous_rows: int):
    """The comparator schema of a window: thresholds for its size unless --null-table ''."""
    from monitoring import drift, drift_thresholds

    schema = drift.load_schema(args.schema)
    if args.null_table == "":
        return drift.comparator_schema(schema, args.linf, args.jsd)
    table = drift_thresholds.read_table(args.null_table or drift_thresholds.NULL_TABLE)
    return drift_thresholds.window_comparator_schema(
        schema, window_rows, previous_rows, args.linf, args.jsd, table
    )


def run_window(args) -> int:
    from monitoring import artifacts, baselines, drift, request_logs
    from pipeline import lineage, metadata_store

    if args.end <= args.start:
        print(f"error: --end ({args.end}) must be after --start ({args.start})", file=sys.stderr)
        return EXIT_BAD_INPUT
    name = f"window-{int(args.start)}-{int(args.end)}"
    directory = os.path.join(args.out, name)
    window = request_logs.read_window(args.logs, args.start, args.end)
    counts = {"ok": window.records, "malformed": window.malformed, "outside_window": window.outside}
    problems = list(window.problems)
    facts = {
        "logs": args.logs,
        "start": args.start,
        "end": args.end,
        "files": len(window.files),
        "records": window.records,
        "rows": len(window.rows),
        "malformed records": window.malformed,
        "skipped damaged bytes": window.skipped_bytes,
        "versions": dict(window.versions),
    }
    exit_code = EXIT_OK
    total = window.records + window.outside + window.malformed
    if not window.files:
        problems.append(f"no request log files match {args.logs!r}")
    elif not window.rows:
        problems.append(
            f"missing window: no logged requests in [{args.start}, {args.end}) "
            f"({total} records read, {window.outside} outside the window)"
        )
    if total and window.malformed / total > args.max_malformed_fraction:
        problems.append(
            f"{window.malformed} of {total} records malformed "
            f"(allowed fraction {args.max_malformed_fraction})"
        )
        exit_code = EXIT_BAD_INPUT
    if not window.rows:
        _write_outputs(
            directory,
            args,
            f"Monitor {name}",
            facts,
            None,
            problems,
            "serving",
            counts,
            args.end,
            "window",
        )
        _print_problems(problems)
        return EXIT_BAD_INPUT

    length = args.end - args.start
    before = request_logs.read_window(args.logs, args.start - length, args.start)
    schema = _window_schema(args, len(window.rows), len(before.rows))
    current = drift.statistics_from_rows(window.rows, schema)
    artifacts.write_statistics(os.path.join(directory, "statistics"), "serving", current)
    previous = drift.statistics_from_rows(before.rows, schema) if before.rows else None
    facts["previous window rows"] = len(before.rows)
    training = None
    version = args.version or window.served_version
    facts["served version"] = version
    if not args.metadata:
        problems.append("no --metadata: skew against training statistics not computed")
    else:
        try:
            if not metadata_store.exists(args.metadata):
                raise OSError(f"metadata not found: {args.metadata}")
            span, training = baselines.training_statistics(
                lineage.open_store(args.metadata), str(version)
            )
            facts["training span"] = span
        except (lineage.LineageError, OSError, RuntimeError, ValueError) as e:
            problems.append(f"training statistics of version {version}: {e}")
            exit_code = EXIT_BAD_INPUT
    validation = drift.validate(current, schema, training=training, previous=previous)
    _write_outputs(
        directory,
        args,
        f"Monitor {name}",
        facts,
        validation,
        problems,
        "serving",
        counts,
        args.end,
        "window",
    )
    return _finish(directory, validation, problems, exit_code)


def monitor_executions(metadata_path: str) -> list:
    """Executions of the RequestLogMonitor component, oldest first."""
    from pipeline import lineage

    store = lineage.open_store(metadata_path)
    types = {t.id: t.name for t in store.get_execution_types()}
    return sorted(
        (e for e in store.get_executions() if types[e.type_id].endswith("RequestLogMonitor")),
        key=lambda e: e.id,
    )


def run_monitor_pipeline(args) -> int:
    """`window` as a TFX pipeline run recorded in the training pipeline's MLMD."""
    from monitoring import baselines, request_logs
    from pipeline import lineage, metadata_store

    if args.end <= args.start:
        print(f"error: --end ({args.end}) must be after --start ({args.start})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not metadata_store.exists(args.metadata):
        print(f"error: metadata not found: {args.metadata}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if metadata_store.is_mysql(args.metadata) and not args.pipeline_root:
        print("error: --pipeline-root is required with a MySQL --metadata", file=sys.stderr)
        return EXIT_BAD_INPUT
    version = args.version
    if version is None:
        window = request_logs.read_window(args.logs, args.start, args.end)
        version = window.served_version
        if version is None:
            _print_problems(window.problems)
            print(
                f"error: missing window: no logged requests in [{args.start}, {args.end}) "
                f"under {args.logs!r} ({len(window.files)} files, {window.malformed} malformed)",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    try:
        span, artifact = baselines.training_statistics_artifact(
            lineage.open_store(args.metadata), str(version)
        )
    except (lineage.LineageError, RuntimeError, ValueError) as e:
        print(f"error: training statistics of version {version}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.monitoring_pipeline import create_monitoring_pipeline

    before = {e.id for e in monitor_executions(args.metadata)}
    root = args.pipeline_root or os.path.join(
        os.path.dirname(os.path.abspath(args.metadata)), "monitoring_pipeline"
    )
    try:
        LocalDagRunner().run(
            create_monitoring_pipeline(
                pipeline_name=args.pipeline_name,
                pipeline_root=root,
                metadata_path=args.metadata,
                log_prefix=os.path.abspath(args.logs),
                start=args.start,
                end=args.end,
                schema_file=os.path.abspath(args.schema),
                training_statistics_uri=artifact.uri,
                training_statistics_split_names=artifact.properties["split_names"].string_value,
                linf=args.linf,
                jsd=args.jsd,
                max_malformed_fraction=args.max_malformed_fraction,
            )
        )
    except Exception as e:  # the component's failure, already recorded FAILED in MLMD
        failed = [e for e in monitor_executions(args.metadata) if e.id not in before]
        ids = [x.id for x in failed]
        print(
            f"error: monitoring pipeline failed (MLMD execution {ids}): {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    store = lineage.open_store(args.metadata)
    execution = [e for e in monitor_executions(args.metadata) if e.id not in before][-1]
    outputs = [
        ev.artifact_id
        for ev in store.get_events_by_execution_ids([execution.id])
        if ev.type == ev.OUTPUT
    ]
    types = {t.id: t.name for t in store.get_artifact_types()}
    found = {types[a.type_id]: a for a in store.get_artifacts_by_id(outputs)}
    anomalies = found["ExampleAnomalies"]
    facts = {k: getattr(v, v.WhichOneof("value")) for k, v in anomalies.custom_properties.items()}
    print(
        f"monitoring pipeline: version {version} (training span {span}, statistics "
        f"artifact {artifact.id}); MLMD execution {execution.id}; ExampleStatistics "
        f"{found['ExampleStatistics'].id} at {found['ExampleStatistics'].uri}; "
        f"ExampleAnomalies {anomalies.id} at {anomalies.uri}"
    )
    print(
        f"  rows {facts.get('rows')}, skew features {facts.get('skew_features', 0)}, "
        f"drift features {facts.get('drift_features', 0)}, anomalous features "
        f"[{facts.get('anomalous_features', '')}]"
    )
    found_any = facts.get("skew_features") or facts.get("drift_features")
    return EXIT_FOUND if found_any or facts.get("anomalous_features") else EXIT_OK


def run_spans(args) -> int:
    from monitoring import artifacts, baselines, drift
    from pipeline import lineage, metadata_store

    directory = os.path.join(args.out, "spans")
    if not args.metadata or not metadata_store.exists(args.metadata):
        print(f"error: metadata not found: {args.metadata!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stats = baselines.span_statistics(lineage.open_store(args.metadata))
    schema = drift.comparator_schema(drift.load_schema(args.schema), args.linf, args.jsd)
    spans = sorted(stats)
    facts = {"metadata": args.metadata, "spans": spans}
    title = "Monitor: drift between consecutive spans"
    if len(spans) < 2:
        problems = [f"need two spans with statistics in ML Metadata, found {spans}"]
        _write_outputs(directory, args, title, facts, None, problems, "", {}, 0, "spans")
        _print_problems(problems)
        return EXIT_BAD_INPUT
    findings, anomalous, result = [], [], None
    for previous, span in zip(spans, spans[1:], strict=False):
        result = drift.validate(
            stats[span], schema, previous=stats[previous], environment="TRAINING"
        )
        artifacts.write_anomalies(
            os.path.join(directory, "anomalies"), f"span-{span}", result.anomalies
        )
        findings += [dataclasses.replace(f, feature=f"{f.feature}@{span}") for f in result.findings]
        anomalous += [f"{name}@{span}" for name in result.anomalous_features]
    # The report shows the newest pair's anomalies and every pair's drift.
    validation = drift.Validation(result.anomalies, findings, [])
    _write_outputs(
        directory, args, title, facts, validation, [], "", {}, 0, "spans", anomalous=anomalous
    )
    return _finish(directory, validation, [], EXIT_OK, anomalous)


def alert_rules(args) -> list:
    from monitoring.alerts import Rule

    return [
        Rule("training-serving skew", "skew_features", ">", args.max_skew_features, "critical"),
        Rule("serving drift", "drift_features", ">", args.max_drift_features),
        Rule("error rate", "error_rate", ">", args.max_error_rate, "critical"),
        Rule("p99 latency", "p99_latency_ms", ">", args.max_p99_ms),
        Rule("live quality drop", "live_accuracy_drop", ">", args.max_accuracy_drop, "critical"),
    ]


def collect_signals(args, state: dict, problems: list) -> dict:
    """Signals for the rules; what cannot be read is a problem, not a crash."""
    from monitoring import server_metrics

    signals = {}
    if args.summary:
        try:
            with open(args.summary) as f:
                summary = json.load(f)
            exceeded = [x for x in summary.get("findings", []) if x.get("exceeded")]
            signals["skew_features"] = len({x["feature"] for x in exceeded if x["kind"] == "skew"})
            signals["drift_features"] = len(
                {x["feature"] for x in exceeded if x["kind"] == "drift"}
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"monitor summary {args.summary}: {e}")
    text = None
    try:
        if args.metrics_url:
            text = server_metrics.fetch(args.metrics_url)
        elif args.metrics_file:
            with open(args.metrics_file) as f:
                text = f.read()
    except (OSError, server_metrics.requests.RequestException) as e:
        problems.append(f"server metrics: {e}")
    if text is not None:
        try:
            current = server_metrics.snapshot(text, args.scope)
        except ValueError as e:
            problems.append(f"server metrics: unparsable exposition ({e})")
        else:
            window = server_metrics.delta(current, state.get("metrics"))
            state["metrics"] = current
            signals["error_rate"] = server_metrics.error_rate(window)
            signals["p99_latency_ms"] = server_metrics.latency_quantile_ms(window, 0.99)
            signals["requests"] = window["requests"]
    if args.quality:
        try:
            with open(args.quality) as f:
                accuracy = json.load(f)["overall"]["accuracy"]
            if args.baseline_accuracy is None:
                problems.append("--quality needs --baseline-accuracy")
            elif accuracy is not None:
                signals["live_accuracy"] = accuracy
                signals["live_accuracy_drop"] = args.baseline_accuracy - accuracy
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"live quality summary {args.quality}: {e}")
    return signals


def run_alert(args) -> int:
    from monitoring import alerts

    state = alerts.load_state(args.state)
    problems = []
    signals = collect_signals(args, state, problems)
    moment = alerts.now()
    firing = alerts.evaluate(alert_rules(args), signals, args.scope, moment)
    notify = alerts.deduplicate(firing, state, args.scope, args.cooldown, moment)
    sink_failed = False
    if notify and args.log_file:
        try:
            alerts.to_log(args.log_file, notify)
        except OSError as e:
            problems.append(f"alert log {args.log_file}: {e}")
            sink_failed = True
    if notify and args.webhook:
        error = alerts.to_webhook(args.webhook, notify)
        if error:
            problems.append(error)
            sink_failed = True
    if not sink_failed:  # otherwise the same alerts are sent again on the next run
        alerts.save_state(args.state, state)
    print("signals: " + ", ".join(f"{k}={v}" for k, v in sorted(signals.items())))
    for alert in firing:
        sent = "notified" if alert in notify else "suppressed (open incident, cooldown)"
        print(f"{alert.message()} - {sent}")
    _print_problems(problems)
    if problems:
        return EXIT_BAD_INPUT
    return EXIT_FOUND if firing else EXIT_OK


def _print_problems(problems) -> None:
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)


def _finish(directory, validation, problems, exit_code, anomalous=None) -> int:
    anomalous = validation.anomalous_features if anomalous is None else anomalous
    exceeded = [f for f in validation.findings if f.exceeded]
    _print_problems(problems)
    print(
        f"{len(anomalous)} anomalous features, {len(exceeded)} skew/drift measurements "
        f"above threshold; report: {os.path.join(directory, 'report.md')}"
    )
    for f in exceeded:
        print(f"  {f.kind} {f.feature} {f.measure}={f.value:.4f} > {f.threshold}")
    if exit_code != EXIT_OK:
        return exit_code
    return EXIT_FOUND if anomalous or exceeded else EXIT_OK


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "func"):  # subcommands registered by their own module
            return args.func(args)
        if args.command == "window":
            return run_window(args)
        if args.command == "alert":
            return run_alert(args)
        if args.command == "rollback":
            return run_rollback(args)
        if args.command == "quality":
            return run_quality(args)
        if args.command == "ab":
            return run_ab(args)
        if args.command == "canary":
            return run_canary(args)
        if args.command == "watch":
            return run_watch(args)
        if args.command == "monitor-pipeline":
            return run_monitor_pipeline(args)
        if args.command == "scenario":
            return run_scenario(args)
        if args.command == "shadow":
            from monitoring import shadow

            return shadow.run_cli(args)
        return run_spans(args)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
