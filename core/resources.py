"""Where the bundled data and the run outputs are: no ``REPO_ROOT`` anywhere else.

The sample spans (``data/taxi/span-<year>/data.csv``) and the curated schema
(``data/schema/schema.pbtxt``) live at the top of the repository, where people
look for them. ``core/data`` is a relative symlink to that folder, so they are
also package data of ``core``: ``setup.py``'s ``package_data`` copies the
files (not the link) into the wheel. One lookup, next to this module, then
works in a checkout (``PYTHONPATH=<checkout>``), in an editable install and
from an installed wheel outside any checkout (tests/core/test_wheel.py).

The default run dir is ``$TAXI_RUN_DIR``, else ``./tfx_runs`` under the
current directory: an installed package has no repository to put runs in,
and ``taxi-pipeline`` always wrote to ``./tfx_runs``. ``taxi-pipeline``
writes there and ``taxi-report``, the notebooks and the model card read from
there, so a run made with the defaults is found with the defaults.
"""

from __future__ import annotations

import os

RUN_DIR_ENV = "TAXI_RUN_DIR"
RUN_DIR_NAME = "tfx_runs"

# realpath: in a checkout the paths are <repo>/data/..., as they always were.
_DATA = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))


def data_root() -> str:
    """The bundled spans: a folder of ``span-<year>/data.csv`` (ExampleGen's input)."""
    return os.path.join(_DATA, "taxi")


def schema_dir() -> str:
    """The folder holding the curated ``schema.pbtxt`` (ImportSchemaGen's input)."""
    return os.path.join(_DATA, "schema")


def default_run_dir() -> str:
    """The pipeline's output dir by default: ``$TAXI_RUN_DIR``, else ``./tfx_runs`` (absolute)."""
    return os.path.abspath(os.environ.get(RUN_DIR_ENV) or RUN_DIR_NAME)
