"""Rollback: serve the previous blessed version (or a named one) at once.

Nothing is deleted. The model's entry in the server's model config file
(`--model_config_file`, re-read every `--model_config_file_poll_wait_seconds`)
gets `model_version_policy { specific { versions: V } }`: the server loads V,
then unloads the others (availability preserving), and `latest` pushes no
longer replace it until the policy is changed back. The rest of the config
(other models, logging_config) is kept. The decision is recorded in ML
Metadata as an execution of type `Rollback` (properties `model_name`,
`from_version`, `to_version`, `reason`, `requested_by`, `config_file`) whose
input is the target version's `PushedModel` artifact.
"""

from __future__ import annotations

import os

import ml_metadata as mlmd
from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2

import lineage
from lineage import metadata_store
from serving import config as serving_config
from serving.model_manager import list_versions

EXECUTION_TYPE = "Rollback"
PROPERTIES = ("model_name", "from_version", "to_version", "reason", "requested_by", "config_file")


class RollbackError(ValueError):
    """The rollback cannot be done (nothing is changed)."""


def writable_store(metadata_path: str) -> mlmd.MetadataStore:
    """A read-write store: an existing MLMD SQLite file or a `mysql://` URL."""
    return writable(metadata_path).store


def writable(metadata: str | lineage.Metadata) -> lineage.Metadata:
    """The command's ML Metadata: `metadata` itself when the caller has it open
    already, else the existing target `metadata` opened read-write (once)."""
    if isinstance(metadata, lineage.Metadata):
        return metadata
    if not metadata_store.exists(metadata):
        raise RollbackError(f"metadata not found: {metadata}")
    try:
        return lineage.Metadata.open(metadata)
    except metadata_store.MetadataError as e:
        raise RollbackError(str(e)) from None


def read_config(path: str):
    with open(path) as f:
        return serving_config.parse_model_config(f.read())


def model_entry(server_config, model_name: str):
    for entry in server_config.model_config_list.config:
        if entry.name == model_name:
            return entry
    raise RollbackError(f"model {model_name!r} is not in the model config file")


def served_version(entry) -> int | None:
    """The version the entry makes the server serve (None: nothing on disk)."""
    on_disk = list_versions(entry.base_path)
    policy = entry.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
        return max(policy.specific.versions)
    return max(on_disk) if on_disk else None


def choose_target(
    blessed: list[int], on_disk: list[int], current: int | None, named: int | None = None
) -> int:
    """The named version, else the newest blessed version older than `current`.

    Raises:
      RollbackError: the target is not blessed, not on disk, or there is none.
    """
    candidates = sorted(set(blessed) & set(on_disk))
    if named is not None:
        if named not in candidates:
            raise RollbackError(
                f"version {named} is not a blessed version on disk "
                f"(blessed on disk: {candidates or 'none'})"
            )
        return named
    older = [v for v in candidates if current is None or v < current]
    if not older:
        raise RollbackError(
            f"no blessed version older than {current} on disk "
            f"(blessed on disk: {candidates or 'none'})"
        )
    return older[-1]


def pin_version(server_config, model_name: str, version: int) -> str:
    """Text of `server_config` with `model_name` pinned to `version`."""
    entry = model_entry(server_config, model_name)
    entry.model_version_policy.Clear()
    entry.model_version_policy.specific.versions.append(version)
    for label, labelled in list(entry.version_labels.items()):
        if labelled != version:  # a label may only name a served version
            del entry.version_labels[label]
    return text_format.MessageToString(server_config)


def write_atomically(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def record_execution(metadata: lineage.Metadata, type_name: str, values: dict, version: int) -> int:
    """Records a COMPLETE execution of `type_name` with string `values` as
    properties and version `version`'s PushedModel as input; returns its id.
    On MySQL, a write that lost a deadlock (rolled back) is retried."""
    store = metadata.store
    execution_type = metadata_store_pb2.ExecutionType(name=type_name)
    for name in values:
        execution_type.properties[name] = metadata_store_pb2.STRING
    type_id = metadata_store.retry(store.put_execution_type, execution_type, can_add_fields=True)
    execution = metadata_store_pb2.Execution(
        type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE
    )
    for name, value in values.items():
        execution.properties[name].string_value = str(value)
    graph = metadata.graph
    pushed = lineage.pushed_versions(graph).get(str(version))
    events = []
    if pushed is not None:
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)
        events.append((graph.artifacts[pushed], event))
    execution_id, _, _ = metadata_store.retry(store.put_execution, execution, events, [])
    return execution_id


def record(
    metadata: lineage.Metadata,
    model_name: str,
    from_version,
    to_version: int,
    reason: str,
    requested_by: str,
    config_file: str,
) -> int:
    """Records the rollback in MLMD; returns the execution id."""
    values = {
        "model_name": model_name,
        "from_version": str(from_version or ""),
        "to_version": str(to_version),
        "reason": reason,
        "requested_by": requested_by,
        "config_file": os.path.abspath(config_file),
    }
    return record_execution(metadata, EXECUTION_TYPE, values, to_version)


def history(store: mlmd.MetadataStore) -> list[dict]:
    """Recorded rollbacks, oldest first."""
    try:
        executions = store.get_executions_by_type(EXECUTION_TYPE)
    except mlmd.errors.NotFoundError:
        return []
    return [
        dict(
            {k: e.properties[k].string_value for k in PROPERTIES},
            id=e.id,
            time_ms=e.create_time_since_epoch,
        )
        for e in executions
    ]


def rollback(
    metadata_path: str,
    config_file: str,
    model_name: str,
    reason: str,
    requested_by: str,
    to_version: int | None = None,
) -> dict:
    """Pins the served model to the target version and records it.

    Raises:
      RollbackError: nothing was changed (bad config, no target, no metadata).
    """
    if not reason.strip() or not requested_by.strip():
        raise RollbackError("a rollback needs a reason and who asked for it")
    metadata = writable(metadata_path)
    try:
        server_config = read_config(config_file)
    except (OSError, ValueError) as e:
        raise RollbackError(f"model config file {config_file}: {e}") from None
    entry = model_entry(server_config, model_name)
    current = served_version(entry)
    blessed = [int(v) for v in lineage.pushed_versions(metadata.graph)]
    target = choose_target(blessed, list(list_versions(entry.base_path)), current, to_version)
    write_atomically(config_file, pin_version(server_config, model_name, target))
    execution_id = record(metadata, model_name, current, target, reason, requested_by, config_file)
    return {
        "model_name": model_name,
        "from_version": current,
        "to_version": target,
        "execution_id": execution_id,
        "config_file": config_file,
    }
