"""`taxi-monitor canary | rollback | watch`: move the served versions, and the watch loop."""

from __future__ import annotations

import json
import os
import time

from core.constants import MODEL_NAME
from monitoring import canary, config, decide, k8s_route, rollback, shadow, watch
from monitoring.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    METADATA_HELP,
    calls,
    error,
    metadata_default,
    print_problems,
)


def add_parsers(sub) -> None:
    """Registers `canary`, `watch` and `rollback` on `sub` (argparse subparsers)."""
    c = sub.add_parser("canary", help="deploy a canary, promote it or abort it")
    c.add_argument("action", choices=["deploy", "route", "promote", "abort"])
    c.add_argument(
        "--metadata",
        default=metadata_default(),
        required=not metadata_default(),
        help=f"ML Metadata (the action is recorded){METADATA_HELP}",
    )
    c.add_argument("--model-config", help="the server's --model_config_file")
    c.add_argument(
        "--k8s-manifest",
        help="instead: the Kubernetes route manifest to rewrite (monitoring/k8s_route.py)",
    )
    c.add_argument("--weight", type=int, help="k8s: canary's percent of requests (deploy: 10)")
    c.add_argument("--mirror-percent", type=int, help="k8s: percent mirrored to the canary")
    c.add_argument("--model-name", default=MODEL_NAME)
    c.add_argument("--candidate", type=int, help="deploy: the blessed version to canary")
    c.add_argument("--server", help="deploy: server REST URL, to wait for the versions")
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--reason", required=True)
    c.add_argument("--requested-by", default=os.environ.get("USER", "unknown"))
    c.set_defaults(func=calls(run_canary))
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
    wa.add_argument("--model-name", default=MODEL_NAME)
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
    wa.add_argument(
        "--min-samples", type=int, default=config.MIN_SAMPLES, help="labelled per version"
    )
    wa.add_argument("--alpha", type=float, default=config.ALPHA)
    wa.add_argument(
        "--canary-max-checks",
        type=int,
        default=config.CANARY_MAX_CHECKS,
        help="looks at a canary before aborting for insufficient evidence",
    )
    wa.add_argument(
        "--canary-max-seconds",
        type=float,
        default=config.CANARY_MAX_SECONDS,
        help="seconds after the deploy before aborting for insufficient evidence",
    )
    wa.add_argument(
        "--shadow-first",
        action="store_true",
        help="deploy a new version as the shadow first (server: --shadow_version_label=shadow)",
    )
    wa.add_argument("--shadow-logs", help="shadow log prefix or dir (shadow decisions)")
    wa.add_argument(
        "--shadow-min-rows", type=int, default=config.SHADOW_MIN_ROWS, help="mirrored rows needed"
    )
    wa.add_argument("--requested-by", default="monitor watch")
    wa.set_defaults(func=calls(run_watch))
    r = sub.add_parser("rollback", help="serve the previous blessed (or a named) version")
    r.add_argument(
        "--metadata",
        default=metadata_default(),
        required=not metadata_default(),
        help=f"ML Metadata (the rollback is recorded){METADATA_HELP}",
    )
    r.add_argument("--model-config", required=True, help="the server's --model_config_file")
    r.add_argument("--model-name", default=MODEL_NAME)
    r.add_argument("--to", type=int, help="version to serve (default: previous blessed)")
    r.add_argument("--reason", required=True)
    r.add_argument(
        "--requested-by",
        default=os.environ.get("USER", "unknown"),
        help="who or what asked (default: $USER)",
    )
    r.add_argument("--history", action="store_true", help="only list recorded rollbacks")
    r.set_defaults(func=calls(run_rollback))


def run_canary(
    action: str,
    metadata: str,
    reason: str,
    *,
    model_config: str | None = None,
    k8s_manifest: str | None = None,
    weight: int | None = None,
    mirror_percent: int | None = None,
    model_name: str = MODEL_NAME,
    candidate: int | None = None,
    server: str | None = None,
    timeout: float = 120,
    requested_by: str = "unknown",
) -> int:
    """`canary deploy|route|promote|abort` (monitoring/canary.py, k8s_route.py)."""
    try:
        if k8s_manifest:
            result = k8s_route.act(
                action,
                k8s_manifest,
                metadata,
                model_name,
                reason,
                requested_by,
                candidate,
                weight,
                mirror_percent,
            )
        elif action == "route":
            raise canary.CanaryError(
                "route needs --k8s-manifest (our server's share is its --canary_traffic_share)"
            )
        elif not model_config:
            raise canary.CanaryError("needs --model-config (the server's) or --k8s-manifest")
        elif action == "deploy":
            if candidate is None or not server:
                raise canary.CanaryError("deploy needs --candidate and --server")
            result = canary.deploy(
                metadata,
                model_config,
                model_name,
                candidate,
                server.rstrip("/"),
                reason,
                requested_by,
                timeout,
            )
        else:
            result = canary.finish(metadata, model_config, model_name, action, reason, requested_by)
    except (k8s_route.RouteError, canary.CanaryError) as e:
        return error(f"canary {action} not done: {e}")
    where = f" in {k8s_manifest}" if k8s_manifest else ""
    print(f"canary {action} of {model_name}{where}: {json.dumps(result)}")
    return EXIT_OK


