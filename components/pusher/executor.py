"""Pusher executor that publishes a model version with one atomic rename.

TFX's stock Pusher copies file by file into ``<base>/<version>``, so a model
server polling the directory can see a half-written version. This executor
copies into a hidden sibling (``.<version>.tmp``, which TF Serving ignores as
non-numeric), then renames it into place. Versions are Unix timestamps, bumped
past the newest existing version so two pushes in one second never collide. A
model whose files are identical to the newest version is not pushed again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

BEHAVIORAL_BLESSING_KEY = "behavioral_blessing"


def next_version(base_directory: str, now: float | None = None) -> int:
    """A version number newer than every numeric version under ``base_directory``."""
    version = int(time.time() if now is None else now)
    newest = newest_version(base_directory)
    return version if newest is None else max(version, newest + 1)


def tree_digest(root: str) -> str:
    """Content digest of every file under ``root`` (relative paths included)."""
    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def newest_version(base_directory: str) -> int | None:
    """The highest numeric version under ``base_directory``, if any."""
    if not os.path.isdir(base_directory):
        return None
    versions = [int(n) for n in os.listdir(base_directory) if n.isdigit()]
    return max(versions) if versions else None


def atomic_copy_dir(source: str, base_directory: str, version: int) -> str:
    """Copies ``source`` to ``base_directory/version`` so it appears all at once.

    Returns:
      The final path of the version directory.

    Raises:
      FileExistsError: the version directory already exists.
    """
    os.makedirs(base_directory, exist_ok=True)
    final = os.path.join(base_directory, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"model version directory already exists: {final}")
    staging = os.path.join(base_directory, f".{version}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging)
        _fsync_tree(staging)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _fsync_tree(root: str) -> None:
    """Flushes every file of ``root`` to disk before it is published."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class AtomicPushExecutor(tfx_pusher_executor.Executor):
    """TFX Pusher executor with an atomic, collision-free filesystem push."""

    def CheckBlessing(self, input_dict: dict[str, list[types.Artifact]]) -> bool:
        """Pusher's model and infra blessing checks, then the behavioral blessing's."""
        if not super().CheckBlessing(input_dict):
            return False
        for blessing in input_dict.get(BEHAVIORAL_BLESSING_KEY) or []:
            if blessing.get_int_custom_property("blessed") != 1:
                logging.info("Model failed the behavioral checks (%s)", blessing.uri)
                return False
        return True

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError("AtomicPushExecutor only pushes to a filesystem destination")
        model_path = self.GetModelPath(input_dict)
        base = destination.filesystem.base_directory
        newest = newest_version(base)
        if newest is not None and tree_digest(os.path.join(base, str(newest))) == tree_digest(
            model_path
        ):
            # The same model is already the served version: no duplicate version.
            version, serving_path = newest, os.path.join(base, str(newest))
            logging.info("Model identical to served version %s; not pushed again", newest)
        else:
            version = next_version(base)
            serving_path = atomic_copy_dir(model_path, base, version)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=str(version))
        logging.info("Model pushed atomically to %s", serving_path)
