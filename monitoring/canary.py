"""Canary deployment through the server's model config file: deploy, promote, abort.

The server routes `--canary_traffic_share` of the requests that name neither
a version nor a label to the version labelled `canary`, the rest to `stable`
(serving/README.md). TF Serving only accepts a label on an AVAILABLE version,
so `deploy` is two writes: first the version policy `specific {stable,
candidate}`, then, once the server reports both AVAILABLE, the labels.
`promote` labels the candidate `stable` and unloads the old one; `abort`
unloads the candidate. Nothing is deleted. Each action is recorded in ML
Metadata as an execution of type `Canary` (`action`, `model_name`, `stable`,
`candidate`, `reason`, `requested_by`, plus the figures of an automatic
decision: `verdict`, `stable_n`, `stable_accuracy`, `canary_n`,
`canary_accuracy`, `z`, `p_value`, ...) with the candidate's PushedModel as input.

Under the `latest` policy nothing is pinned yet; `deploy` then takes the
version the server reports AVAILABLE (the newest one other than the
candidate; if the server already switched to the candidate, the newest
blessed version on disk older than it) as the stable version and pins it
(`specific`) together with the candidate. `pin` does the same without a
candidate: `watch` calls it before running the pipeline, so a push is not
served before it has been a canary.

Each function takes the command's ML Metadata (`lineage.Metadata`, opened
once, its graph read once) or a target it opens itself.
"""

from __future__ import annotations

import time

import requests
from google.protobuf import text_format
from ml_metadata import errors as mlmd_errors

import lineage
from monitoring import rollback
from monitoring.rollback import RollbackError as CanaryError  # noqa: F401 - same failure kind
from serving.model_manager import list_versions

EXECUTION_TYPE = "Canary"


def _set(entry, versions: list[int], labels: dict[str, int]) -> None:
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.extend(sorted(set(versions)))
    entry.version_labels.clear()
    for label, version in labels.items():
        entry.version_labels[label] = version


def _write(config_file: str, server_config) -> None:
    rollback.write_atomically(config_file, text_format.MessageToString(server_config))


def wait_available(server_url: str, model: str, versions: list[int], timeout: float) -> None:
    """Waits until the server reports every version AVAILABLE (bounded)."""
    deadline = time.monotonic() + timeout
    states = {}
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"{server_url}/v1/models/{model}", timeout=5)
            states = {
                int(s["version"]): s["state"]
                for s in response.json().get("model_version_status", [])
            }
            if all(states.get(v) == "AVAILABLE" for v in versions):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.2)
    raise CanaryError(
        f"versions {versions} of {model} not AVAILABLE after {timeout}s (states: {states})"
    )


