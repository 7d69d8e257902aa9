"""Model construction, a few training steps, and the exported signatures."""

import json
import math
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from components import features
from components import model as taxi_model


def _batches(data, batch_size=64):
    keys = [features.transformed_name(k) for k in features.model_feature_keys()]
    x = {k: np.array([[row[k]] for row in data]) for k in keys}
    y = np.array([row[features.LABEL_KEY] for row in data])
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).repeat()


@pytest.fixture(scope="module", params=taxi_model.MODEL_FAMILIES)
def exported(request, transform_output, tmp_path_factory):
    """A model of each family, trained a little and exported: every signature test runs twice."""
    output, data = transform_output
    tf.keras.utils.set_random_seed(0)
    model = taxi_model.build_model({"model_family": request.param})
    first = taxi_model.train_model(model, _batches(data), 1)
    last = taxi_model.train_model(model, _batches(data), 60)
    export_dir = str(tmp_path_factory.mktemp("model"))
    taxi_model.export_model(model, output, export_dir)
    tf.random.set_seed(None)  # no global seed leaks into other tests (see the seed-0 test)
    return {"dir": export_dir, "first_loss": first, "last_loss": last, "data": data}


def test_model_inputs_and_output(transform_output):
    model = taxi_model.build_model({"hidden_units": [8]})
    names = {features.transformed_name(k) for k in features.model_feature_keys()}
    assert set(model.input) == names
    _, data = transform_output
    x, _ = next(iter(_batches(data, 5)))
    assert model(x).shape == (5, 1)


def test_logistic_is_one_sigmoid_unit_over_the_same_inputs(transform_output):
    model = taxi_model.build_model({"model_family": "logistic"})
    wide_deep = taxi_model.build_model()
    assert set(model.input) == set(wide_deep.input)
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    assert [layer.units for layer in dense] == [1]
    assert not any(isinstance(layer, tf.keras.layers.Embedding) for layer in model.layers)
    # One weight per numeric feature and per categorical id, plus the bias.
    ids = sum(taxi_model.categorical_sizes().values())
    assert dense[0].kernel.shape == (len(taxi_model.features.DENSE_FLOAT_KEYS) + ids, 1)
    _, data = transform_output
    x, _ = next(iter(_batches(data, 5)))
    assert model(x).shape == (5, 1)


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown model family"):
        taxi_model.build_model({"model_family": "forest"})
    with pytest.raises(ValueError):
        taxi_model.family_hparams("forest")
    assert taxi_model.family_hparams("logistic", {"learning_rate": 0.1}) == {
        **taxi_model.LOGISTIC_HPARAMS,
        "learning_rate": 0.1,
        "model_family": "logistic",
    }


@pytest.mark.slow
def test_training_lowers_loss(exported):
    assert exported["last_loss"] < exported["first_loss"]


