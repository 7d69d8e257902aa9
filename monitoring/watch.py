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
   file are given (`canary.deploy`, recorded in MLMD with the reasons).

Promotion or abort stay separate decisions (`monitor ab`, `monitor canary`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess

from monitoring import alerts, canary
from monitoring.baselines import _raw_examples_by_span
from pipeline import lineage

TRIGGER_RULES = ("serving drift", "training-serving skew")


@dataclasses.dataclass
class Check:
    reasons: list[str]
    ran_pipeline: bool = False
    returncode: int | None = None
    new_versions: list[int] = dataclasses.field(default_factory=list)
    deployed: dict | None = None
    problems: list[str] = dataclasses.field(default_factory=list)


def data_spans(data_dir: str) -> list[int]:
    """Spans present in the data dir (`span-<N>` folders)."""
    spans = []
    for name in os.listdir(data_dir) if os.path.isdir(data_dir) else []:
        match = re.fullmatch(r"span-(\d+)", name)
        if match and os.path.isdir(os.path.join(data_dir, name)):
            spans.append(int(match.group(1)))
    return sorted(spans)


def _graph(metadata_path: str):
    if not os.path.exists(metadata_path):
        return None
    return lineage.Graph.load(lineage.open_store(metadata_path))


def ingested_spans(metadata_path: str) -> list[int]:
    graph = _graph(metadata_path)
    return sorted(_raw_examples_by_span(graph)) if graph is not None else []


def pushed(metadata_path: str) -> set[int]:
    graph = _graph(metadata_path)
    return {int(v) for v in lineage.pushed_versions(graph)} if graph is not None else set()


def reasons(data_dir: str, metadata_path: str, alert_state: str | None) -> list[str]:
    """Why the pipeline should run now (empty: it should not)."""
    found = []
    new = sorted(set(data_spans(data_dir)) - set(ingested_spans(metadata_path)))
    if new:
        found.append(f"new span(s) {new}")
    if alert_state:
        incidents = alerts.load_state(alert_state).get("incidents", {})
        for key in sorted(incidents):
            if key.split("/", 1)[0] in TRIGGER_RULES:
                found.append(f"open incident {key}")
    return found


def check_once(
    data_dir: str,
    metadata_path: str,
    pipeline_cmd: list[str],
    *,
    alert_state: str | None = None,
    timeout: float = 3600,
    server_url: str | None = None,
    model_config: str | None = None,
    model_name: str = "taxi",
    requested_by: str = "monitor watch",
) -> Check:
    """One check; see the module docstring."""
    check = Check(reasons(data_dir, metadata_path, alert_state))
    if not check.reasons:
        return check
    before = pushed(metadata_path)
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
    check.new_versions = sorted(pushed(metadata_path) - before)
    if check.new_versions and server_url and model_config:
        try:
            check.deployed = canary.deploy(
                metadata_path,
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
