"""Which runs the reports and notebooks show: the run dir and run id from the environment.

The runs themselves are read from ML Metadata by ``lineage.runs.RunStore``.
"""

from __future__ import annotations

import os

RUN_DIR_ENV = "TAXI_RUN_DIR"
RUN_ID_ENV = "TAXI_RUN_ID"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUN_DIR = os.path.join(REPO_ROOT, "tfx_runs")


def run_dir_from_env(default: str | None = None) -> str:
    """``$TAXI_RUN_DIR``, else ``default``, else ``<repo>/tfx_runs``."""
    return os.path.abspath(os.environ.get(RUN_DIR_ENV) or default or DEFAULT_RUN_DIR)


def run_id_from_env() -> str | None:
    """``$TAXI_RUN_ID`` (a run id or an execution id), or None for the newest."""
    return os.environ.get(RUN_ID_ENV) or None