def wait_label(server_url: str, model: str, label: str, version: int, timeout: float) -> None:
    """Waits until `label` resolves to `version` (the label's metadata call, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = requests.get(
                f"{server_url}/v1/models/{model}/labels/{label}/metadata", timeout=5
            )
            if response.ok and str(response.json()["model_spec"]["version"]) == str(version):
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise CanaryError(f"label {label} of {model} not on version {version} after {timeout}s")


def _context(metadata: str | lineage.Metadata, config_file: str, model_name: str):
    """(the command's `lineage.Metadata`, the server config, the model's entry)."""
    metadata = rollback.writable(metadata)
    try:
        server_config = rollback.read_config(config_file)
    except (OSError, ValueError) as e:
        raise CanaryError(f"model config file {config_file}: {e}") from None
    entry = rollback.model_entry(server_config, model_name)
    return metadata, server_config, entry


def _record(
    metadata: lineage.Metadata,
    action,
    model_name,
    stable,
    candidate,
    reason,
    requested_by,
    figures=None,
) -> int:
    values = {
        "action": action,
        "model_name": model_name,
        "stable": stable,
        "candidate": candidate,
        "reason": reason,
        "requested_by": requested_by,
    }
    for name, value in (figures or {}).items():
        values[name] = "" if value is None else value
    return rollback.record_execution(metadata, EXECUTION_TYPE, values, candidate)


def available_versions(server_url: str, model: str) -> list[int]:
    """Versions the server reports AVAILABLE (raises CanaryError if it cannot be asked)."""
    try:
        response = requests.get(f"{server_url}/v1/models/{model}", timeout=5)
        response.raise_for_status()
        return sorted(
            int(s["version"])
            for s in response.json().get("model_version_status", [])
            if s["state"] == "AVAILABLE"
        )
    except (requests.RequestException, ValueError, KeyError) as e:
        raise CanaryError(
            f"cannot read the version status of {model} at {server_url}: {e}"
        ) from None


def _deployed(entry, model_name: str) -> tuple:
    """(stable, candidate) labels of a deployed canary; CanaryError if there is none."""
    stable = entry.version_labels.get("stable")
    candidate = entry.version_labels.get("canary")
    if not stable or not candidate:
        raise CanaryError(
            f"no canary of {model_name} is deployed (labels: "
            f"{dict(entry.version_labels) or 'none'})"
        )
    return stable, candidate


def pinned_stable(entry) -> int | None:
    """The stable version the entry pins (a `stable` label or a `specific` policy)."""
    if entry.version_labels.get("stable"):
        return int(entry.version_labels["stable"])
    policy = entry.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
        return max(policy.specific.versions)
    return None


def served_stable(entry, server_url: str, model: str, blessed, candidate=None) -> int:
    """The version serving now under `latest`: the newest AVAILABLE one other than
    `candidate`, else the newest blessed version on disk older than `candidate`."""
    available = [v for v in available_versions(server_url, model) if v != candidate]
    if available:
        return available[-1]
    older = sorted(
        v
        for v in set(blessed) & set(list_versions(entry.base_path))
        if candidate is None or v < candidate
    )
    if not older:
        raise CanaryError(f"no served version of {model} to keep as the stable version")
    return older[-1]


def pin(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    server_url: str,
    reason: str,
    requested_by: str,
) -> dict:
    """Pins the currently served version as `stable` (no-op if already pinned)."""
    metadata, server_config, entry = _context(metadata, config_file, model_name)
    stable = pinned_stable(entry)
    if stable is not None:
        return {"stable": stable, "pinned": False, "execution_id": None}
    blessed = {int(v) for v in lineage.pushed_versions(metadata.graph)}
    stable = served_stable(entry, server_url, model_name, blessed)
    _set(entry, [stable], {"stable": stable})
    _write(config_file, server_config)
    execution_id = _record(metadata, "pin", model_name, stable, stable, reason, requested_by)
    return {"stable": stable, "pinned": True, "execution_id": execution_id}


def serve_next_to_stable(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    candidate: int,
    server_url: str,
    label: str,
    timeout: float,
) -> tuple:
    """Serves `candidate` (blessed, on disk) labelled `label` next to the stable version.

    Returns (the command's `lineage.Metadata`, stable version, whether stable
    was pinned now because the policy was `latest`).
    """
    metadata, server_config, entry = _context(metadata, config_file, model_name)
    blessed = {int(v) for v in lineage.pushed_versions(metadata.graph)}
    stable = pinned_stable(entry)
    pinned_now = stable is None
    if pinned_now:  # `latest`: keep what the server serves now as the stable version
        stable = served_stable(entry, server_url, model_name, blessed, candidate)
    if candidate not in blessed or candidate not in list_versions(entry.base_path):
        raise CanaryError(f"version {candidate} is not a blessed version on disk")
    if candidate == stable:
        raise CanaryError(f"version {candidate} is already the stable version")
    _set(entry, [stable, candidate], {"stable": stable})
    _write(config_file, server_config)
    wait_available(server_url, model_name, [stable, candidate], timeout)
    _set(entry, [stable, candidate], {"stable": stable, label: candidate})
    _write(config_file, server_config)
    wait_label(server_url, model_name, label, candidate, timeout)
    return metadata, stable, pinned_now


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
    """Serves `candidate` (blessed, on disk) as the canary next to the stable version.

    `metadata`: ML Metadata already open for this command, or a target to open.
    """
    metadata, stable, pinned_now = serve_next_to_stable(
        metadata, config_file, model_name, candidate, server_url, "canary", timeout
    )
    if pinned_now:
        reason += f" (policy was latest: version {stable} pinned as stable)"
    execution_id = _record(metadata, "deploy", model_name, stable, candidate, reason, requested_by)
    return {
        "stable": stable,
        "candidate": candidate,
        "pinned_stable": pinned_now,
        "execution_id": execution_id,
    }


def finish(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    action: str,
    reason: str,
    requested_by: str,
    figures: dict | None = None,
) -> dict:
    """`promote` (the canary becomes the only, stable version) or `abort` (back to stable).

    `metadata`: ML Metadata already open for this command, or a target to open.
    """
    metadata, server_config, entry = _context(metadata, config_file, model_name)
    stable, candidate = _deployed(entry, model_name)
    keep = candidate if action == "promote" else stable
    _set(entry, [keep], {"stable": keep})
    _write(config_file, server_config)
    execution_id = _record(
        metadata, action, model_name, stable, candidate, reason, requested_by, figures
    )
    return {
        "stable": keep,
        "previous_stable": stable,
        "candidate": candidate,
        "execution_id": execution_id,
    }


def deployed(metadata: str | lineage.Metadata, config_file: str, model_name: str) -> dict | None:
    """The live canary: {"stable", "candidate", "deploy_id", "deployed_at" (unix s),
    "holds": [execution ids of `hold` decisions since]}, None without one."""
    metadata, _, entry = _context(metadata, config_file, model_name)
    stable = entry.version_labels.get("stable")
    candidate = entry.version_labels.get("canary")
    if not stable or not candidate:
        return None
    try:
        executions = metadata.store.get_executions_by_type(EXECUTION_TYPE)
    except mlmd_errors.NotFoundError:
        executions = []
    mine = [e for e in executions if e.properties["model_name"].string_value == model_name]
    deploys = [
        e
        for e in mine
        if e.properties["action"].string_value == "deploy"
        and e.properties["candidate"].string_value == str(candidate)
    ]
    if not deploys:
        raise CanaryError(
            f"canary {candidate} of {model_name} is labelled but no deploy is recorded in MLMD"
        )
    deploy = max(deploys, key=lambda e: e.id)
    holds = [
        e.id for e in mine if e.id > deploy.id and e.properties["action"].string_value == "hold"
    ]
    return {
        "stable": int(stable),
        "candidate": int(candidate),
        "deploy_id": deploy.id,
        "deployed_at": deploy.create_time_since_epoch / 1000.0,
        "holds": holds,
    }


def hold(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    reason: str,
    requested_by: str,
    figures: dict | None = None,
) -> dict:
    """Records a decision to keep the canary running (nothing changes in serving)."""
    metadata, _, entry = _context(metadata, config_file, model_name)
    stable, candidate = _deployed(entry, model_name)
    execution_id = _record(
        metadata, "hold", model_name, stable, candidate, reason, requested_by, figures
    )
    return {"stable": stable, "candidate": candidate, "execution_id": execution_id}
