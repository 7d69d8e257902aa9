"""`taxi-monitor quality | ab | shadow`: live quality, the canary's A/B verdict, shadow vs stable."""

from __future__ import annotations

import json
import os

from core.constants import MODEL_NAME
from monitoring import ab, ab_report, config, live_quality, server_metrics, shadow
from monitoring.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FOUND,
    EXIT_OK,
    calls,
    error,
    parse_time,
    print_problems,
)


def add_parsers(sub) -> None:
    """Registers `quality`, `ab` and `shadow` on `sub` (argparse subparsers)."""
    q = sub.add_parser("quality", help="live accuracy/AUC per version from late labels")
    q.add_argument("--logs", required=True, help="request log filename_prefix or directory")
    q.add_argument("--labels", required=True, help="CSV with request_id,label")
    q.add_argument("--start", type=parse_time, required=True)
    q.add_argument("--end", type=parse_time, required=True)
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--textfile", help="also write the gauges here (node exporter)")
    q.add_argument(
        "--threshold",
        type=float,
        default=config.POSITIVE_THRESHOLD,
        help="positive at this probability",
    )
    q.set_defaults(func=calls(run_quality))
    b = sub.add_parser("ab", help="A/B verdict: canary vs stable on live accuracy")
    b.add_argument("--quality", required=True, help="summary.json of a `monitor quality` run")
    b.add_argument("--stable", required=True, help="stable version")
    b.add_argument("--canary", required=True, help="canary version")
    b.add_argument("--min-samples", type=int, default=config.MIN_SAMPLES)
    b.add_argument("--alpha", type=float, default=config.ALPHA)
    b.add_argument("--out", help="write the verdict here (JSON)")
    b.add_argument("--metrics-url", help="server metrics: per-version requests/errors/latency")
    b.add_argument("--metrics-file", help="a saved copy of the server's metrics")
    b.add_argument("--model-name", default=MODEL_NAME)
    b.add_argument("--report-dir", help="write report.md/.json/.html (A/B report) here")
    b.set_defaults(func=calls(run_ab))
    sh = sub.add_parser("shadow", help="shadow vs stable on the same mirrored requests")
    sh.add_argument("--logs", required=True, help="shadow log prefix or directory")
    sh.add_argument("--labels", help="late labels: CSV request_id,label or a dir of them")
    sh.add_argument("--start", type=parse_time, default=float("-inf"))
    sh.add_argument("--end", type=parse_time, default=float("inf"))
    sh.add_argument("--out", required=True, help="output directory")
    sh.add_argument(
        "--threshold",
        type=float,
        default=config.POSITIVE_THRESHOLD,
        help="positive at this probability",
    )
    sh.add_argument("--min-rows", type=int, default=config.SHADOW_MIN_ROWS)
    sh.add_argument("--min-labelled", type=int, default=config.SHADOW_MIN_LABELLED)
    sh.add_argument("--max-error-rate", type=float, default=config.SHADOW_MAX_ERROR_RATE)
    sh.add_argument("--max-accuracy-drop", type=float, default=config.SHADOW_MAX_ACCURACY_DROP)
    sh.set_defaults(func=calls(run_shadow))


def run_quality(
    logs: str,
    labels: str,
    start: float,
    end: float,
    out: str,
    *,
    threshold: float = config.POSITIVE_THRESHOLD,
    textfile: str | None = None,
) -> int:
    """`quality`: late labels joined to a window's predictions (monitoring/live_quality.py)."""
    if end <= start:
        return error(f"--end ({end}) must be after --start ({start})")
    result = live_quality.check(logs, labels, start, end, threshold)
    directory = live_quality.write_outputs(result, out, textfile)
    overall = result["overall"]
    print(
        f"live quality: {overall['labelled']} labelled, accuracy={overall['accuracy']}, "
        f"auc={overall['auc']}; counts {result['counts']}; "
        f"report: {os.path.join(directory, 'report.md')}"
    )
    print_problems(result["problems"])
    return result["outcome"]


