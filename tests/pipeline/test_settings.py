"""PipelineSettings / TrainingSettings: frozen, validated where they are made."""

import dataclasses

import pytest

from pipeline import configs
from pipeline.settings import PipelineSettings, SettingsError, TrainingSettings

PATHS = dict(
    pipeline_name="t",
    pipeline_root="/r",
    data_root="/d",
    schema_path="/s",
    serving_dir="/v",
    metadata_path="/m.sqlite",
)


def test_defaults_are_the_configs():
    training = TrainingSettings()
    assert (training.train_steps, training.eval_steps) == (configs.TRAIN_STEPS, configs.EVAL_STEPS)
    assert (training.cv_folds, training.tune_trials) == (configs.CV_FOLDS, configs.TUNE_TRIALS)
    settings = PipelineSettings(**PATHS)
    assert settings.training == training and settings.num_spans == configs.NUM_SPANS
    assert settings.beam_pipeline_args == tuple(configs.BEAM_ARGS_IN_MEMORY)


def test_frozen_all_the_way_down():
    code = {"trainer": "abc"}
    args = ["--x=1"]
    settings = PipelineSettings(**PATHS, code_fingerprints=code, beam_pipeline_args=args)
    code["trainer"], args[0] = "changed", "--changed"  # the caller's objects, not the settings'
    assert settings.code_fingerprints == {"trainer": "abc"}
    assert settings.beam_pipeline_args == ("--x=1",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.serving_dir = "/elsewhere"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.training.train_steps = 1
    with pytest.raises(TypeError):
        settings.code_fingerprints["trainer"] = "x"


def test_replace_routes_training_fields():
    settings = PipelineSettings(**PATHS)
    changed = settings.replace(train_steps=10, cv_folds=0, serving_dir="/w")
    assert changed.training.train_steps == 10 and changed.training.cv_folds == 0
    assert changed.serving_dir == "/w"
    assert settings.training.train_steps == configs.TRAIN_STEPS  # the original is unchanged
    with pytest.raises(TypeError):
        settings.replace(no_such_setting=1)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"train_steps": 0}, "train_steps"),
        ({"eval_steps": -1}, "eval_steps"),
        ({"train_epochs": float("nan")}, "train_epochs"),
        ({"tune_epochs": -0.5}, "tune_epochs"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"cv_max_rows": 0}, "cv_max_rows"),
        ({"eval_max_rows": -1}, "eval_max_rows"),
        ({"tune_max_rows": -1}, "tune_max_rows"),
        ({"tune_trials": -1}, "tune_trials"),
        ({"train_patience": -1}, "train_patience"),
        ({"min_auc": 1.01}, "min_auc"),
        ({"max_auc_drop": -0.01}, "max_auc_drop"),
        ({"cv_confidence": 1.0}, "cv_confidence"),
    ],
)
def test_training_values_out_of_range_name_the_field(changes, field):
    with pytest.raises(SettingsError) as error:
        TrainingSettings(**changes)
    assert error.value.field == field and field in str(error.value)


def test_boundary_values_are_accepted():
    TrainingSettings(cv_folds=0, tune_trials=0, train_epochs=0, min_auc=0, max_auc_drop=0)
    TrainingSettings(cv_folds=2, min_auc=1, train_steps=1, cv_max_rows=1)
    TrainingSettings(tune_max_rows=0)  # 0 = tune on every row


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"serving_dir": ""}, "serving_dir"),
        ({"metadata_path": ""}, "metadata_path"),
        ({"num_spans": -1}, "num_spans"),
        ({"code_fingerprints": {"trainr": "abc"}}, "code_fingerprints"),
        ({"beam_pipeline_args": "--runner=DirectRunner"}, "beam_pipeline_args"),
        ({"training": {"train_steps": 5}}, "training"),
    ],
)
def test_pipeline_values_out_of_range_name_the_field(changes, field):
    with pytest.raises(SettingsError) as error:
        PipelineSettings(**{**PATHS, **changes})
    assert error.value.field == field


def test_portable_needs_no_metadata():
    settings = PipelineSettings(**{**PATHS, "metadata_path": ""}, portable=True)
    assert settings.metadata_path == ""
