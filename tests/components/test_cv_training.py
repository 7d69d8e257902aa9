"""CV's TensorFlow-bound steps against known answers: the sample, the load, the fold loop.

``cross_validate`` is checked on a one-weight stand-in model (``_tiny_model``,
put in place of ``components.model.build_model``) whose training a few lines
of numpy replay exactly: every fold must start from the seeded initial
weights and a fresh optimizer, train ``steps`` batches of the other folds'
rows shuffled with ``seed + fold``, and score the held-out fold in
inference mode.
"""

import hashlib

import numpy as np
import pytest

from components import features
from components import model as taxi_model
from components.model_selection import cv

# -- the sample, on 300 small examples; the load, on the 300 bundled rows


def _example(i):
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["row"].int64_list.value.append(i)
    example.features.feature["name"].bytes_list.value.append(f"r{i % 7}".encode())
    return example.SerializeToString()


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """300 tf.Examples as one gzipped TFRecord file and their canonical records."""
    import tensorflow as tf

    path = str(tmp_path_factory.mktemp("cv_sample") / "data.gz")
    records = [_example(i) for i in range(300)]
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return {"files": [path], "stored": records, "records": cv.canonical_records(records)}


@pytest.fixture(scope="module")
def split(transform_output, raw_rows, tmp_path_factory, write_examples):
    """The 300 bundled rows as one gzipped TFRecord file, and the Transform output."""
    output, _ = transform_output
    path = str(tmp_path_factory.mktemp("cv_split") / "data.gz")
    write_examples(raw_rows, path, output.raw_feature_spec())
    return {"files": [path], "output": output}


def _seeded_smallest(stored, n, seed):
    """The documented sample, computed here: the n smallest 64-bit BLAKE2b hashes of the
    stored bytes keyed by the seed (little-endian), canonically re-serialized, in read order."""
    key = seed.to_bytes(8, "little")
    hashes = [
        int.from_bytes(hashlib.blake2b(r, digest_size=8, key=key).digest(), "little")
        for r in stored
    ]
    kept = set(sorted(range(len(stored)), key=lambda i: (hashes[i], i))[:n])
    return cv.canonical_records([r for i, r in enumerate(stored) if i in kept])


@pytest.mark.slow
def test_sample_is_the_seeded_smallest_hashes_in_read_order(examples):
    records = examples["stored"]
    sample, total = cv.sample_records(examples["files"], 37, seed=5)
    assert total == 300
    assert sample == _seeded_smallest(records, 37, 5)
    # One row is a valid sample: the single smallest digest.
    one, total = cv.sample_records(examples["files"], 1, seed=5)
    assert (one, total) == (_seeded_smallest(records, 1, 5), 300)
    with pytest.raises(ValueError, match=r"^max_rows must be positive, got 0$"):
        cv.sample_records(examples["files"], 0, seed=5)


@pytest.mark.slow
def test_sample_reads_uncompressed_and_no_files(examples, tmp_path):
    import tensorflow as tf

    # A split written without compression (not ending in .gz) is read as such.
    plain = str(tmp_path / "data-00000-of-00001")
    with tf.io.TFRecordWriter(plain) as writer:
        for record in examples["stored"][:40]:
            writer.write(record)
    sample, total = cv.sample_records([plain], 10, seed=2)
    assert total == 40 and sample == _seeded_smallest(examples["stored"][:40], 10, 2)
    assert cv.sample_records([], 10, seed=2) == ([], 0)


@pytest.mark.slow
def test_load_transformed_is_the_transform_of_the_sample_in_read_order(split):
    import tensorflow as tf

    output = split["output"]
    records, x, labels, total = cv.load_transformed(split["files"], output, max_rows=50)
    # The default seed is 0; the sample is sample_records' with the same settings.
    assert total == 300 and records == cv.sample_records(split["files"], 50, seed=0)[0]
    expected = output.transform_raw_features(
        tf.io.parse_example(tf.constant(records), output.raw_feature_spec())
    )
    keys = [features.transformed_name(k) for k in features.model_feature_keys()]
    assert sorted(x) == sorted(keys)
    for key in keys:
        assert x[key].shape == (50, 1)
        np.testing.assert_array_equal(x[key].ravel(), np.asarray(expected[key]).ravel())
    assert labels.dtype == np.float32 and labels.shape == (50,)
    np.testing.assert_array_equal(labels, np.asarray(expected[features.LABEL_KEY]).ravel())
    assert 0 < labels.sum() < 50  # both classes: the label column, not a constant


@pytest.mark.slow
def test_load_transformed_of_no_files_is_empty(split):
    records, x, labels, total = cv.load_transformed([], split["output"])
    assert (records, total, labels.shape, labels.dtype) == ([], 0, (0,), np.float32)
    assert all(value.shape == (0, 1) for value in x.values()) and len(x) == len(
        features.model_feature_keys()
    )


# -- the fold loop, on a model numpy can replay