def version_serving_metrics(
    metrics_url: str | None, metrics_file: str | None, model_name: str
) -> dict | None:
    """Per-version requests, errors and latency quantiles ({} without metrics, None on error)."""
    try:
        text = server_metrics.read(metrics_url, metrics_file)
        return {} if text is None else server_metrics.version_summary(text, model_name)
    except (OSError, ValueError, server_metrics.requests.RequestException) as e:
        error(f"server metrics: {e}")
        return None


def run_ab(
    quality: str,
    stable: str,
    canary: str,
    *,
    min_samples: int = config.MIN_SAMPLES,
    alpha: float = config.ALPHA,
    out: str | None = None,
    metrics_url: str | None = None,
    metrics_file: str | None = None,
    model_name: str = MODEL_NAME,
    report_dir: str | None = None,
) -> int:
    """`ab`: the A/B verdict (monitoring/ab.py); exit 1 means rollback."""
    try:
        counts = ab.counts_from_quality(quality, stable, canary)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return error(f"{quality}: {e}")
    result = ab.verdict(counts["stable"], counts["canary"], min_samples, alpha)
    serving = version_serving_metrics(metrics_url, metrics_file, model_name)
    if serving is None:
        return EXIT_BAD_INPUT
    versions = {"stable": stable, "canary": canary}
    print("| version | requests | errors | p50 / p95 / p99 ms | labelled | accuracy [95% CI] |")
    print("|---|---|---|---|---|---|")
    for role, version in versions.items():
        r = result[role]
        low, high = r["ci95"]
        m = serving.get(str(version), {})
        r.update(m)
        latency = " / ".join(
            "n/a" if m.get(q) is None else f"{m[q]:g}" for q in ("p50_ms", "p95_ms", "p99_ms")
        )
        print(
            f"| {version} ({role}) | {m.get('requests', 'n/a')} | "
            f"{m.get('errors', 'n/a')} | {latency} | {r['labelled']} | "
            f"{r['accuracy']:.4f} [{low:.4f}, {high:.4f}] |"
        )
    print(
        f"test: {result['test']}, alpha={alpha}, min samples={min_samples}; "
        f"z={result['z']}, p={result['p_value']}"
    )
    print(f"verdict: {result['verdict']}")
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    if report_dir:
        report = ab_report.build(
            result, versions, serving, {"quality_summary": os.path.abspath(quality)}
        )
        paths = ab_report.write(report_dir, report)
        print(f"A/B report: {paths['md']} ({paths['json']}, {paths['html']})")
    return EXIT_FOUND if result["verdict"] == "rollback" else EXIT_OK


def run_shadow(
    logs: str,
    out: str,
    *,
    labels: str | None = None,
    start: float = float("-inf"),
    end: float = float("inf"),
    threshold: float = config.POSITIVE_THRESHOLD,
    min_rows: int = config.SHADOW_MIN_ROWS,
    min_labelled: int = config.SHADOW_MIN_LABELLED,
    max_error_rate: float = config.SHADOW_MAX_ERROR_RATE,
    max_accuracy_drop: float = config.SHADOW_MAX_ACCURACY_DROP,
) -> int:
    """`shadow`: 0 pass/insufficient, 1 a shadow rejected, 2 bad input."""
    policy = shadow.Policy(min_rows, max_error_rate, min_labelled, max_accuracy_drop)
    result = shadow.check(logs, labels, start, end, threshold, policy)
    path = shadow.write_outputs(result, out)
    for key, e in result["pairs"].items():
        print(
            f"shadow {key}: {e['verdict']} ({e['why']}); rows {e['rows']}, agreement "
            f"{e['agreement']}, mean |diff| {e['mean_abs_diff']}, max |diff| {e['max_abs_diff']}"
        )
    print(f"report: {path}")
    print_problems(result["problems"])
    return result["outcome"]
