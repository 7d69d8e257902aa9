"""Model selection: folds, metrics and intervals, the rule, CV on 300 rows, the component."""

import hashlib
import json
import math
import os
import types
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from components import model as taxi_model
from components.model_selection import cv
from components.model_selection.artifact import read_result, write_result
from components.model_selection.component import record, run_selection

# -- folds


def _records(n):
    return [f"row-{i}".encode() for i in range(n)]


def test_folds_are_deterministic_disjoint_covering_and_balanced():
    records = _records(101)
    labels = [int(i % 4 == 0) for i in range(101)]
    folds = cv.assign_folds(records, 3, seed=7, labels=labels)
    assert folds.shape == (101,)
    assert set(folds.tolist()) == {0, 1, 2}  # every row in exactly one fold of 0..k-1
    sizes = np.bincount(folds)
    assert sizes.sum() == 101 and sizes.max() - sizes.min() <= 1
    positives = np.bincount(folds[np.array(labels) == 1], minlength=3)
    assert positives.max() - positives.min() <= 1  # stratified by label
    np.testing.assert_array_equal(folds, cv.assign_folds(records, 3, seed=7, labels=labels))


def test_folds_depend_on_content_and_seed_not_row_order():
    records = _records(60)
    folds = cv.assign_folds(records, 4, seed=1)
    order = np.random.default_rng(0).permutation(60)
    shuffled = cv.assign_folds([records[i] for i in order], 4, seed=1)
    np.testing.assert_array_equal(shuffled, folds[order])
    assert not np.array_equal(cv.assign_folds(records, 4, seed=2), folds)


def test_canonical_records_ignore_the_wire_order_of_features():
    from tensorflow.core.example import example_pb2

    def example(names):
        e = example_pb2.Example()
        for name in names:
            e.features.feature[name].int64_list.value.append(len(name))
        return e.SerializeToString()

    # Same features written in another order: same canonical bytes, same fold.
    names = [f"feature_{i}" for i in range(12)]
    one, other = example(names), example(list(reversed(names)))
    assert cv.canonical_records([one]) == cv.canonical_records([other])
    assert cv.canonical_records([one]) != cv.canonical_records([example(names[:-1])])


def test_folds_need_two_to_n():
    with pytest.raises(ValueError):
        cv.assign_folds(_records(5), 1, seed=0)
    with pytest.raises(ValueError):
        cv.assign_folds(_records(2), 3, seed=0)


def test_folds_deal_rows_ordered_by_label_then_seeded_digest():
    # The documented rule, computed here from hashlib: rows sorted by (label,
    # sha256("<seed>:" + row bytes), position), then dealt 0, 1, 2, 0, 1, ...
    records, labels = _records(7), [1, 0, 0, 1, 0, 1, 0]
    order = sorted(
        range(7), key=lambda i: (labels[i], hashlib.sha256(b"3:" + records[i]).digest(), i)
    )
    expected = np.empty(7, dtype=np.int64)
    expected[order] = np.arange(7) % 3
    np.testing.assert_array_equal(cv.assign_folds(records, 3, seed=3, labels=labels), expected)
    # Two folds, and as many folds as rows, are allowed.
    assert np.bincount(cv.assign_folds(_records(4), 2, seed=0)).tolist() == [2, 2]
    # As many folds as rows is allowed: one row each.
    assert sorted(cv.assign_folds(_records(3), 3, seed=0).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"need 2 <= k <= rows, got k=4 for 3 rows"):
        cv.assign_folds(_records(3), 4, seed=0)


def test_batch_rows_are_seeded_epochs_of_the_training_rows():
    rows = np.array([3, 5, 7, 9, 11])
    batches = cv.batch_rows(rows, steps=4, batch_size=3, seed=1)
    assert batches.shape == (4, 3)
    flat = batches.ravel()
    assert sorted(flat[:5].tolist()) == rows.tolist()  # the first epoch sees every row once
    assert set(flat.tolist()) <= set(rows.tolist())
    np.testing.assert_array_equal(batches, cv.batch_rows(rows, 4, 3, seed=1))


# -- metrics and intervals


def test_fold_metrics_on_known_numbers():
    labels = [0, 0, 1, 1]
    probabilities = [0.1, 0.4, 0.35, 0.8]
    m = cv.fold_metrics(labels, probabilities)
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ranked right
    expected_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert m["calibration"] == pytest.approx((1.65 / 4) / 0.5)
    assert m["accuracy"] == pytest.approx(0.75)  # 0.35 is called negative


def test_auc_ties_count_half_and_one_class_is_nan():
    assert cv.auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(cv.auc([1, 1], [0.2, 0.9]))