@pytest.mark.slow
def test_signatures_and_method_names(exported):
    with open(os.path.join(exported["dir"], "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    signatures = saved.meta_graphs[0].signature_def
    assert set(signatures) >= {
        "serving_default",
        "serving_examples",
        "classification",
        "regression",
        "transform_features",
    }
    assert signatures["classification"].method_name == "tensorflow/serving/classify"
    assert signatures["regression"].method_name == "tensorflow/serving/regress"
    assert signatures["serving_default"].method_name == "tensorflow/serving/predict"
    assert set(signatures["serving_default"].inputs) == set(features.model_feature_keys())
    assert features.TIPS_KEY not in signatures["serving_default"].inputs
    assert list(signatures["classification"].inputs) == ["inputs"]


def _raw_request(row, spec):
    """One raw row as the dense [1] tensors a REST client's JSON becomes.

    Missing cells are NaN (integer and float features) or "" (strings).
    """
    request = {}
    for key, tensor_spec in spec.items():
        value = row[key][0] if row[key] else None
        if value is None:
            value = "" if tensor_spec.dtype == tf.string else float("nan")
        request[key] = tf.constant([value], dtype=tensor_spec.dtype)
    return request


def test_serving_default_takes_integers_as_float64(exported):
    loaded = tf.saved_model.load(exported["dir"])
    spec = loaded.signatures["serving_default"].structured_input_signature[1]
    dtypes = {key: s.dtype for key, s in spec.items()}
    assert dtypes["trip_start_hour"] == dtypes["dropoff_census_tract"] == tf.float64
    assert dtypes["fare"] == dtypes["pickup_latitude"] == tf.float32
    assert dtypes["company"] == tf.string


@pytest.mark.slow
def test_raw_features_and_examples_agree(exported, raw_rows, transform_output, serialize_example):
    """Every row, gaps included, gets serving_examples' exact probability."""
    raw_spec = transform_output[0].raw_feature_spec()
    loaded = tf.saved_model.load(exported["dir"])
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]
    rows = raw_rows[:100]
    # The sample has gaps in the integer columns, where zero-filling used to differ.
    assert sum(not r["dropoff_census_tract"] for r in rows) >= 10
    assert sum(not r["dropoff_community_area"] for r in rows) >= 1
    requests = [_raw_request(row, spec) for row in rows]
    batch = {k: tf.concat([r[k] for r in requests], axis=0) for k in spec}
    raw = serve(**batch)["probabilities"].numpy()[:, 0]
    examples = loaded.signatures["serving_examples"](
        examples=tf.constant([serialize_example(row, raw_spec) for row in rows])
    )
    assert np.all((raw >= 0.0) & (raw <= 1.0))
    np.testing.assert_allclose(raw, examples["probabilities"].numpy()[:, 0], rtol=0, atol=1e-6)


def test_behavioral_predict_fn_sends_gaps_as_missing(
    exported, raw_rows, transform_output, serialize_example
):
    """BehavioralChecks' predict function = serving_examples, gaps included (not zero-filled)."""
    from components.behavioral.checks import load_predict_fn

    raw_spec = transform_output[0].raw_feature_spec()
    rows = [r for r in raw_rows[:100] if not r["dropoff_census_tract"]][:10]
    assert len(rows) == 10
    plain = [
        {
            k: (v[0].decode() if isinstance(v[0], bytes) else v[0]) if v else None
            for k, v in row.items()
        }
        for row in rows
    ]
    got = load_predict_fn(exported["dir"])(plain)
    loaded = tf.saved_model.load(exported["dir"])
    expected = loaded.signatures["serving_examples"](
        examples=tf.constant([serialize_example(row, raw_spec) for row in rows])
    )["probabilities"].numpy()[:, 0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_classify_and_regress(exported, raw_rows, transform_output, serialize_example):
    raw_spec = transform_output[0].raw_feature_spec()
    loaded = tf.saved_model.load(exported["dir"])
    batch = tf.constant([serialize_example(r, raw_spec) for r in raw_rows[:5]])
    classified = loaded.signatures["classification"](inputs=batch)
    assert classified["classes"].numpy().tolist()[0] == [b"0", b"1"]
    np.testing.assert_allclose(classified["scores"].numpy().sum(axis=1), 1.0, rtol=1e-6)
    regressed = loaded.signatures["regression"](inputs=batch)["outputs"].numpy()
    np.testing.assert_allclose(regressed, classified["scores"].numpy()[:, 1], rtol=1e-6)


@pytest.mark.slow
def test_missing_values_are_accepted(exported, raw_rows):
    loaded = tf.saved_model.load(exported["dir"])
    serve = loaded.signatures["serving_default"]
    request = _raw_request(raw_rows[0], serve.structured_input_signature[1])
    request["dropoff_latitude"] = tf.constant([float("nan")])
    request["pickup_community_area"] = tf.constant([float("nan")], tf.float64)
    request["company"] = tf.constant([""])
    p = float(serve(**request)["probabilities"][0, 0])
    assert 0.0 <= p <= 1.0


@pytest.mark.parametrize(
    "key, values, message",
    [
        ("trip_start_hour", [3.0, 1.5], "input trip_start_hour, row 1: 1.5 is not an integer"),
        (
            "dropoff_census_tract",
            [2.0**53, 1.0],
            "input dropoff_census_tract, row 0: 9007199254740992 is not",
        ),
        (
            "pickup_community_area",
            [1.0, -math.inf],
            "input pickup_community_area, row 1: -inf is not",
        ),
        (
            "trip_start_day",
            [2.0, math.nan],
            "input trip_start_day, row 1: nan means missing, but trip_start_day is required",
        ),
        ("fare", [math.nan, 3.0], "input fare, row 0: nan means missing, but fare is required"),
        (
            "payment_type",
            ["Cash", ""],
            "input payment_type, row 1: the empty string means missing, but payment_type is required",
        ),
    ],
)
def test_bad_values_name_input_row_and_value(exported, raw_rows, key, values, message):
    loaded = tf.saved_model.load(exported["dir"])
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]
    requests = [_raw_request(raw_rows[0], spec), _raw_request(raw_rows[0], spec)]
    batch = {k: tf.concat([r[k] for r in requests], axis=0) for k in spec}
    batch[key] = tf.constant(values, dtype=spec[key].dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        serve(**batch)
    empty = {k: tf.zeros([0], spec[k].dtype) for k in spec}
    assert serve(**empty)["probabilities"].shape == (0, 1)
    # The largest exact integers are fine.
    if key == "dropoff_census_tract":
        batch[key] = tf.constant([2.0**53 - 1, -(2.0**53 - 1)], tf.float64)
        assert serve(**batch)["probabilities"].shape == (2, 1)


def test_input_files_follow_pattern_order_not_uris(tmp_path):
    # Span 2015 re-ingested as artifact 31 sorts before artifact 5 by URI; the
    # training order must not change with that.
    for artifact, names in (("5", ["b.gz", "a.gz"]), ("31", ["c.gz"])):
        folder = tmp_path / artifact / "Split-train"
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("")
    patterns = [
        str(tmp_path / "5" / "Split-train" / "*"),
        str(tmp_path / "31" / "Split-train" / "*"),
    ]
    files = [os.path.relpath(f, tmp_path) for f in taxi_model.input_files(patterns)]
    assert files == ["5/Split-train/a.gz", "5/Split-train/b.gz", "31/Split-train/c.gz"]


@pytest.mark.slow
def test_run_fn_trains_the_family_it_is_told(
    transform_output, raw_rows, tmp_path, write_examples, monkeypatch
):
    output, _ = transform_output

    def no_validation(*args):
        raise AssertionError("a budget within the floor reads no validation rows")

    monkeypatch.setattr(taxi_model, "validation_loss_fn", no_validation)
    train, evaluation = str(tmp_path / "train.gz"), str(tmp_path / "eval.gz")
    write_examples(raw_rows[:240], train, output.raw_feature_spec())
    write_examples(raw_rows[240:], evaluation, output.raw_feature_spec())
    fn_args = types.SimpleNamespace(
        # The budget is the floor (3 steps): early stopping is configured but has nothing to do.
        custom_config={"seed": 1, "early_stopping": {"patience": 3, "every": 1}},
        hyperparameters={"space": [], "values": {"model_family": "logistic"}},
        transform_output=output.transform_savedmodel_dir.rsplit("/", 1)[0],
        train_files=[train],
        eval_files=[evaluation],
        data_accessor=None,
        train_steps=3,
        eval_steps=1,
        serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "run"),
    )
    taxi_model.run_fn(fn_args)
    assert not os.path.exists(tmp_path / "run" / taxi_model.TRAINING_RECORD)
    loaded = tf.saved_model.load(fn_args.serving_model_dir)
    assert set(loaded.signatures) == {
        "serving_default",
        "serving_examples",
        "classification",
        "regression",
        "transform_features",
    }
    names = {v.name for v in loaded.weights}
    assert any(n.startswith("logit/") for n in names)
    assert not any("embedding" in n for n in names)


def _labels(dataset) -> list[list[int]]:
    return [[int(v) for v in np.asarray(y).reshape(-1)] for _, y in dataset]


def _one_pass_rows(dataset) -> list[tuple]:
    """Each record of a one-pass dataset as a tuple of its transformed values."""
    rows = []
    for x, y in dataset:
        columns = [np.asarray(x[k]).reshape(len(y), -1) for k in sorted(x)]
        for i in range(len(y)):
            rows.append(tuple(float(v) for c in columns for v in c[i]) + (float(y[i]),))
    return rows


@pytest.fixture()
def train_file(transform_output, raw_rows, tmp_path, write_examples):
    output, _ = transform_output
    path = str(tmp_path / "train.gz")
    write_examples(raw_rows, path, output.raw_feature_spec())
    return output, path


def _transformed_labels(transform_output) -> list[float]:
    _, data = transform_output
    return sorted(float(np.asarray(d[features.LABEL_KEY]).reshape(-1)[0]) for d in data)


@pytest.mark.slow
def test_input_fn_one_pass_gives_every_record_once_in_order(train_file, transform_output):
    output, path = train_file
    whole = _one_pass_rows(taxi_model._input_fn([path], None, output, 64, one_pass=True))
    assert sorted(r[-1] for r in whole) == _transformed_labels(transform_output)
    assert _one_pass_rows(taxi_model._input_fn([path], None, output, 64, one_pass=True)) == whole
    validation = _one_pass_rows(
        taxi_model._input_fn([path], None, output, 64, subset="validation", one_pass=True)
    )
    fit = _one_pass_rows(
        taxi_model._input_fn([path], None, output, 64, subset="fit", one_pass=True)
    )
    every = taxi_model.VALIDATION_EVERY
    assert validation == whole[::every]
    assert fit == [r for i, r in enumerate(whole) if i % every]


@pytest.mark.slow
def test_input_fn_transforms_in_parallel_in_read_order(train_file, monkeypatch):
    # The Transform graph runs on several batches at a time (parallel map):
    # the records must still come out in the file's order, as one
    # sequential call of the graph on the whole file gives them.
    output, path = train_file
    records = list(tf.data.TFRecordDataset([path], compression_type="GZIP"))
    transformed = output.transform_features_layer()(
        tf.io.parse_example(tf.stack(records), output.raw_feature_spec())
    )
    label = transformed.pop(features.LABEL_KEY)
    expected = _one_pass_rows([(transformed, label)])
    monkeypatch.setattr(taxi_model, "TRANSFORM_BATCH", 7)  # 43 graph calls
    rows = _one_pass_rows(taxi_model._input_fn([path], None, output, 64, one_pass=True))
    assert len(rows) == len(records) == 300
    assert rows == expected


@pytest.mark.slow
def test_input_fn_training_batches_are_full_shuffled_and_seeded(
    train_file, raw_rows, transform_output
):
    output, path = train_file
    batches = 3 * len(raw_rows) // 32  # three epochs

    def run(seed):
        return _labels(taxi_model._input_fn([path], None, output, 32, seed).take(batches))

    first, again, other = run(7), run(7), run(8)
    assert all(len(b) == 32 for b in first)
    assert first == again
    assert first != other
    epoch = [float(v) for b in first for v in b][: len(raw_rows)]
    assert sorted(epoch) == _transformed_labels(transform_output)  # each record once an epoch
    in_order = [
        r[-1] for r in _one_pass_rows(taxi_model._input_fn([path], None, output, 32, one_pass=True))
    ]
    assert epoch != in_order  # ... shuffled


@pytest.mark.slow
def test_input_fn_every_iterator_gives_the_same_batches(train_file):
    # The Tuner fits every trial on one dataset object: a trial must get the
    # same batches whatever an earlier iterator (or tf.data's read-ahead) did.
    output, path = train_file
    dataset = taxi_model._input_fn([path], None, output, 32, seed=3)
    first = _labels(dataset.take(40))  # four epochs of the 300 rows
    ahead = iter(dataset)
    for _ in range(57):
        next(ahead)
    assert _labels(dataset.take(40)) == first


def test_input_fn_streaming_gives_the_cached_batches(train_file):
    # Above CACHE_MAX_ROWS nothing is cached; the batches must not change.
    output, path = train_file
    cached = taxi_model._input_fn([path], None, output, 32, seed=3)
    streamed = taxi_model._input_fn([path], None, output, 32, seed=3, cache=False)
    assert _labels(streamed.take(30)) == _labels(cached.take(30))  # three epochs


@pytest.mark.parametrize(
    ("rows", "epochs", "batch", "floor", "steps"),
    [
        (12_003, 1.0, 128, 800, 800),  # bundled data: the floor, as before
        (1_200_030, 1.0, 128, 800, 9_376),  # 100x: one pass, ceil(9375.2)
        (1_280, 1.0, 128, 0, 10),  # exactly ten batches, not eleven
        (1_000, 0.5, 128, 0, 4),  # ceil(3.9)
        (1_280, 0.1, 128, 0, 1),  # 0.1 * 1280 / 128 is 1.0000000000000002 in floats
        (10_800, 0.25, 128, 200, 200),
        (5_000_000, 0.0, 128, 150, 150),  # 0 epochs: the floor whatever the size
    ],
)
def test_budget_steps(rows, epochs, batch, floor, steps):
    assert taxi_model.budget_steps(rows, epochs, batch, floor) == steps


def test_budget_steps_rejects_negative():
    with pytest.raises(ValueError, match="must be >= 0"):
        taxi_model.budget_steps(100, -1.0, 128, 10)


@pytest.mark.parametrize("count_batch", [taxi_model.COUNT_BATCH, 7, 1])
def test_count_records(train_file, raw_rows, monkeypatch, count_batch):
    # 600 records in batches of 7: 85 full batches and a short one, all counted.
    monkeypatch.setattr(taxi_model, "COUNT_BATCH", count_batch)
    _, path = train_file
    assert taxi_model.count_records([path, path]) == 2 * len(raw_rows)
    assert taxi_model.count_records([]) == 0


def test_input_fn_mixes_the_files_of_a_large_epoch(
    transform_output, raw_rows, tmp_path, write_examples, monkeypatch
):
    # Files read one after the other put all of the first file first; above
    # MIX_MIN_ROWS records come from every file in proportion to its size.
    output, _ = transform_output
    first, second = str(tmp_path / "a.gz"), str(tmp_path / "b.gz")
    write_examples(raw_rows[:200], first, output.raw_feature_spec())
    write_examples(raw_rows[200:], second, output.raw_feature_spec())
    assert taxi_model.file_records([first, second]) == [200, 100]

    def rows(**kwargs):
        return _one_pass_rows(
            taxi_model._input_fn([first, second], None, output, 64, one_pass=True, **kwargs)
        )

    from_second = set(
        _one_pass_rows(taxi_model._input_fn([second], None, output, 64, one_pass=True))
    )
    in_order = rows()
    assert rows(seed=1, file_rows=[200, 100]) == in_order  # 300 rows: below MIX_MIN_ROWS
    monkeypatch.setattr(taxi_model, "MIX_MIN_ROWS", 100)
    mixed = rows(seed=1, file_rows=[200, 100])
    assert sorted(mixed) == sorted(in_order) and mixed == rows(seed=1, file_rows=[200, 100])
    assert not set(in_order[:150]) & from_second
    share = len(set(mixed[:150]) & from_second) / 150  # about 1/3 from the second file
    assert 0.2 < share < 0.47, share
    with pytest.raises(ValueError, match="file_rows has 1 counts for 2 files"):
        taxi_model._input_fn([first, second], None, output, 64, file_rows=[300])


@pytest.mark.slow
def test_input_fn_with_the_global_seed_zero(train_file, raw_rows):
    # taxi-pipeline --seed 0 sets TF's global seed 0, under which TF's seed helper
    # compared the per-epoch (tensor) seed with 0 in Python: a TypeError
    # (OperatorNotAllowedInGraphError) when the dataset was built.
    output, path = train_file
    epoch_batches = len(raw_rows) // 32

    def run(seed):
        dataset = taxi_model._input_fn([path], None, output, 32, seed=seed)
        return _labels(dataset.take(2 * epoch_batches))

    tf.random.set_seed(0)
    try:
        first, again, other = run(0), run(0), run(1)
    finally:
        tf.random.set_seed(None)
    assert len(first) == 2 * epoch_batches and all(len(b) == 32 for b in first)
    assert first == again and first != other  # seeded, and the seed matters
    assert first[:epoch_batches] != first[epoch_batches:]  # each epoch its own order


@pytest.mark.parametrize(
    ("steps", "first", "every", "checks"),
    [
        (800, 800, 200, []),  # bundled data: the budget is the floor, no check at all
        (700, 800, 200, []),
        (900, 800, 200, [800, 900]),  # the budget's end is always checked
        (1_200, 800, 200, [800, 1_000, 1_200]),
        (9_392, 800, 2_000, [800, 2_800, 4_800, 6_800, 8_800, 9_392]),
    ],
)
def test_check_steps(steps, first, every, checks):
    assert taxi_model.check_steps(steps, first, every) == checks


def test_check_steps_rejects_a_zero_interval():
    with pytest.raises(ValueError, match="must be >= 1"):
        taxi_model.check_steps(1_000, 800, 0)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        taxi_model.train_early_stopping(None, None, 10, None, 5, 5, 0)


def _tiny_model_and_data(seed=0):
    """A one-unit logistic model and an endless stream of distinct seeded batches."""
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1, "sigmoid")])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(0.05), loss=tf.keras.losses.BinaryCrossentropy()
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4_096, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.float32)
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()


