"""TFX Tuner module: KerasTuner RandomSearch over the wide & deep model.

``tuner_fn`` is referenced by dotted path (``components.tuning.tuner_fn``).
It fits on 90% of the train split and scores on the other 10% (a fixed
subset, ``model._input_fn(subset=...)``): the eval split, which gates the
blessing, and the held-out test split are never read. RandomSearch, not
Hyperband (tfx issue #7778).

Above ``custom_config["tune_max_rows"]`` train rows (0: never), the trials
fit and score on the 90/10 split of a seeded sample of that many rows
(``components.sampling.bottom_k``, ModelSelection's rule), written once to
the working directory (``tuning_files``): the search ranks hyperparameters,
the Trainer then trains on every row.

Search space (``search_space``): depth and width of the deep part, embedding
size, learning rate and dropout. The budget is ``custom_config["max_trials"]``
trials of ``taxi_model.budget_steps`` steps each: ``train_steps`` at least,
and ``custom_config["tune_epochs"]`` passes over the 90% it fits on (of the
sample, if any).
"""

from __future__ import annotations

import logging
import math
import os

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.tuner.component import TunerFnResult

from components import model as taxi_model
from components import sampling
from core import compat

OBJECTIVE = keras_tuner.Objective("val_auc", direction="max")
HIDDEN_UNITS = ("64,32", "32", "128,64", "32,16")


def search_space(hp: keras_tuner.HyperParameters) -> dict:
    """Registers the search space on ``hp``; returns model hyperparameters."""
    return {
        "hidden_units": hp.Choice("hidden_units", list(HIDDEN_UNITS)),
        "embedding_dim": hp.Choice("embedding_dim", [4, 8, 16]),
        "learning_rate": hp.Float("learning_rate", 1e-3, 3e-2, sampling="log"),
        "dropout": hp.Choice("dropout", [0.0, 0.1, 0.2]),
    }


class WideDeepHyperModel(keras_tuner.HyperModel):
    """The wide & deep model of ``search_space``, fitted with the Trainer's own loop.

    KerasTuner's default ``model.fit`` retraces Keras' train/test functions
    through autograph for every trial (most of a trial's cost on this data);
    ``fit`` here runs ``model.train_model`` (the Trainer's in-graph loop,
    without autograph) and scores ``model.evaluate_model`` on one pass over
    the validation data. It returns ``{"val_auc": ...}``, the tuner's objective.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def build(self, hp):
        # Every trial starts from the same seed: its score depends on its
        # hyperparameters only, not on what ran before it in the process.
        tf.keras.utils.set_random_seed(self.seed)
        return taxi_model.build_model(search_space(hp))

    def fit(self, hp, model, x, *, validation_data, steps_per_epoch, validation_steps, **kwargs):
        del hp, kwargs  # epochs, callbacks, verbose: one pass of steps_per_epoch steps
        loss = taxi_model.train_model(model, x, steps_per_epoch)
        metrics = taxi_model.evaluate_model(model, validation_data, validation_steps)
        return {"val_auc": metrics["auc"], "loss": loss}


def build_tuner(directory: str, max_trials: int, seed: int) -> keras_tuner.RandomSearch:
    """RandomSearch over ``search_space``, maximising validation AUC."""
    compat.use_tf_keras_in_keras_tuner()  # KerasTuner would expect Keras 3 models
    return keras_tuner.RandomSearch(
        WideDeepHyperModel(seed),
        objective=OBJECTIVE,
        max_trials=max_trials,
        seed=seed,
        directory=directory,
        project_name="taxi",
        overwrite=True,
    )


SAMPLE_FILE = "train_sample.tfrecord"  # in the working directory


def tuning_files(
    train_files: list[str], max_rows: int, seed: int, directory: str
) -> tuple[list[str], list[int]]:
    """(the files the trials read, their record counts).

    ``train_files`` themselves (file patterns) when they hold at most
    ``max_rows`` records or ``max_rows`` is 0; else one
    uncompressed file ``directory/SAMPLE_FILE`` holding their
    ``sampling.bottom_k`` sample of ``max_rows`` records under ``seed``,
    in read order. The sampler's one pass also counts the records.
    """
    if not max_rows:
        return list(train_files), taxi_model.file_records(train_files)
    # One pass both counts the records and samples them.
    records, file_rows = sampling.bottom_k(taxi_model.input_files(train_files), max_rows, seed)
    if sum(file_rows) <= max_rows:
        return list(train_files), file_rows
    path = os.path.join(directory, SAMPLE_FILE)
    tf.io.gfile.makedirs(directory)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    logging.info("Tuner: a sample of %d of the %d train rows", len(records), sum(file_rows))
    return [path], [len(records)]


def tuner_fn(fn_args) -> TunerFnResult:
    """TFX Tuner entry point: the tuner and how to fit each trial."""
    custom = fn_args.custom_config or {}
    seed = int(custom.get("seed", 42))
    batch_size = taxi_model.DEFAULT_HPARAMS["batch_size"]
    transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    files, file_rows = tuning_files(
        fn_args.train_files,
        int(custom.get("tune_max_rows", 0)),
        seed,
        os.path.join(fn_args.working_dir, "sample"),
    )
    rows = sum(file_rows)
    fit_rows = rows - math.ceil(rows / taxi_model.VALIDATION_EVERY)
    steps = taxi_model.budget_steps(
        fit_rows, float(custom.get("tune_epochs", 0.0)), batch_size, fn_args.train_steps
    )
    # Fit on 90% of the train split, score on the other 10%: the eval split
    # gates the blessing and the test split is held out, so neither is read.
    train = taxi_model._input_fn(  # noqa: SLF001 - the Trainer's own input pipeline
        files,
        None,
        transform_output,
        batch_size,
        seed,
        subset="fit",
        cache=fit_rows <= taxi_model.CACHE_MAX_ROWS,
        file_rows=file_rows,
    )
    evaluation = taxi_model._input_fn(  # noqa: SLF001
        files,
        None,
        transform_output,
        batch_size,
        seed,  # the mixing seed of the fit subset: the two subsets stay complementary
        subset="validation",
        one_pass=True,
        file_rows=file_rows,
    )
    tuner = build_tuner(fn_args.working_dir, int(custom.get("max_trials", 2)), seed)
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "x": train,
            "validation_data": evaluation,
            "steps_per_epoch": steps,
            "validation_steps": fn_args.eval_steps,  # at most: one pass over validation
            "epochs": 1,
            "verbose": 0,
        },
    )
