"""The ``HyperParameters`` artifact's file: best hyperparameter values.

TFX's Tuner (with ``components.tuning``) and ``ModelSelection`` both write
``<uri>/best_hyperparameters.txt``, KerasTuner's config JSON
(``{"space": [...], "values": {name: value}}``); the Trainer takes the
artifact as ``hyperparameters``. ``write_values`` and ``read_values`` are
this project's only writer and reader of the file.
"""

import json
import os

from tfx.utils import io_utils

FILE = "best_hyperparameters.txt"  # the name TFX's Tuner writes; the Trainer reads any


def write_values(uri: str, values: dict) -> None:
    """Writes ``values`` as the best hyperparameters of the artifact at ``uri``."""
    io_utils.write_string_file(os.path.join(uri, FILE), json.dumps({"space": [], "values": values}))


def read_values(uri: str) -> dict:
    """The best hyperparameter values in the artifact at ``uri`` (name -> value).

    Raises:
      OSError: no such file; ValueError: it is not JSON.
    """
    with open(os.path.join(uri, FILE)) as f:
        config = json.load(f)
    return dict(config.get("values", config))