def test_fold_metrics_at_the_extremes():
    # Probabilities 0 and 1 are clipped to 1e-7 from the ends: a finite log loss.
    m = cv.fold_metrics([1, 0, 1, 0], [0.0, 1.0, 0.5, 0.2])
    assert m["log_loss"] == pytest.approx((-2 * math.log(1e-7) - math.log(0.5) - math.log(0.8)) / 4)
    assert m["accuracy"] == 0.5  # 0.5 is called positive: right for the third row
    assert m["auc"] == 0.25 and m["calibration"] == pytest.approx(0.425 / 0.5)
    assert cv.fold_metrics([1, 1], [0.9, 0.8])["accuracy"] == 1.0
    no_positive = cv.fold_metrics([0, 0], [0.2, 0.4])
    assert math.isnan(no_positive["calibration"]) and math.isnan(no_positive["auc"])


def test_auc_of_one_class_is_nan_without_a_division():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning: checked before dividing
        assert math.isnan(cv.auc([0, 0], [0.2, 0.9]))
        assert math.isnan(cv.auc([1, 1], [0.2, 0.9]))
    assert cv.auc([0, 1], [0.9, 0.1]) == 0.0 and cv.auc([1, 0], [0.9, 0.1]) == 1.0
    # One positive against two negatives: it beats one of them.
    assert cv.auc([0, 0, 1], [0.1, 0.4, 0.35]) == 0.5


def test_summarize_t_interval():
    s = cv.summarize([0.80, 0.82, 0.84])
    assert s["mean"] == pytest.approx(0.82)
    assert s["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t_{0.975, 2}
    assert s["ci_low"] == pytest.approx(0.82 - half)
    assert s["ci_high"] == pytest.approx(0.82 + half)
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3))
    assert cv.summarize([1.0, 1.0])["ci_low"] == pytest.approx(1.0)  # no spread, no width
    assert cv.summarize([0.5])["ci_low"] == -math.inf