N, K, SEED = 12, 3, 11
X = np.linspace(-1.0, 1.0, N, dtype=np.float32)
LABELS = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0], dtype=np.float32)
# Held-out folds of 4 rows (2 of each class), 8 training rows each.
FOLDS = np.arange(N) % K
SHIFT = 1.0  # what _TrainingShift adds to the logit in training mode only
MOMENTUM = 0.9


def _tiny_model(hparams):
    """p = sigmoid(w * f + b (+ SHIFT when training)), SGD with momentum, binary cross-entropy.

    The training-only shift stands in for dropout: scoring a fold in training
    mode would change the probabilities.
    """
    import tensorflow as tf

    class _TrainingShift(tf.keras.layers.Layer):
        def call(self, logits, training=None):
            return logits + SHIFT if training else logits

    inputs = {"f": tf.keras.Input((1,), name="f")}
    logit = tf.keras.layers.Dense(1, bias_initializer="random_normal")(inputs["f"])
    output = tf.keras.layers.Activation("sigmoid")(_TrainingShift()(logit))
    model = tf.keras.Model(inputs, output)
    model.compile(
        optimizer=tf.keras.optimizers.SGD(hparams["learning_rate"], momentum=MOMENTUM),
        loss=tf.keras.losses.BinaryCrossentropy(),
    )
    return model


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _replayed(hparams, steps, seed):
    """The per-fold metrics cross_validate must give, by numpy SGD from the seeded weights."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    initial = [w.astype(np.float64).ravel()[0] for w in _tiny_model(hparams).get_weights()]
    batch_size = hparams.get("batch_size", 128)
    per_fold = []
    for fold in range(K):
        held = FOLDS == fold
        (w, b), (mw, mb) = initial, (0.0, 0.0)  # fresh weights, fresh momentum
        if steps:
            for rows in cv.batch_rows(np.flatnonzero(~held), steps, batch_size, seed + fold):
                error = _sigmoid(w * X[rows] + b + SHIFT) - LABELS[rows]
                gw, gb = np.mean(error * X[rows]), np.mean(error)
                mw = MOMENTUM * mw - hparams["learning_rate"] * gw
                mb = MOMENTUM * mb - hparams["learning_rate"] * gb
                w, b = w + mw, b + mb
        probabilities = _sigmoid(w * X[held] + b)  # inference mode: no shift
        per_fold.append({"fold": fold, "rows": 4, **cv.fold_metrics(LABELS[held], probabilities)})
    return per_fold


def _assert_same(result, expected):
    assert [(m["fold"], m["rows"]) for m in result] == [(m["fold"], m["rows"]) for m in expected]
    for got, want in zip(result, expected, strict=True):
        assert set(got) == {"fold", "rows", *cv.METRICS}
        for metric in cv.METRICS:
            assert got[metric] == pytest.approx(want[metric], rel=1e-5, abs=1e-7), metric
        assert not np.isnan(got["auc"])  # both classes in every fold


@pytest.fixture
def tiny(monkeypatch):
    """cross_validate builds ``_tiny_model``s; returns how often each fold loop ran."""
    monkeypatch.setattr(taxi_model, "build_model", _tiny_model)
    calls = []
    make = cv.make_in_memory_fit

    def counting(model, x, labels):
        fit = make(model, x, labels)

        def run(batches):
            calls.append(tuple(batches.shape))
            return fit(batches)

        return run

    monkeypatch.setattr(cv, "make_in_memory_fit", counting)
    return calls


CANDIDATES = {
    # batch 4 of 8 rows: the shuffle order matters; no batch_size: 128 rows per batch.
    "small_batches": {"learning_rate": 0.5, "batch_size": 4},
    "default_batches": {"learning_rate": 0.8},
}


@pytest.mark.slow
def test_every_fold_replays_exactly_with_numpy(tiny):
    x = {"f": X.reshape(-1, 1)}
    result = cv.cross_validate(x, LABELS, FOLDS, CANDIDATES, steps=3, seed=SEED)
    assert list(result) == list(CANDIDATES)
    for family, hparams in CANDIDATES.items():
        _assert_same(result[family], _replayed(hparams, 3, SEED))
    assert tiny == [(3, 4)] * K + [(3, 128)] * K  # each fold trains 3 batches


@pytest.mark.slow
def test_one_step_trains_and_no_step_scores_the_initial_weights(tiny):
    x = {"f": X.reshape(-1, 1)}
    hparams = {"learning_rate": 2.0, "batch_size": 5}
    one = cv.cross_validate(x, LABELS, FOLDS, {"m": hparams}, steps=1, seed=3)["m"]
    _assert_same(one, _replayed(hparams, 1, 3))
    none = cv.cross_validate(x, LABELS, FOLDS, {"m": hparams}, steps=0, seed=3)["m"]
    _assert_same(none, _replayed(hparams, 0, 3))
    assert none[0]["log_loss"] != pytest.approx(one[0]["log_loss"], rel=1e-3)
    assert tiny == [(1, 5)] * K  # steps=0 never runs (nor traces) the training loop
