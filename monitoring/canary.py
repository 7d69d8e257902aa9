"""Canary deployment through the server's model config file: deploy, promote, abort.

The server routes `--canary_traffic_share` of the requests that name neither
a version nor a label to the version labelled `canary`, the rest to `stable`
(serving/README.md). TF Serving only accepts a label on an AVAILABLE version,
so `deploy` is two writes: first the version policy `specific {stable,
candidate}`, then, once the server reports both AVAILABLE, the labels.
`promote` labels the candidate `stable` and unloads the old one; `abort`
unloads the candidate. Nothing is deleted. Each action is recorded in ML
Metadata as an execution of type `Canary` (`action`, `model_name`, `stable`,
`candidate`, `reason`, `requested_by`) with the candidate's PushedModel as input.
"""

from __future__ import annotations

import time

import requests
from google.protobuf import text_format

from monitoring import rollback
from monitoring.rollback import RollbackError as CanaryError  # noqa: F401 - same failure kind
from pipeline import lineage
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


def _context(metadata_path: str, config_file: str, model_name: str):
    store = rollback.writable_store(metadata_path)
    try:
        server_config = rollback.read_config(config_file)
    except (OSError, ValueError) as e:
        raise CanaryError(f"model config file {config_file}: {e}") from None
    entry = rollback.model_entry(server_config, model_name)
    return store, server_config, entry


def _record(store, action, model_name, stable, candidate, reason, requested_by) -> int:
    values = {
        "action": action,
        "model_name": model_name,
        "stable": stable,
        "candidate": candidate,
        "reason": reason,
        "requested_by": requested_by,
    }
    return rollback.record_execution(store, EXECUTION_TYPE, values, candidate)


def deploy(
    metadata_path: str,
    config_file: str,
    model_name: str,
    candidate: int,
    server_url: str,
    reason: str,
    requested_by: str,
    timeout: float = 120,
) -> dict:
    """Serves `candidate` (blessed, on disk) as the canary next to the stable version."""
    store, server_config, entry = _context(metadata_path, config_file, model_name)
    stable = entry.version_labels.get("stable") or rollback.served_version(entry)
    blessed = {int(v) for v in lineage.pushed_versions(lineage.Graph.load(store))}
    if candidate not in blessed or candidate not in list_versions(entry.base_path):
        raise CanaryError(f"version {candidate} is not a blessed version on disk")
    if candidate == stable:
        raise CanaryError(f"version {candidate} is already the stable version")
    _set(entry, [stable, candidate], {"stable": stable})
    _write(config_file, server_config)
    wait_available(server_url, model_name, [stable, candidate], timeout)
    _set(entry, [stable, candidate], {"stable": stable, "canary": candidate})
    _write(config_file, server_config)
    wait_label(server_url, model_name, "canary", candidate, timeout)
    execution_id = _record(store, "deploy", model_name, stable, candidate, reason, requested_by)
    return {"stable": stable, "candidate": candidate, "execution_id": execution_id}


def finish(
    metadata_path: str,
    config_file: str,
    model_name: str,
    action: str,
    reason: str,
    requested_by: str,
) -> dict:
    """`promote` (the canary becomes the only, stable version) or `abort` (back to stable)."""
    store, server_config, entry = _context(metadata_path, config_file, model_name)
    stable = entry.version_labels.get("stable")
    candidate = entry.version_labels.get("canary")
    if not stable or not candidate:
        raise CanaryError(
            f"no canary of {model_name} is deployed (labels: "
            f"{dict(entry.version_labels) or 'none'})"
        )
    keep = candidate if action == "promote" else stable
    _set(entry, [keep], {"stable": keep})
    _write(config_file, server_config)
    execution_id = _record(store, action, model_name, stable, candidate, reason, requested_by)
    return {
        "stable": keep,
        "previous_stable": stable,
        "candidate": candidate,
        "execution_id": execution_id,
    }
