"""A shadow phase before the canary: the candidate sees mirrored traffic, no user sees it.

The server mirrors `--shadow_traffic_share` of the predict calls to the version
labelled `shadow` when started with `--shadow_version_label=shadow`
(serving/shadow.py); the label is moved in the server's model config file,
like the canary's (monitoring/canary.py):

* `deploy`: pins the served version as `stable` if needed, loads the
  candidate next to it (`specific {stable, candidate}`), then labels it
  `shadow` once both are AVAILABLE;
* `evaluate`: compares the shadow with the stable version on the mirrored
  requests (monitoring/shadow.py: error rate, and with late labels both
  accuracies on the same requests) and acts on the verdict: `pass` moves
  the candidate on to a canary (`canary.deploy`), `reject` unloads it, and
  `insufficient data` keeps the shadow running.

Deploy, pass and reject are recorded in ML Metadata as executions of type
`Shadow` (`action`, `model_name`, `stable`, `candidate`, `reason`,
`requested_by`, and the figures of the comparison).
"""

from __future__ import annotations

import lineage
from monitoring import canary, quality, rollback, shadow

LABEL = "shadow"
EXECUTION_TYPE = "Shadow"
FIGURES = (
    "rows",
    "shadow_error_rate",
    "agreement",
    "mean_abs_diff",
    "labelled",
    "stable_accuracy",
    "shadow_accuracy",
)


def _record(metadata, action, model_name, stable, candidate, reason, requested_by, figures=None):
    values = {
        "action": action,
        "model_name": model_name,
        "stable": stable,
        "candidate": candidate,
        "reason": reason,
        "requested_by": requested_by,
    }
    figures = figures or {}
    for name in FIGURES:  # always every property: MLMD types may only grow
        values[name] = "" if figures.get(name) is None else figures[name]
    return rollback.record_execution(metadata, EXECUTION_TYPE, values, candidate)


def live(config_file: str, model_name: str) -> dict | None:
    """{"stable", "candidate"} of the shadow labelled in the config file, or None."""
    entry = rollback.model_entry(rollback.read_config(config_file), model_name)
    stable, candidate = entry.version_labels.get("stable"), entry.version_labels.get(LABEL)
    if not stable or not candidate:
        return None
    return {"stable": int(stable), "candidate": int(candidate)}


def deploy(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    candidate: int,
    server_url: str,
    reason: str,
    requested_by: str,
    timeout: float = 120,
) -> dict:
    """Serves `candidate` (blessed, on disk) as the shadow of the stable version.

    `metadata`: ML Metadata already open for this command, or a target to open.
    """
    metadata, stable, pinned_now = canary.serve_next_to_stable(
        metadata, config_file, model_name, candidate, server_url, LABEL, timeout
    )
    if pinned_now:
        reason += f" (policy was latest: version {stable} pinned as stable)"
    execution_id = _record(metadata, "deploy", model_name, stable, candidate, reason, requested_by)
    return {"stable": stable, "candidate": candidate, "execution_id": execution_id}


def evaluate(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    shadow_logs: str,
    labels_path: str | None,
    server_url: str,
    requested_by: str,
    policy: shadow.Policy | None = None,
    timeout: float = 120,
) -> dict | None:
    """Judges the live shadow and acts on the verdict; None when no shadow is live.

    Returns:
      {"stable", "candidate", "verdict", "why", "figures", "execution_id",
       "canary"} (`canary`: what `canary.deploy` returned after a pass).
    """
    current = live(config_file, model_name)
    if current is None:
        return None
    stable, candidate = current["stable"], current["candidate"]
    labels = quality.read_labels_path(labels_path) if labels_path else None
    rows = [
        r
        for r in shadow.read(shadow_logs).rows
        if r["stable_version"] == stable and r["shadow_version"] == candidate
    ]
    entry = shadow.compare(rows, labels).get(f"{stable}->{candidate}")
    if entry is None:
        verdict, why = "insufficient data", "no mirrored rows yet"
        figures = {"rows": 0}
    else:
        verdict, why = shadow.verdict(entry, policy)
        figures = {
            "rows": entry["rows"],
            "shadow_error_rate": entry["shadow_error_rate"],
            "agreement": entry["agreement"],
            "mean_abs_diff": entry["mean_abs_diff"],
            "labelled": entry["labelled"],
            "stable_accuracy": (entry["stable_quality"] or {}).get("accuracy"),
            "shadow_accuracy": (entry["shadow_quality"] or {}).get("accuracy"),
        }
    result = {
        "stable": stable,
        "candidate": candidate,
        "verdict": verdict,
        "why": why,
        "figures": figures,
        "execution_id": None,
        "canary": None,
    }
    if verdict == "insufficient data":
        return result
    metadata, server_config, model = canary._context(metadata, config_file, model_name)
    action = "pass" if verdict == "pass" else "reject"
    result["execution_id"] = _record(
        metadata, action, model_name, stable, candidate, why, requested_by, figures
    )
    # the shadow label goes first: the candidate stays loaded for a pass
    keep = [stable, candidate] if action == "pass" else [stable]
    canary._set(model, keep, {"stable": stable})
    canary._write(config_file, server_config)
    if action == "pass":
        result["canary"] = canary.deploy(
            metadata,
            config_file,
            model_name,
            candidate,
            server_url,
            f"shadow passed: {why}",
            requested_by,
            timeout,
        )
    return result