def run_watch(
    data_dir: str,
    output_dir: str,
    *,
    metadata: str | None = None,
    alert_state: str | None = None,
    server: str | None = None,
    model_config: str | None = None,
    model_name: str = MODEL_NAME,
    pipeline_arg: list[str] = (),
    timeout: float = 3600,
    interval: float = 300,
    max_checks: int = 1,
    logs: str | None = None,
    labels: str | None = None,
    report_dir: str | None = None,
    min_samples: int = config.MIN_SAMPLES,
    alpha: float = config.ALPHA,
    canary_max_checks: int = config.CANARY_MAX_CHECKS,
    canary_max_seconds: float = config.CANARY_MAX_SECONDS,
    shadow_first: bool = False,
    shadow_logs: str | None = None,
    shadow_min_rows: int = config.SHADOW_MIN_ROWS,
    requested_by: str = "monitor watch",
) -> int:
    """`watch`: `max_checks` checks of monitoring/watch.py, `interval` seconds apart."""
    from lineage import metadata_store

    command = watch.pipeline_command(output_dir, data_dir, metadata, list(pipeline_arg))
    metadata = metadata_store.resolve(metadata, output_dir)
    exit_code = EXIT_OK
    for index in range(max(1, max_checks)):
        if index:
            time.sleep(interval)
        check = watch.check_once(
            data_dir,
            metadata,
            command,
            alert_state=alert_state,
            timeout=timeout,
            server_url=server,
            model_config=model_config,
            model_name=model_name,
            requested_by=requested_by,
            logs=logs,
            labels=labels,
            policy=decide.Policy(
                min_samples=min_samples,
                alpha=alpha,
                max_checks=canary_max_checks,
                max_seconds=canary_max_seconds,
            ),
            report_dir=report_dir,
            shadow_first=shadow_first,
            shadow_logs=shadow_logs,
            shadow_policy=shadow.Policy(min_rows=shadow_min_rows, min_labelled=min_samples),
        )
        print_check(check)
        if check.problems:
            exit_code = EXIT_BAD_INPUT
    return exit_code


def print_check(check: watch.Check) -> None:
    """One line on what a watch check saw and did, then its problems."""
    reasons = "; ".join(check.reasons)
    if not check.reasons:
        print("watch: nothing new")
        return
    if check.shadow is not None and "verdict" in check.shadow:
        s = check.shadow
        print(
            f"watch: {reasons} -> shadow {s['verdict']} (MLMD execution "
            f"{s['execution_id']}): {s['why']}; canary {json.dumps(s['canary'])}"
        )
    elif check.decision is not None:
        d = check.decision
        print(
            f"watch: {reasons} -> {d.action} (MLMD execution {d.execution_id}): {d.reason}; "
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
            f"watch: {reasons} -> {pinned}pipeline exit {check.returncode}, new versions "
            f"{check.new_versions}, canary {json.dumps(check.deployed)}, "
            f"shadow {json.dumps(check.shadow)}"
        )
    else:
        print(f"watch: {reasons}")
    print_problems(check.problems)


def run_rollback(
    metadata: str,
    model_config: str,
    reason: str,
    *,
    model_name: str = MODEL_NAME,
    to: int | None = None,
    requested_by: str = "unknown",
    history: bool = False,
) -> int:
    """`rollback`: pin the previous blessed version (or `to`); `history` lists rollbacks."""
    try:
        if history:
            for item in rollback.history(rollback.writable_store(metadata)):
                print(json.dumps(item))
            return EXIT_OK
        result = rollback.rollback(metadata, model_config, model_name, reason, requested_by, to)
    except rollback.RollbackError as e:
        return error(f"rollback not done: {e}")
    print(
        f"rolled back {result['model_name']}: {result['from_version']} -> "
        f"{result['to_version']} (config {result['config_file']}, "
        f"MLMD execution {result['execution_id']})"
    )
    return EXIT_OK
