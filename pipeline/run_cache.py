"""Run-level cache: skip a run whose inputs are identical to the last success.

A re-run with nothing changed would only re-confirm TFX cache hits for every
component; importing TFX and walking the DAG costs several seconds for that.
The fingerprint covers everything a run reads: each span file's path, size
and modification time (as ExampleGen's own fingerprint does), the schema's
content, the code digests and the run arguments. ``--force`` bypasses it and
goes through TFX, whose per-component cache then applies.
"""

from __future__ import annotations

import hashlib
import json
import os

STATE_FILE = "last_run.json"


def inputs_fingerprint(
    span_folders: dict[int, str], schema_dir: str, code: dict[str, str], arguments: dict
) -> str:
    digest = hashlib.sha256()
    for span, folder in sorted(span_folders.items()):
        for name in sorted(os.listdir(folder)):
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{span}/{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    with open(os.path.join(schema_dir, "schema.pbtxt"), "rb") as f:
        digest.update(f.read())
    digest.update(json.dumps({"code": code, "args": arguments}, sort_keys=True).encode())
    return digest.hexdigest()


def load(output_dir: str) -> dict | None:
    """The record of the last successful run, or None."""
    try:
        with open(os.path.join(output_dir, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(output_dir: str, record: dict) -> None:
    """Atomically replaces the record of the last successful run."""
    path = os.path.join(output_dir, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


def is_fresh(record: dict | None, fingerprint: str) -> bool:
    """True when ``record`` is for these inputs and its push is still in place."""
    if not record or record.get("fingerprint") != fingerprint:
        return False
    pushed = record.get("pushed_to")
    return not pushed or os.path.isdir(pushed)
