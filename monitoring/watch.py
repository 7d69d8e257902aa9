"""Continuous training trigger: a new data span or an open drift/skew incident
runs the pipeline, and a newly pushed (blessed) version is deployed as a canary.

One check (`check_once`):

1. reasons: `span-<N>` folders in the data dir whose span was never ingested
   (ML Metadata), and open `serving drift` / `training-serving skew`
   incidents in the alert state file (`monitor alert --state`);
2. no reason: nothing happens;
3. otherwise the pipeline command runs (bounded by a timeout); pushed
   versions before and after are compared in ML Metadata;
4. a new version is deployed as the canary when a server URL and model config
   file are given (`canary.deploy`, recorded in MLMD with the reasons). Before
   the pipeline runs, a model served under `latest` is pinned to the version
   it serves (`canary.pin`), so the push is not served to everyone at once.

While a canary is live (the `canary` label is set), a check does not run the
pipeline: it evaluates the canary (`decide.evaluate`: late labels from
`labels` joined to the request logs under `logs`, the A/B test, guard rails
from the server's metrics) and promotes it, aborts it or keeps it running,
each recorded in MLMD with an A/B report.

With `shadow_first`, a newly pushed version is deployed as the server's
shadow instead (monitoring/shadow_deploy.py: mirrored traffic, no user sees
it); while a shadow is live, a check judges it from the shadow records
(`shadow_logs`) and late labels and moves it on to the canary phase above,
unloads it, or keeps it running.

A check opens ML Metadata once and reads its graph once (`lineage.Metadata`),
plus once more after the pipeline it ran, for the versions that run pushed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import lineage
from core.constants import MODEL_NAME
from lineage import metadata_store
from monitoring import alerts, canary, decide, server_metrics, shadow, shadow_deploy

TRIGGER_RULES = ("serving drift", "training-serving skew")


@dataclasses.dataclass
class Check:
    reasons: list[str]
    ran_pipeline: bool = False
    returncode: int | None = None
    new_versions: list[int] = dataclasses.field(default_factory=list)
    deployed: dict | None = None
    pinned: dict | None = None
    decision: decide.Decision | None = None
    shadow: dict | None = None  # shadow_deploy.deploy or .evaluate of this check
    problems: list[str] = dataclasses.field(default_factory=list)


def data_spans(data_dir: str) -> list[int]:
    """Spans present in the data dir (`span-<N>` folders)."""
    spans = []
    for name in os.listdir(data_dir) if os.path.isdir(data_dir) else []:
        match = re.fullmatch(r"span-(\d+)", name)
        if match and os.path.isdir(os.path.join(data_dir, name)):
            spans.append(int(match.group(1)))
    return sorted(spans)


def open_metadata(metadata_path: str) -> lineage.Metadata | None:
    """The check's ML Metadata, opened read-write once (None: no store yet).

    Raises:
      lineage.metadata_store.MetadataError: the store cannot be opened.
    """
    if not metadata_store.exists(metadata_path):
        return None
    return lineage.Metadata.open(metadata_path)


def pushed(graph: lineage.Graph | None) -> set[int]:
    """Versions pushed (blessed) according to `graph` (None: no store yet)."""
    return {int(v) for v in lineage.pushed_versions(graph)} if graph is not None else set()


def reasons(data_dir: str, graph: lineage.Graph | None, alert_state: str | None) -> list[str]:
    """Why the pipeline should run now (empty: it should not).

    A span folder counts as new until it is ingested (`lineage.ingested_spans`:
    its data passed validation), so a span whose data failed is retried.
    """
    found = []
    ingested = lineage.ingested_spans(graph) if graph is not None else set()
    new = sorted(set(data_spans(data_dir)) - ingested)
    if new:
        found.append(f"new span(s) {new}")
    if alert_state:
        incidents = alerts.load_state(alert_state).get("incidents", {})
        for key in sorted(incidents):
            if key.split("/", 1)[0] in TRIGGER_RULES:
                found.append(f"open incident {key}")
    return found


def evaluate_shadow(
    check: Check,
    metadata: lineage.Metadata,
    server_url: str,
    model_config: str,
    model_name: str,
    shadow_logs: str | None,
    labels: str | None,
    policy: shadow.Policy | None,
    requested_by: str,
) -> bool:
    """Judges a live shadow into `check`; False when no shadow is live."""
    try:
        live = shadow_deploy.live(model_config, model_name)
    except (OSError, ValueError, canary.CanaryError) as e:
        check.problems.append(f"shadow state: {e}")
        return True
    if live is None:
        return False
    check.reasons.append(f"shadow {live['candidate']} live (stable {live['stable']})")
    if not shadow_logs:
        check.problems.append("a shadow is live: watch needs --shadow-logs to judge it")
        return True
    try:
        check.shadow = shadow_deploy.evaluate(
            metadata,
            model_config,
            model_name,
            shadow_logs,
            labels,
            server_url,
            requested_by,
            policy,
        )
    except (canary.CanaryError, OSError, ValueError) as e:
        check.problems.append(f"shadow decision not made: {e}")
    return True


def evaluate_canary(
    check: Check,
    metadata: lineage.Metadata,
    server_url: str,
    model_config: str,
    model_name: str,
    logs: str | None,
    labels: str | None,
    policy: decide.Policy | None,
    report_dir: str,
    requested_by: str,
) -> bool:
    """Evaluates a live canary into `check`; False when no canary is live."""
    try:
        live = canary.deployed(metadata, model_config, model_name)
    except canary.CanaryError as e:
        check.problems.append(str(e))
        return True
    if live is None:
        return False
    check.reasons.append(f"canary {live['candidate']} live (stable {live['stable']})")
    if not logs or not labels:
        check.problems.append("a canary is live: watch needs --logs and --labels to decide")
        return True
    metrics_text = None
    try:
        metrics_text = server_metrics.fetch(f"{server_url}/monitoring/prometheus/metrics")
    except server_metrics.requests.RequestException as e:
        check.problems.append(f"server metrics (no guard rails this check): {e}")
    try:
        check.decision = decide.evaluate(
            metadata,
            model_config,
            model_name,
            logs,
            labels,
            metrics_text=metrics_text,
            policy=policy,
            report_dir=report_dir,
            requested_by=requested_by,
        )
        check.problems += check.decision.problems
    except (canary.CanaryError, OSError, ValueError) as e:
        check.problems.append(f"canary decision not made: {e}")
    return True


def check_once(
    data_dir: str,
    metadata_path: str,
    pipeline_cmd: list[str],
    *,
    alert_state: str | None = None,
    timeout: float = 3600,
    server_url: str | None = None,
    model_config: str | None = None,
    model_name: str = MODEL_NAME,
    requested_by: str = "monitor watch",
    logs: str | None = None,
    labels: str | None = None,
    policy: decide.Policy | None = None,
    report_dir: str | None = None,
    shadow_first: bool = False,
    shadow_logs: str | None = None,
    shadow_policy: shadow.Policy | None = None,
) -> Check:
    """One check; see the module docstring."""
    serving = bool(server_url and model_config)
    check = Check([])
    metadata = open_metadata(metadata_path)
    if (
        serving
        and metadata is not None
        and evaluate_shadow(
            check,
            metadata,
            server_url,
            model_config,
            model_name,
            shadow_logs,
            labels,
            shadow_policy,
            requested_by,
        )
    ):
        return check
    if serving and metadata is not None:
        report_dir = report_dir or os.path.join(os.path.dirname(metadata_path), "monitoring")
        if evaluate_canary(
            check,
            metadata,
            server_url,
            model_config,
            model_name,
            logs,
            labels,
            policy,
            report_dir,
            requested_by,
        ):
            return check
    graph = metadata.graph if metadata is not None else None
    check.reasons = reasons(data_dir, graph, alert_state)
    if not check.reasons:
        return check
    if serving and metadata is not None:
        try:
            check.pinned = canary.pin(
                metadata,
                model_config,
                model_name,
                server_url,
                "watch: pin the served version before retraining",
                requested_by,
            )
        except canary.CanaryError as e:
            check.problems.append(f"pin of the served version: {e}")
    before = pushed(graph)
    check.ran_pipeline = True
    try:
        result = subprocess.run(pipeline_cmd, timeout=timeout, capture_output=True, text=True)
        check.returncode = result.returncode
        if result.returncode != 0:
            check.problems.append(
                f"pipeline exited {result.returncode}: {(result.stdout + result.stderr)[-1500:]}"
            )
    except (OSError, subprocess.TimeoutExpired) as e:
        check.problems.append(f"pipeline did not run to the end: {e}")
        return check
    # What the pipeline run wrote: the graph is read again.
    if metadata is None:
        metadata = open_metadata(metadata_path)
    else:
        metadata.refresh()
    check.new_versions = sorted(pushed(metadata.graph if metadata else None) - before)
    if check.new_versions and serving and shadow_first:
        try:
            check.shadow = shadow_deploy.deploy(
                metadata,
                model_config,
                model_name,
                check.new_versions[-1],
                server_url,
                "watch: " + "; ".join(check.reasons),
                requested_by,
            )
        except canary.CanaryError as e:
            check.problems.append(f"shadow deploy of {check.new_versions[-1]}: {e}")
    elif check.new_versions and serving:
        try:
            check.deployed = canary.deploy(
                metadata,
                model_config,
                model_name,
                check.new_versions[-1],
                server_url,
                "watch: " + "; ".join(check.reasons),
                requested_by,
            )
        except canary.CanaryError as e:
            check.problems.append(f"canary deploy of {check.new_versions[-1]}: {e}")
    return check


def pipeline_command(
    output_dir: str, data_dir: str, metadata: str | None = None, extra: list[str] = ()
) -> list[str]:
    """The taxi-pipeline command line a check runs (`metadata`: None for the runner's default)."""
    return [
        sys.executable,
        "-m",
        "pipeline.local_runner",
        "--output-dir",
        output_dir,
        "--data-dir",
        data_dir,
        *(["--metadata", metadata] if metadata else []),
        *extra,
    ]
