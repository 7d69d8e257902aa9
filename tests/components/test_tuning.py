"""Tuner module: the search space, and a 2-trial search on 300 rows (tiny budget)."""

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
