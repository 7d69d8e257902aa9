"""Which runs the reports and notebooks show: the run dir and run id from the environment.

The runs themselves are read from ML Metadata by ``lineage.runs.RunStore``.
"""

from __future__ import annotations

import os

from core import resources

RUN_ID_ENV = "TAXI_RUN_ID"


def run_dir_from_env() -> str:
    """The run dir to read by default: ``$TAXI_RUN_DIR``, else ``./tfx_runs`` (absolute).

    The same default as ``taxi-pipeline --output-dir`` (``core.resources.default_run_dir``).
    """
    return resources.default_run_dir()


def run_id_from_env() -> str | None:
    """``$TAXI_RUN_ID`` (a run id or an execution id), or None for the newest."""
    return os.environ.get(RUN_ID_ENV) or None
