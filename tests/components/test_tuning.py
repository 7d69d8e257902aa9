"""Tuner module: the search space, a 2-trial search on 300 rows (tiny budget), the sample."""

import types

import numpy as np
import pytest
import tensorflow as tf

from components import model as taxi_model
from components import tuning


def test_search_space_values_build_a_model():
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    values = tuning.search_space(hp)
    assert set(values) == {"hidden_units", "embedding_dim", "learning_rate", "dropout"}
    assert {p.name for p in hp.space} == set(values)
    model = taxi_model.build_model({**values, "hidden_units": "32,16"})
    deep = [layer.units for layer in model.layers if layer.name in ("deep_0", "deep_1")]
    assert deep == [32, 16]


@pytest.mark.slow
def test_tuner_fn_searches_on_train_and_scores_on_eval(
    transform_output, raw_rows, tmp_path, write_examples
):
    output, _ = transform_output
    train, evaluation = str(tmp_path / "train.gz"), str(tmp_path / "eval.gz")
    write_examples(raw_rows[:240], train, output.raw_feature_spec())
    write_examples(raw_rows[240:], evaluation, output.raw_feature_spec())
    fn_args = types.SimpleNamespace(
        custom_config={"max_trials": 2, "seed": 1},
        transform_graph_path=output.transform_savedmodel_dir.rsplit("/", 1)[0],
        train_files=[train],
        eval_files=[evaluation],
        working_dir=str(tmp_path / "tuner"),
        train_steps=3,
        eval_steps=1,
    )
    result = tuning.tuner_fn(fn_args)
    assert result.tuner.oracle.max_trials == 2
    result.tuner.search(**result.fit_kwargs)
    [best] = result.tuner.get_best_hyperparameters(1)
    assert best.values["hidden_units"] in tuning.HIDDEN_UNITS
    assert len(result.tuner.oracle.trials) == 2
    # What the Trainer receives (best_hyperparameters) builds the model.
    taxi_model.build_model(best.values)
    # Each trial was scored by WideDeepHyperModel.fit on the eval split.
    scores = [t.score for t in result.tuner.oracle.trials.values()]
    [best_trial] = result.tuner.oracle.get_best_trials(1)
    assert best_trial.score == max(scores) and best.values == best_trial.hyperparameters.values
    # A trial's score is the validation AUC of its model, trained from the seed: the
    # best trial, refitted, scores the same, and its score is the AUC of its predictions.
    hypermodel = result.tuner.hypermodel
    model = hypermodel.build(best_trial.hyperparameters)
    again = hypermodel.fit(best_trial.hyperparameters, model, **result.fit_kwargs)
    assert again["val_auc"] == pytest.approx(best_trial.score, abs=1e-6)
    labels, predictions = [], []
    for x, y in result.fit_kwargs["validation_data"]:
        labels += np.asarray(y).reshape(-1).tolist()
        predictions += np.asarray(model(x, training=False)).reshape(-1).tolist()
    assert len(labels) == len(raw_rows[:240]) // taxi_model.VALIDATION_EVERY
    # The score is Keras' AUC (200 thresholds, interpolated) of exactly these predictions;
    # on a few dozen barely-trained rows it may be far from the exact AUC, so it is
    # recomputed the same way rather than compared with sklearn's within a tolerance.
    keras_auc = tf.keras.metrics.AUC()
    keras_auc.update_state(labels, predictions)
    assert best_trial.score == pytest.approx(float(keras_auc.result()), abs=1e-6)
    assert set(labels) == {0.0, 1.0}  # both classes: an AUC is defined


# -- trials on a sample above tune_max_rows (the 100x data), every row below it (the bundled data)


def _smallest_hashes(records: list[bytes], n: int, seed: int) -> list[bytes]:
    """The documented sample, computed here: the n smallest BLAKE2b-64 hashes keyed by the
    little-endian seed (ties by read position), in read order."""
    import hashlib

    key = seed.to_bytes(8, "little")

    def digest(i):
        raw = hashlib.blake2b(records[i], digest_size=8, key=key).digest()
        return int.from_bytes(raw, "little"), i

    return [records[i] for i in sorted(sorted(range(len(records)), key=digest)[:n])]


@pytest.fixture
def tuning_args(transform_output, raw_rows, tmp_path, write_examples):
    """fn_args of 240 train rows in two files (newest span first), ``tune_epochs`` 256."""
    output, _ = transform_output
    spans = [str(tmp_path / "span2" / "data.gz"), str(tmp_path / "span1" / "data.gz")]
    for path, rows in zip(spans, (raw_rows[:100], raw_rows[100:240]), strict=True):
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        write_examples(rows, path, output.raw_feature_spec())

    def make(max_rows):
        return types.SimpleNamespace(
            custom_config={"max_trials": 1, "seed": 1, "tune_epochs": 256.0, **max_rows},
            transform_graph_path=output.transform_savedmodel_dir.rsplit("/", 1)[0],
            train_files=[path.replace("data.gz", "*") for path in spans],
            working_dir=str(tmp_path / "tuner"),
            train_steps=3,
            eval_steps=100,
        )

    return make, spans


def _stored(files):
    return [bytes(r) for r in tf.data.TFRecordDataset(files, "GZIP").as_numpy_iterator()]


def _rows_seen(dataset) -> int:
    return sum(int(np.asarray(y).shape[0]) for _, y in dataset)


@pytest.mark.slow
def test_trials_fit_and_score_on_a_seeded_sample_above_tune_max_rows(tuning_args):
    make, spans = tuning_args
    fn_args = make({"tune_max_rows": 50})
    result = tuning.tuner_fn(fn_args)
    path = f"{fn_args.working_dir}/sample/{tuning.SAMPLE_FILE}"
    sample = [bytes(r) for r in tf.data.TFRecordDataset([path]).as_numpy_iterator()]
    # Which rows: the 50 smallest keyed hashes of the 240, in read order (both spans).
    assert sample == _smallest_hashes(_stored(spans), 50, seed=1)
    assert tuning.tuning_files(fn_args.train_files, 50, 1, str(fn_args.working_dir)) == (
        [f"{fn_args.working_dir}/{tuning.SAMPLE_FILE}"],
        [50],
    )
    # Budget of the sample: 256 passes over its 45 fitting rows, 128 a batch.
    assert result.fit_kwargs["steps_per_epoch"] == 90
    # The trials score on the sample's other 5 rows (every 10th).
    assert _rows_seen(result.fit_kwargs["validation_data"]) == 5


@pytest.mark.slow
@pytest.mark.parametrize("max_rows", [{}, {"tune_max_rows": 0}, {"tune_max_rows": 240}])
def test_at_most_tune_max_rows_the_trials_read_every_row_as_before(tuning_args, max_rows):
    make, _ = tuning_args
    fn_args = make(max_rows)
    unused = f"{fn_args.working_dir}/unused"
    limit = max_rows.get("tune_max_rows", 0)
    assert tuning.tuning_files(fn_args.train_files, limit, 1, unused) == (
        fn_args.train_files,
        [100, 140],
    )
    assert not tf.io.gfile.exists(unused)
    result = tuning.tuner_fn(fn_args)
    assert not tf.io.gfile.exists(f"{fn_args.working_dir}/sample")  # nothing written
    # 256 passes over the 216 fitting rows of the whole split; 24 validate.
    assert result.fit_kwargs["steps_per_epoch"] == 432
    assert _rows_seen(result.fit_kwargs["validation_data"]) == 24
