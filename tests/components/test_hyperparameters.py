"""The HyperParameters artifact file: what the Tuner and ModelSelection write, read back."""

import json
import os

import keras_tuner
import pytest
from tfx.utils import io_utils

from components import hyperparameters


def test_values_written_by_keras_tuner_are_read(tmp_path):
    # What TFX's Tuner writes: KerasTuner's config of the best HyperParameters.
    hp = keras_tuner.HyperParameters()
    hp.Choice("hidden_units", ["64,32", "32"], default="32")
    hp.Float("learning_rate", 1e-3, 3e-2, sampling="log", default=0.01)
    path = tmp_path / hyperparameters.FILE
    path.write_text(json.dumps(hp.get_config()))
    assert hyperparameters.read_values(str(tmp_path)) == {
        "hidden_units": "32",
        "learning_rate": 0.01,
    }


def test_written_values_are_what_the_trainer_and_the_reader_get(tmp_path):
    values = {"model_family": "logistic", "learning_rate": 0.02}
    hyperparameters.write_values(str(tmp_path), values)
    # TFX's Trainer loads the only file under the artifact's URI as JSON, and
    # run_fn (components/model.py) takes its "values".
    only = io_utils.get_only_uri_in_dir(str(tmp_path))
    assert only == os.path.join(str(tmp_path), hyperparameters.FILE)
    with open(only) as f:
        assert json.load(f)["values"] == values
    assert hyperparameters.read_values(str(tmp_path)) == values
    with pytest.raises(OSError):
        hyperparameters.read_values(str(tmp_path / "missing"))
