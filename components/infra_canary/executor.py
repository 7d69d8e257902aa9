"""InfraCanary executor: unpack artifacts, run the canary, write the blessing."""

import json
import os
import tempfile
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.infra_canary import canary

BLESSED_FILENAME = "INFRA_BLESSED"
NOT_BLESSED_FILENAME = "INFRA_NOT_BLESSED"
BLESSED_PROPERTY = "blessed"
REASON_PROPERTY = "reason"
REPORT_FILENAME = "canary_report.json"


def mark_blessing(blessing: types.Artifact, passed: bool, reason: str = "") -> None:
    """Writes the marker file and `blessed` property as InfraValidator does.

    `reason` (why it is not blessed) becomes the `reason` custom property.
    """
    name = BLESSED_FILENAME if passed else NOT_BLESSED_FILENAME
    io_utils.write_string_file(os.path.join(blessing.uri, name), "")
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if passed else 0)
    if reason:
        blessing.set_string_custom_property(REASON_PROPERTY, reason)


def failure_reason(result: canary.CanaryResult, limit: int = 3) -> str:
    """The first failed checks as `name: detail; ...` ("" if all passed)."""
    failed = [f"{name}: {detail}" for name, ok, detail in result.checks if not ok]
    if not failed and not result.checks:
        return "no checks ran"
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    return "; ".join(failed[:limit]) + more


class Executor(base_executor.BaseExecutor):
    """Serves the candidate model on `serving.server` and probes it."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs the canary and marks the InfraBlessing.

        Args:
          input_dict: `model` (one Model) and `examples` (one Examples).
          output_dict: `blessing` (one InfraBlessing).
          exec_properties: `split`, `num_requests`, `timeout_seconds`,
            `parity_rows`, `parity_tolerance`.
        """
        model = artifact_utils.get_single_instance(input_dict["model"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        split = exec_properties.get("split") or "eval"
        split_dir = artifact_utils.get_split_uri(input_dict["examples"], split)
        num_requests = int(exec_properties.get("num_requests") or 10)
        parity_rows = int(exec_properties.get("parity_rows") or 256)
        tolerance = exec_properties.get("parity_tolerance")
        tolerance = canary.PARITY_TOLERANCE if tolerance is None else float(tolerance)
        examples = canary.read_examples(split_dir, limit=max(8, num_requests, parity_rows))
        saved_model = path_utils.serving_model_path(
            model.uri, path_utils.is_old_model_artifact(model)
        )
        with tempfile.TemporaryDirectory(prefix="infra_canary_") as work_dir:
            try:
                result = canary.run_canary(
                    saved_model,
                    examples,
                    work_dir,
                    num_requests=num_requests,
                    timeout_seconds=float(exec_properties.get("timeout_seconds") or 180),
                    parity_tolerance=tolerance,
                )
            except Exception as e:  # any failure means "not blessed"
                logging.exception("InfraCanary failed")
                result = canary.CanaryResult()
                result.add("canary", False, repr(e))
            server_log = _tail(os.path.join(work_dir, "server.log"))
        reason = "" if result.passed else failure_reason(result)
        report = {
            "passed": result.passed,
            "reason": reason,
            "server_log_tail": server_log,
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in result.checks],
        }
        io_utils.write_string_file(
            os.path.join(blessing.uri, REPORT_FILENAME), json.dumps(report, indent=2)
        )
        logging.info(
            "InfraCanary %s (%d checks)%s",
            "passed" if result.passed else "FAILED",
            len(result.checks),
            f": {reason}" if reason else "",
        )
        mark_blessing(blessing, result.passed, reason)


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path) as f:
            return f.read()[-limit:]
    except OSError:
        return ""
