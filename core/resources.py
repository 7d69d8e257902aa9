"""Where the bundled data and the default run directory are."""

from __future__ import annotations

import os

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_root() -> str:
    """The bundled sample spans (``span-<N>/*.csv``)."""
    return os.path.join(_CHECKOUT, "data", "taxi")


def schema_dir() -> str:
    """The folder of the curated ``schema.pbtxt``."""
    return os.path.join(_CHECKOUT, "data", "schema")


def default_run_dir() -> str:
    """``$TAXI_RUN_DIR``, else ``tfx_runs`` under the current directory."""
    return os.environ.get("TAXI_RUN_DIR") or os.path.abspath("tfx_runs")