class _Curve:
    """A made-up validation curve: the i-th check scores ``losses[i]``; records the weights."""

    def __init__(self, losses):
        self.losses, self.weights = list(losses), []

    def __call__(self, model):
        self.weights.append(model.get_weights())
        return self.losses[len(self.weights) - 1]


@pytest.mark.slow
def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model, data = _tiny_model_and_data()
    # Checks at 10, 15, 20, ...; the lowest loss is the 4th check's (step 25),
    # three checks later (step 40) training stops: the 8th value is never asked for.
    curve = _Curve([0.5, 0.4, 0.45, 0.3, 0.35, 0.31, 0.33, 0.1])
    run = taxi_model.train_early_stopping(model, data, 100, curve, first=10, every=5, patience=3)
    assert run == {
        "steps": 40,
        "best_step": 25,
        "losses": {10: 0.5, 15: 0.4, 20: 0.45, 25: 0.3, 30: 0.35, 35: 0.31, 40: 0.33},
    }
    assert len(curve.weights) == 7
    best, last = curve.weights[3], curve.weights[6]
    assert not all(np.array_equal(a, b) for a, b in zip(best, last, strict=True))
    for got, want in zip(model.get_weights(), best, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_early_stopping_without_a_stop_trains_the_same_batches_as_train_model():
    # Checks at 10, 20, 30, 37; the loss keeps falling, so nothing stops and
    # nothing is restored: the chunks continue one iterator, exactly as one run.
    model, data = _tiny_model_and_data()
    curve = _Curve([0.4, 0.3, 0.2, 0.1])
    run = taxi_model.train_early_stopping(model, data, 37, curve, first=10, every=10, patience=1)
    assert (run["steps"], run["best_step"], list(run["losses"])) == (37, 37, [10, 20, 30, 37])
    reference, data = _tiny_model_and_data()
    taxi_model.train_model(reference, data, 37)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.slow
def test_early_stopping_within_the_floor_is_train_model_without_validation():
    # The bundled data's budget is the floor (800 of 800): no check, same weights.
    model, data = _tiny_model_and_data()
    curve = _Curve([])
    run = taxi_model.train_early_stopping(model, data, 30, curve, first=30, every=5, patience=3)
    assert run == {"steps": 30, "best_step": 30, "losses": {}}
    assert curve.weights == []
    reference, data = _tiny_model_and_data()
    taxi_model.train_model(reference, data, 30)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_validation_loss_is_the_loss_on_the_first_batches(train_file, raw_rows):
    output, path = train_file
    loss = taxi_model.validation_loss_fn([path], output, 64, 2)
    model = taxi_model.build_model({"hidden_units": [4]})
    rows = list(taxi_model._input_fn([path], None, output, 128, one_pass=True).take(1))
    (x, y) = rows[0]
    want = float(model.loss(tf.reshape(tf.cast(y, tf.float32), [-1, 1]), model(x)))
    assert loss(model) == pytest.approx(want, rel=1e-5)
    assert len(raw_rows) > 128  # two batches of 64 are not the whole file


@pytest.mark.slow
def test_run_fn_stops_early_above_the_floor_and_records_it(
    transform_output, raw_rows, tmp_path, write_examples
):
    output, _ = transform_output
    train, evaluation = str(tmp_path / "train.gz"), str(tmp_path / "eval.gz")
    write_examples(raw_rows[:240], train, output.raw_feature_spec())
    write_examples(raw_rows[240:], evaluation, output.raw_feature_spec())
    fn_args = types.SimpleNamespace(
        # 3 passes over 240 rows in batches of 128: 6 steps, above the floor of 2.
        custom_config={
            "seed": 1,
            "train_epochs": 3.0,
            "early_stopping": {"patience": 9, "every": 2},
        },
        hyperparameters=None,
        transform_output=output.transform_savedmodel_dir.rsplit("/", 1)[0],
        train_files=[train],
        eval_files=[evaluation],
        data_accessor=None,
        train_steps=2,
        eval_steps=1,
        serving_model_dir=str(tmp_path / "serving"),
        model_run_dir=str(tmp_path / "run"),
    )
    taxi_model.run_fn(fn_args)
    with open(tmp_path / "run" / taxi_model.TRAINING_RECORD) as f:
        record = json.load(f)
    assert (record["budget_steps"], record["steps"]) == (6, 6)  # patience 9: no stop
    assert list(record["losses"]) == ["2", "4", "6"]
    assert str(record["best_step"]) == min(record["losses"], key=record["losses"].get)
    assert tf.saved_model.load(fn_args.serving_model_dir).signatures["serving_default"]