def test_summarize_one_value_and_another_confidence():
    one = cv.summarize([0.5])
    assert (one["n"], one["mean"], one["ci_low"], one["ci_high"]) == (1, 0.5, -math.inf, math.inf)
    assert math.isnan(one["std"])
    two = cv.summarize([0.1, 0.3], confidence=0.9)
    half = 6.313751514675043 * math.sqrt(0.02) / math.sqrt(2)  # t_{0.95, 1}
    assert two["n"] == 2 and two["std"] == pytest.approx(math.sqrt(0.02))
    assert (two["ci_low"], two["ci_high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))


# -- the rule

FAMILIES = ("logistic", "wide_deep")


def test_clear_win_switches_to_the_complex_family():
    chosen, reason, [comparison] = cv.select_family(
        {"logistic": [0.80, 0.81, 0.79], "wide_deep": [0.85, 0.861, 0.839]}, FAMILIES
    )
    assert chosen == "wide_deep"
    assert comparison["significant"] and comparison["ci_low"] > 0
    assert "significantly better" in reason


def test_insignificant_win_keeps_the_simpler_family():
    # wide & deep is ahead on average, but one fold goes the other way.
    chosen, reason, [comparison] = cv.select_family(
        {"logistic": [0.80, 0.81, 0.79], "wide_deep": [0.83, 0.80, 0.81]}, FAMILIES
    )
    assert comparison["mean"] > 0 and comparison["ci_low"] <= 0
    assert chosen == "logistic"
    assert "not significant" in reason


def test_tie_and_loss_keep_the_simpler_family():
    same = [0.8, 0.81, 0.79]
    assert cv.select_family({"logistic": same, "wide_deep": same}, FAMILIES)[0] == "logistic"
    chosen, reason, _ = cv.select_family(
        {"logistic": [0.9, 0.9, 0.9], "wide_deep": [0.8, 0.81, 0.79]}, FAMILIES
    )
    assert chosen == "logistic" and "no gain" in reason


def test_families_must_be_scored_on_the_same_folds():
    with pytest.raises(ValueError):
        cv.select_family({"logistic": [0.8, 0.81], "wide_deep": [0.85]}, FAMILIES)


def test_min_auc_gain_is_configurable():
    aucs = {"logistic": [0.80, 0.81, 0.79], "wide_deep": [0.85, 0.861, 0.839]}
    assert cv.select_family(aucs, FAMILIES, min_auc_gain=0.0)[0] == "wide_deep"
    assert cv.select_family(aucs, FAMILIES, min_auc_gain=0.05)[0] == "logistic"
    assert "min_auc_gain=0.05" in cv.rule_text(FAMILIES, 0.05, 0.95)


def test_each_candidate_is_compared_with_the_family_chosen_so_far():
    aucs = {
        "a": [0.80, 0.81, 0.79],
        "b": [0.83, 0.80, 0.81],  # ahead of a, not significantly: a stays
        "c": [0.85, 0.861, 0.839],  # clearly ahead of a: c
        "d": [0.84, 0.85, 0.83],  # behind c
    }
    chosen, reason, comparisons = cv.select_family(aucs, "abcd", min_auc_gain=0.001, confidence=0.9)
    assert chosen == "c"
    assert [(c["candidate"], c["against"], c["significant"]) for c in comparisons] == [
        ("b", "a", False),
        ("c", "a", True),
        ("d", "c", False),
    ]
    assert comparisons[1]["differences"] == pytest.approx([0.05, 0.051, 0.049])
    assert (comparisons[1]["n"], comparisons[1]["mean"]) == (3, pytest.approx(0.05))
    assert reason == (
        "b - a AUC over 3 paired folds: mean +0.0133, 90% CI [-0.0218, +0.0484]; "
        "lower bound <= 0.001: the win is not significant, the simpler a is kept; "
        "c - a AUC over 3 paired folds: mean +0.0500, 90% CI [+0.0483, +0.0517]; "
        "lower bound > 0.001: c is significantly better; "
        "d - c AUC over 3 paired folds: mean -0.0100, 90% CI [-0.0117, -0.0083]: "
        "no gain, the simpler c is kept"
    )


def test_a_win_of_exactly_min_auc_gain_does_not_switch():
    # Every fold 0.25 better: mean = lower bound = 0.25, which is not above min_auc_gain=0.25.
    aucs = {"logistic": [0.5, 0.5, 0.5], "wide_deep": [0.75, 0.75, 0.75]}
    chosen, reason, [comparison] = cv.select_family(aucs, FAMILIES, min_auc_gain=0.25)
    assert chosen == "logistic" and not comparison["significant"]
    assert reason.endswith(": no gain, the simpler logistic is kept")
    assert cv.select_family(aucs, FAMILIES, min_auc_gain=0.2499)[0] == "wide_deep"


def test_rule_text_states_the_settings():
    assert cv.rule_text(("logistic", "wide_deep"), 0.01, 0.9) == (
        "Families are ordered simplest first (logistic, wide_deep). The simplest is kept "
        "unless a more complex family beats it on the paired per-fold AUC differences "
        "(complex - simple): it is chosen only if the lower end of the 90% Student t "
        "confidence interval of the mean difference is above min_auc_gain=0.01. A tie or an "
        "insignificant win keeps the simpler family; a loss never switches."
    )


# -- cross-validation and the component's plain function, on real transformed rows


@pytest.fixture(scope="module")
def train_split(transform_output, raw_rows, tmp_path_factory, write_examples):
    folder = tmp_path_factory.mktemp("examples") / "Split-train"
    output, _ = transform_output
    write_examples(raw_rows, str(folder / "data.gz"), output.raw_feature_spec())
    return {
        "patterns": [str(folder / "*")],
        "transform_graph": output.transform_savedmodel_dir.rsplit("/", 1)[0],
    }


@pytest.mark.slow
def test_load_transformed_reads_every_row_once(train_split, raw_rows):
    import tensorflow_transform as tft

    files = taxi_model.input_files(train_split["patterns"])
    records, x, labels, total = cv.load_transformed(
        files, tft.TFTransformOutput(train_split["transform_graph"])
    )
    assert len(records) == len(raw_rows) == len(labels) == total
    assert set(labels.tolist()) <= {0.0, 1.0}
    assert all(value.shape == (len(raw_rows), 1) for value in x.values())


@pytest.mark.slow
def test_run_selection_cross_validates_both_families_on_the_same_folds(train_split):
    result = run_selection(
        train_split["patterns"],
        train_split["transform_graph"],
        folds=3,
        steps=5,
        seed=3,
        min_auc_gain=0.0,
        confidence=0.95,
        tuned={"hidden_units": "32", "embedding_dim": 4},
    )
    assert result["rows"] == 300 and sum(result["fold_sizes"]) == 300
    assert set(result["families"]) == set(taxi_model.MODEL_FAMILIES)
    for info in result["families"].values():
        assert [f["fold"] for f in info["folds"]] == [0, 1, 2]
        assert [f["rows"] for f in info["folds"]] == result["fold_sizes"]
        assert set(info["summary"]) == set(cv.METRICS)
    # The Tuner's values are the wide & deep candidate's hyperparameters.
    assert result["families"]["wide_deep"]["hparams"]["hidden_units"] == "32"
    assert result["chosen_family"] in taxi_model.MODEL_FAMILIES
    assert result["hyperparameters"]["model_family"] == result["chosen_family"]
    json.dumps(result)  # the artifact file is JSON

    artifact = types.SimpleNamespace(props={})
    artifact.set_string_custom_property = artifact.props.__setitem__
    artifact.set_int_custom_property = artifact.props.__setitem__
    artifact.set_float_custom_property = artifact.props.__setitem__
    record(result, artifact)
    assert artifact.props["chosen_family"] == result["chosen_family"]
    assert artifact.props["folds"] == 3
    assert artifact.props["logistic_auc_ci_low"] <= artifact.props["logistic_auc_mean"]
    assert "wide_deep_auc_mean" in artifact.props


@pytest.mark.slow
def test_cross_validation_is_reproducible(train_split):
    kwargs = dict(folds=2, steps=3, seed=5, min_auc_gain=0.0, confidence=0.95)
    first = run_selection(train_split["patterns"], train_split["transform_graph"], **kwargs)
    second = run_selection(train_split["patterns"], train_split["transform_graph"], **kwargs)
    for family in taxi_model.MODEL_FAMILIES:
        a = [f["auc"] for f in first["families"][family]["folds"]]
        b = [f["auc"] for f in second["families"][family]["folds"]]
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_cv_result_is_read_back_as_written(tmp_path):
    result = {"chosen_family": "logistic", "folds": 2, "rows": 900, "reason": "simpler"}
    write_result(str(tmp_path), result)
    assert os.listdir(tmp_path) == ["cv_result.json"]
    assert read_result(str(tmp_path)) == result
    with pytest.raises(OSError):
        read_result(str(tmp_path / "missing"))
    (tmp_path / "cv_result.json").write_text("{not json")
    with pytest.raises(ValueError):
        read_result(str(tmp_path))


def test_cv_sample_is_bounded_seeded_and_order_independent(train_split, tmp_path):
    import tensorflow as tf

    files = taxi_model.input_files(train_split["patterns"])
    everything, total = cv.sample_records(files, 10**6, seed=1)
    assert total == len(everything) == 300
    # All rows: every record, in read order (what the bundled data gets).
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert everything == cv.canonical_records(read)
    sample, total = cv.sample_records(files, 100, seed=1)
    assert total == 300 and len(sample) == 100 and len(set(sample)) == 100
    assert set(sample) <= set(everything)
    assert sample == [r for r in everything if r in set(sample)]  # read order kept
    # The same rows in reverse order give the same sample; another seed another one.
    reversed_file = str(tmp_path / "reversed.gz")
    with tf.io.TFRecordWriter(reversed_file, options="GZIP") as writer:
        for record in reversed(read):
            writer.write(record)
    again, _ = cv.sample_records([reversed_file], 100, seed=1)
    assert set(again) == set(sample)
    other, _ = cv.sample_records(files, 100, seed=2)
    assert set(other) != set(sample)


def test_run_selection_on_a_sample_with_an_epoch_budget(train_split):
    result = run_selection(
        train_split["patterns"],
        train_split["transform_graph"],
        folds=3,
        steps=2,
        seed=3,
        min_auc_gain=0.0,
        confidence=0.95,
        epochs=10.0,
        max_rows=120,
    )
    assert result["rows"] == 120 and result["split_rows"] == 300
    assert sum(result["fold_sizes"]) == 120
    # 80 rows in the training folds, 10 passes of 128-row batches: ceil(800 / 128) = 7 steps.
    assert result["steps"] == 7


@pytest.mark.slow
def test_reset_optimizer_zeroes_slots_and_step_counter_but_keeps_the_learning_rate():
    # Each fold starts from a fresh Adam: a slot or step count left from the previous
    # fold would leak that fold's gradients into the next one's scores.
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.0125), loss="mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=2, verbose=0)
    optimizer = model.optimizer
    variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
    slots = [v for v in variables if "learning_rate" not in v.name]
    assert int(optimizer.iterations.numpy()) == 2
    assert any(np.abs(v.numpy()).sum() > 0 for v in slots if v is not optimizer.iterations)
    cv._reset_optimizer(optimizer)
    assert int(optimizer.iterations.numpy()) == 0
    assert all(not np.any(v.numpy()) for v in slots)
    assert float(tf.keras.backend.get_value(optimizer.learning_rate)) == pytest.approx(0.0125)
