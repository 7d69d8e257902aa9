"""Trainer module: the model families, ``run_fn`` and the exported signatures.

Two families over the same Transform features (``MODEL_FAMILIES``, simplest
first): ``logistic`` (``build_logistic_model``: one sigmoid unit over
indicators of every categorical id and the z-scored numerics) and
``wide_deep`` (``build_model``'s default). ``run_fn`` trains the family its
``hyperparameters`` input names (ModelSelection's choice); both export exactly
the signatures below.

The exported SavedModel carries the Transform graph, so every signature takes
raw data:

* ``serving_default``: raw named features (one tensor per column), so a REST
  client sends plain JSON values: integer features as float64 (exact
  integers), float features as float32, strings; NaN and "" mean "missing",
  so every row gets the prediction ``serving_examples`` gives the same row
  (``_to_raw_features``).
* ``serving_examples``: serialized ``tf.Example`` -> probabilities (used by the
  Evaluator).
* ``classification`` / ``regression``: serialized ``tf.Example`` under the key
  ``inputs`` with TF Serving's classify / regress method names, so the
  ``:classify`` and ``:regress`` APIs work.
* ``transform_features``: serialized ``tf.Example`` -> transformed features
  (the Evaluator reads the label from it).

Over 400 lines: it is the Trainer's module file (TFX imports ``run_fn`` from one
module): the two model families, the input pipeline, the training loop (with early
stopping) and the exported signatures, whose raw-input checks (``_to_raw_features``)
must agree with the Transform graph. The
signatures (``raw_serving_specs`` to ``export_model``, about 200 lines) could be a
module of their own; not split in issue 11 because another branch moves this file's TFT
internals to ``core/compat.py``.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2

from components import features
from core import compat

if TYPE_CHECKING:
    from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

WIDE_DEEP = "wide_deep"
LOGISTIC = "logistic"
# Simplest first: model selection prefers an earlier family unless a later one
# is significantly better (components/model_selection).
MODEL_FAMILIES = (LOGISTIC, WIDE_DEEP)

DEFAULT_HPARAMS = {
    "hidden_units": [64, 32],
    "embedding_dim": 8,
    "learning_rate": 0.003,
    "batch_size": 128,
    "dropout": 0.1,
}
# The linear baseline learns faster with a larger step (one layer, no depth).
LOGISTIC_HPARAMS = {"learning_rate": 0.02, "batch_size": 128}


def family_hparams(family: str, overrides: dict | None = None) -> dict:
    """Complete hyperparameters of ``family``: its defaults, then ``overrides``.

    The result always names the family under ``model_family``.
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")
    defaults = DEFAULT_HPARAMS if family == WIDE_DEEP else LOGISTIC_HPARAMS
    return {**defaults, **(overrides or {}), "model_family": family}


def categorical_sizes() -> dict[str, int]:
    """Transformed categorical feature -> number of distinct ids, in input order."""
    return {
        **{k: features.BUCKET_COUNT + 1 for k in features.BUCKET_KEYS},
        **features.IDENTITY_KEYS,
        **{k: features.vocab_dimension(k) for k in features.VOCAB_KEYS},
    }


class OffsetIds(tf.keras.layers.Layer):
    """Stacks per-feature ids into one id space: feature i's ids start at offset i."""

    def __init__(self, sizes: list[int], **kwargs):
        super().__init__(**kwargs)
        self.sizes = list(sizes)
        offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self._offsets = tf.constant([offsets], dtype=tf.int64)

    def call(self, ids: list[tf.Tensor]) -> tf.Tensor:
        stacked = tf.concat([tf.cast(i, tf.int64) for i in ids], axis=1)
        return stacked + self._offsets

    def get_config(self) -> dict:
        return {**super().get_config(), "sizes": self.sizes}


def _inputs() -> tuple[dict, dict, dict[str, int]]:
    """Keras inputs keyed by transformed name: dense floats, categorical ids, id counts."""
    sizes = categorical_sizes()
    dense_inputs = {
        features.transformed_name(k): tf.keras.Input(
            shape=(1,), name=features.transformed_name(k), dtype=tf.float32
        )
        for k in features.DENSE_FLOAT_KEYS
    }
    id_inputs = {
        features.transformed_name(k): tf.keras.Input(
            shape=(1,), name=features.transformed_name(k), dtype=tf.int64
        )
        for k in sizes
    }
    return dense_inputs, id_inputs, sizes


def _compile(model: tf.keras.Model, learning_rate: float) -> tf.keras.Model:
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=[tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy()],
    )
    return model


def build_logistic_model(hparams: dict | None = None) -> tf.keras.Model:
    """Logistic regression over the same transformed features as the wide & deep model.

    One indicator per categorical id (quantile buckets, identity columns and
    vocabulary ids, offset per feature as in the wide part) plus the z-scored
    numerics, into one sigmoid unit. Same inputs and output shape as
    ``build_model``'s wide & deep, so the same training loop and export apply.
    """
    hp = {**LOGISTIC_HPARAMS, **(hparams or {})}
    dense_inputs, id_inputs, sizes = _inputs()
    ids = OffsetIds(list(sizes.values()), name="offset_ids")(list(id_inputs.values()))
    indicators = tf.keras.layers.CategoryEncoding(
        num_tokens=sum(sizes.values()), output_mode="multi_hot", name="indicators"
    )(ids)
    x = tf.keras.layers.concatenate([*dense_inputs.values(), indicators], name="linear_input")
    logit = tf.keras.layers.Dense(1, name="logit")(x)
    output = tf.keras.layers.Activation("sigmoid", name="probabilities")(logit)
    model = tf.keras.Model(inputs={**dense_inputs, **id_inputs}, outputs=output, name=LOGISTIC)
    return _compile(model, hp["learning_rate"])


def build_model(hparams: dict | None = None) -> tf.keras.Model:
    """The model family ``hparams["model_family"]`` names (default: wide & deep).

    ``"logistic"`` builds ``build_logistic_model``; anything else must be
    ``"wide_deep"``, documented below.

    Wide & deep binary classifier over the transformed features.

    All categorical features share one embedding table and one multi-hot wide
    part (ids offset per feature), which keeps the graph small and fast to
    trace and export.

    Args:
      hparams: overrides for ``DEFAULT_HPARAMS``; ``hidden_units`` may be a
        list or a comma-separated string (as the Tuner's choices are).

    Returns:
      A compiled Keras model whose inputs are keyed by transformed name and
      whose output is the probability of a big tip, shape [batch, 1].
    """
    family = (hparams or {}).get("model_family", WIDE_DEEP)
    if family == LOGISTIC:
        return build_logistic_model(hparams)
    if family != WIDE_DEEP:
        raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")
    hp = {**DEFAULT_HPARAMS, **(hparams or {})}
    if isinstance(hp["hidden_units"], str):  # KerasTuner choices are scalars: "64,32"
        hp["hidden_units"] = [int(u) for u in hp["hidden_units"].split(",") if u]
    dense_inputs, id_inputs, sizes = _inputs()
    ids = OffsetIds(list(sizes.values()), name="offset_ids")(list(id_inputs.values()))
    total = sum(sizes.values())
    embedded = tf.keras.layers.Embedding(total, hp["embedding_dim"], name="embedding")(ids)
    x = tf.keras.layers.concatenate(
        [*dense_inputs.values(), tf.keras.layers.Flatten()(embedded)], name="deep_input"
    )
    for i, units in enumerate(hp["hidden_units"]):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"deep_{i}")(x)
        if hp["dropout"]:
            x = tf.keras.layers.Dropout(hp["dropout"], seed=0)(x)
    deep_logit = tf.keras.layers.Dense(1, name="deep_logit")(x)
    wide = tf.keras.layers.CategoryEncoding(num_tokens=total, output_mode="multi_hot", name="wide")(
        ids
    )
    wide_logit = tf.keras.layers.Dense(1, name="wide_logit")(wide)
    logit = tf.keras.layers.add([deep_logit, wide_logit])
    output = tf.keras.layers.Activation("sigmoid", name="probabilities")(logit)
    model = tf.keras.Model(inputs={**dense_inputs, **id_inputs}, outputs=output)
    return _compile(model, hp["learning_rate"])


SHUFFLE_BUFFER = 10_000  # records; tfxio's default shuffle buffer
# Up to this many records, a training dataset keeps its transformed records in
# memory after the first epoch (about 1 KB each); above it, every epoch
# streams them from disk through the Transform graph again.
CACHE_MAX_ROWS = 250_000
# An epoch this much larger than the shuffle buffer is read from all its
# files at once, in proportion to their sizes (see _input_fn): the buffer
# alone would leave the newest span first and the oldest last in every epoch.
MIX_MIN_ROWS = 4 * SHUFFLE_BUFFER
VALIDATION_EVERY = 10  # _input_fn(subset=...): every 10th record validates
TRANSFORM_BATCH = 1024  # records per call of the Transform graph in _input_fn
EPOCH_SEED_STRIDE = 1_000_003  # _input_fn: epoch e of seed s is shuffled with s * stride + e
TF_MAX_SEED = 2**31 - 1  # TF takes seeds modulo this (a global seed 0 is special)


def input_files(file_patterns: list[str]) -> list[str]:
    """Files of ``file_patterns`` in pattern order, sorted within each pattern.

    The order depends on the patterns' order (newest span first: the
    Trainer of components/span_order.py sorts its span artifacts before
    ``run_fn`` sees them) and file names inside each artifact, not on URIs:
    a globally sorted list (what ``tf.data.Dataset.list_files`` and tfxio
    produce) changes when a re-ingested span gets a new artifact id, and with
    it the shuffled order and the trained model.
    """
    return [name for pattern in file_patterns for name in sorted(tf.io.gfile.glob(pattern))]


COUNT_BATCH = 4096  # records per step of count_records


def count_records(files: list[str]) -> int:
    """Records in gzipped (or plain) TFRecord ``files``, counted in-graph (no Python per record).

    Counted ``COUNT_BATCH`` at a time: tf.data's per-element cost made a
    record-at-a-time count about 13 times slower (7.7 vs 0.6 CPU s on the
    347,300 train rows of one 100x span).
    """
    if not files:
        return 0
    compression = "GZIP" if files[0].endswith(".gz") else ""
    batches = tf.data.TFRecordDataset(files, compression_type=compression).batch(COUNT_BATCH)
    return int(
        batches.reduce(
            tf.constant(0, tf.int64), lambda n, batch: n + tf.shape(batch, out_type=tf.int64)[0]
        )
    )


def file_records(file_patterns: list[str]) -> list[int]:
    """``count_records`` of each file of ``input_files(file_patterns)``, in that order."""
    return [count_records([name]) for name in input_files(file_patterns)]


def budget_steps(rows: int, epochs: float, batch_size: int, min_steps: int) -> int:
    """Training steps: at least ``min_steps``, and enough batches for ``epochs`` passes of ``rows``.

    ``max(min_steps, ceil(epochs * rows / batch_size))``; ``epochs`` 0 means
    ``min_steps`` whatever the data size. On the bundled data one pass is
    fewer steps than the defaults' minimums, so only larger data trains longer.
    """
    if epochs < 0 or min_steps < 0:
        raise ValueError(f"epochs and min_steps must be >= 0, got {epochs} and {min_steps}")
    # The epsilon absorbs float noise: 0.1 * 1280 / 128 is 1.0000000000000002, one step.
    return max(min_steps, math.ceil(epochs * rows / batch_size - 1e-9))


def _input_fn(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int | None = None,
    subset: str | None = None,
    one_pass: bool = False,
    cache: bool = True,
    file_rows: list[int] | None = None,
) -> tf.data.Dataset:
    """Batches of (transformed features, label) from raw examples.

    Records are read in ``input_files`` order and shuffled with ``seed``, so
    the same data, config and seed give the same batches (see
    ``input_files``). ``data_accessor`` is not used: its dataset factory
    orders files by URI. The Transform graph is applied here (Transform runs
    with ``materialize=False``), ``TRANSFORM_BATCH`` records per call, and
    the transformed records are cached in memory on the first pass: parsing
    and transforming happen once per dataset, not once per training batch.
    Given ``file_rows`` (the record count of each file, ``file_records``)
    adding up to more than ``MIX_MIN_ROWS``, records are drawn from all the
    files at once, each with probability proportional to its size (seeded:
    the same order every time), instead of file after file: every part of an
    epoch then mixes every span, which a shuffle buffer much smaller than the
    epoch cannot do. Smaller data is read file after file, as always.
    With ``cache=False`` (data above ``CACHE_MAX_ROWS``) nothing is kept:
    every epoch streams the files through the Transform graph again, and
    memory holds the shuffle buffer, whatever the data size. A one-pass
    dataset is never cached.

    ``subset`` carves a validation set out of the given files: "validation"
    keeps every ``VALIDATION_EVERY``-th record (in read order, so always the
    same records), "fit" the others, None all of them. The Tuner fits and
    scores on the train split this way and never reads eval or test.

    Training data (``one_pass=False``) is shuffled (each epoch with its own
    seed derived from ``seed``) and repeats forever in full batches; every
    iterator of the dataset yields the same batches. ``one_pass=True`` gives
    every record once, in read order (the last batch may be short): what a
    score should cover.
    """
    del data_accessor
    if subset not in (None, "fit", "validation"):
        raise ValueError(f"subset must be None, 'fit' or 'validation', got {subset!r}")
    files = input_files(file_pattern)
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    raw_spec = tf_transform_output.raw_feature_spec()
    transform = tf_transform_output.transform_features_layer()

    # Plain graph code: autograph would re-compile the whole Transform layer
    # call for every dataset (seconds per training run) to find no control flow.
    @tf.autograph.experimental.do_not_convert
    def split_label(serialized):
        transformed = transform(tf.io.parse_example(serialized, raw_spec))
        return transformed, transformed.pop(features.LABEL_KEY)

    if file_rows is not None and len(file_rows) != len(files):
        raise ValueError(f"file_rows has {len(file_rows)} counts for {len(files)} files")
    if file_rows and len(files) > 1 and sum(file_rows) > MIX_MIN_ROWS:
        records = tf.data.Dataset.sample_from_datasets(
            [tf.data.TFRecordDataset([f], compression_type=compression) for f in files],
            weights=[n / sum(file_rows) for n in file_rows],
            seed=0 if seed is None else seed,
            stop_on_empty_dataset=False,
        )
    else:
        records = tf.data.TFRecordDataset(files, compression_type=compression)
    if subset is not None:
        validation = subset == "validation"

        @tf.autograph.experimental.do_not_convert
        def in_subset(i, _):
            return tf.equal(tf.equal(i % VALIDATION_EVERY, 0), validation)

        records = records.enumerate().filter(in_subset).map(lambda _, record: record)
    # The Transform graph runs on tf.data's threads, several batches at a time
    # and ahead of the consumer, so a training step overlaps the parsing and
    # transforming of the next records (the second core); ``deterministic``
    # keeps the read order, so the batches are the ones of a sequential map.
    transformed = records.batch(TRANSFORM_BATCH).map(
        split_label, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    transformed = transformed.unbatch()
    if one_pass:
        return transformed.batch(batch_size)
    if cache:
        transformed = transformed.cache()
    if seed is None:
        stream = transformed.shuffle(SHUFFLE_BUFFER).repeat()
    else:
        # Epoch e is shuffled with its own seed (from seed and e), not by a
        # seed generator shared by all iterators of the dataset: that one
        # advances whenever an iterator (or tf.data's injected read-ahead)
        # starts an epoch, so a second iterator -- the next Tuner trial --
        # would get batches depending on how far the first one had read.
        # With the global seed 0 (`--seed 0`), TF's seed helper compares the
        # (tensor) op seed with 0 in Python, which a traced function refuses;
        # the epoch's function graph then drops the global seed, so its
        # shuffle depends on the op seed alone (still `seed` and `e`).
        def epoch(e):
            graph = tf.compat.v1.get_default_graph()  # this function's graph
            if graph.seed is not None and graph.seed % TF_MAX_SEED == 0:
                tf.random.set_seed(None)  # in graph mode: this graph's seed only
            return transformed.shuffle(SHUFFLE_BUFFER, seed=seed * EPOCH_SEED_STRIDE + e)

        stream = tf.data.Dataset.counter().flat_map(epoch)
    return stream.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# Integer features travel as float64 in ``serving_default`` (so NaN can say
# "missing" in plain JSON); every integer of magnitude below 2**53 is exact.
MAX_EXACT_INTEGER = 2**53


def raw_serving_specs(tf_transform_output: tft.TFTransformOutput) -> dict:
    """One dense [batch] input per raw model feature of ``serving_default``.

    Integer features are float64, float features float32, string features
    string: each type can say "missing" (NaN, NaN, "") in plain JSON.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    return {
        key: tf.TensorSpec([None], _serving_dtype(raw_spec[key].dtype), name=key)
        for key in features.model_feature_keys()
    }


def _serving_dtype(raw_dtype: tf.DType) -> tf.DType:
    return tf.float64 if raw_dtype.is_integer else raw_dtype


def _failure_message(key: str, value: tf.Tensor, ok: tf.Tensor, problem: str) -> tf.Tensor:
    """``input <key>, row <i>: <value> <problem>`` for the first row where ``ok`` is False."""
    # A sentinel row so that an empty or all-good batch has one too.
    row = tf.argmin(tf.concat([tf.cast(ok, tf.int32), [0]], 0), output_type=tf.int64)
    shown = (
        "the empty string"  # the only string a check refuses
        if value.dtype == tf.string
        else tf.strings.as_string(
            tf.gather(tf.concat([value, tf.zeros([1], value.dtype)], 0), row),
            precision=17,
            shortest=True,
        )
    )
    return tf.strings.join(
        [f"input {key}, row ", tf.strings.as_string(row), ": ", shown, " " + problem]
    )


def _check_inputs(checks: list) -> tf.Operation:
    """One assertion over ``checks`` ((key, value, ok, problem) per check).

    The failure is an INVALID_ARGUMENT naming the input, the row and the
    value of the first failing check, e.g. ``input trip_start_hour, row 2:
    1.5 is not an integer ...``. The message is built only on failure (a
    ``tf.cond``), so a good request pays for one reduction.
    """
    passed = tf.stack([tf.reduce_all(ok) for _, _, ok, _ in checks])

    def report():
        messages = tf.stack([_failure_message(*check) for check in checks])
        first = tf.argmin(tf.cast(passed, tf.int32))
        return tf.debugging.Assert(False, [tf.gather(messages, first)])

    return tf.cond(tf.reduce_all(passed), tf.no_op, report, name="check_inputs")


def _to_raw_features(inputs: dict, tf_transform_output: tft.TFTransformOutput) -> dict:
    """Dense [batch] request tensors -> the sparse/dense layout Transform expects.

    NaN (integer and float features) and "" (string features) mean missing:
    optional columns (VarLen in the schema) get no entry, as a tf.Example
    without the feature would; a missing required column (FixedLen) fails
    with INVALID_ARGUMENT, as ``serving_examples`` refuses such an example.
    Integer features must hold exact integers of magnitude below 2**53
    (1.5, 2**53 or infinity fail with INVALID_ARGUMENT naming input, row and
    value) and are cast to the schema's int64.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    raw, checks = {}, []
    for key, value in inputs.items():
        spec = raw_spec[key]
        present = (
            tf.not_equal(value, "")
            if value.dtype == tf.string
            else tf.logical_not(tf.math.is_nan(value))
        )
        if spec.dtype.is_integer:
            exact = tf.logical_and(
                tf.equal(value, tf.math.floor(value)), tf.abs(value) < MAX_EXACT_INTEGER
            )
            checks.append(
                (
                    key,
                    value,
                    tf.logical_or(exact, tf.logical_not(present)),
                    "is not an integer of magnitude below 2**53 (NaN = missing)",
                )
            )
            value = tf.cast(tf.where(present, value, tf.zeros_like(value)), spec.dtype)
        if isinstance(spec, tf.io.FixedLenFeature):
            checks.append((key, inputs[key], present, f"means missing, but {key} is required"))
            raw[key] = tf.reshape(value, [-1, 1])
            continue
        rows = tf.where(present)
        raw[key] = tf.SparseTensor(
            indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
            values=tf.boolean_mask(value, present),
            dense_shape=tf.stack([tf.shape(value, out_type=tf.int64)[0], 1]),
        )
    with tf.control_dependencies([_check_inputs(checks)]):
        return {
            key: tf.identity(v)
            if isinstance(v, tf.Tensor)
            else tf.sparse.map_values(tf.identity, v)
            for key, v in raw.items()
        }


def _raw_input_signature(raw_spec: dict) -> dict:
    """TypeSpecs of parsed raw features: sparse for VarLen, [batch, 1] for FixedLen."""
    return {
        key: tf.TensorSpec([None, 1], spec.dtype)
        if isinstance(spec, tf.io.FixedLenFeature)
        else tf.SparseTensorSpec([None, None], spec.dtype)
        for key, spec in raw_spec.items()
    }


class ServingModule(tf.Module):
    """What gets exported: the Transform graph, the model's weights, signatures.

    Neither the Keras model nor TFT's Keras layer is tracked, only the
    model's variables and the Transform graph's loader state (its tables and
    vocabulary assets), so saving writes the signature functions without
    re-tracing every Keras layer through autograph.
    """

    def __init__(self, model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        loader, self.transform_state = compat.load_transform_graph(
            tf_transform_output.transform_savedmodel_dir
        )
        self.weights = list(model.variables)
        raw_spec = tf_transform_output.raw_feature_spec()
        serving_spec = {k: raw_spec[k] for k in features.model_feature_keys()}

        @tf.function(autograph=False, input_signature=[_raw_input_signature(serving_spec)])
        def probabilities(raw_features):
            transformed = loader.apply_transform_model(raw_features)
            transformed.pop(features.LABEL_KEY, None)
            return model(transformed, training=False)

        def parse(serialized):
            return tf.io.parse_example(serialized, serving_spec)

        @tf.function(autograph=False, input_signature=[raw_serving_specs(tf_transform_output)])
        def serve_raw(inputs):
            raw = _to_raw_features(inputs, tf_transform_output)
            return {"probabilities": probabilities(raw)}

        @tf.function(
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
        )
        def serve_examples(examples):
            return {"probabilities": probabilities(parse(examples))}

        @tf.function(
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
        )
        def classify(inputs):
            p = probabilities(parse(inputs))
            classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
            return {"classes": classes, "scores": tf.concat([1.0 - p, p], axis=1)}

        @tf.function(
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
        )
        def regress(inputs):
            return {"outputs": tf.squeeze(probabilities(parse(inputs)), axis=1)}

        @tf.function(
            autograph=False, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
        )
        def transform_features(examples):
            return loader.apply_transform_model(tf.io.parse_example(examples, raw_spec))

        self.serving_signatures = {
            "serving_default": serve_raw,
            "serving_examples": serve_examples,
            "classification": classify,
            "regression": regress,
            "transform_features": transform_features,
        }


def set_method_names(export_dir: str, method_names: dict[str, str]) -> None:
    """Rewrites SignatureDef method names in ``saved_model.pb``.

    TF2's ``tf.saved_model.save`` marks every signature as a predict
    signature; TF Serving's classify and regress APIs require their own method
    names, so they are set here after saving.
    """
    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for name, method in method_names.items():
            meta_graph.signature_def[name].method_name = method
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def export_model(model: tf.keras.Model, tf_transform_output, export_dir: str) -> None:
    """Saves ``model`` with the Transform graph and all serving signatures."""
    module = ServingModule(model, tf_transform_output)
    tf.saved_model.save(module, export_dir, signatures=module.serving_signatures)
    set_method_names(export_dir, {"classification": CLASSIFY_METHOD, "regression": REGRESS_METHOD})


def gradient_step(model: tf.keras.Model, x, y) -> tf.Tensor:
    """One optimizer step of ``model`` on the batch (``x``, ``y``); returns the loss.

    Meant to be traced inside a ``tf.function`` (the in-graph loops of
    ``train_model`` and of cross-validation).
    """
    with tf.GradientTape() as tape:
        loss = model.loss(y, model(x, training=True))
    model.optimizer.apply_gradients(
        zip(
            tape.gradient(loss, model.trainable_variables),
            model.trainable_variables,
            strict=True,
        )
    )
    return loss


def train_model(model: tf.keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
    """Runs ``steps`` optimizer steps over ``dataset``; returns the last loss.

    The loop is one graph: a ``tf.while_loop`` that takes the next batch
    from the dataset's iterator and runs ``gradient_step``, inside a
    ``tf.function`` without autograph (the step has no data-dependent Python
    control flow, and autograph's conversion of Keras internals would
    dominate training time here). No Python runs per step. A dataset with
    fewer than ``steps`` batches is an error (``OutOfRangeError``).
    """
    return float(_training_loop(model)(iter(dataset), tf.constant(steps)))


def _training_loop(model: tf.keras.Model):
    """``loop(iterator, steps) -> last loss``: ``train_model``'s in-graph loop.

    Calling it again with the same iterator continues where the last call
    stopped, so n calls of k steps train on the same batches as one of n * k.
    """
    # Optimizer slots must exist before the loop: variables cannot be created inside it.
    model.optimizer.build(model.trainable_variables)

    @tf.function(autograph=False)
    def loop(iterator, steps):
        def body(i, _):
            x, y = iterator.get_next()
            return i + 1, gradient_step(model, x, tf.cast(tf.reshape(y, [-1, 1]), tf.float32))

        _, loss = tf.while_loop(
            lambda i, _: i < steps,
            body,
            (tf.constant(0), tf.constant(float("nan"))),
            parallel_iterations=1,  # step after step, as the optimizer state requires
        )
        return loss

    return loop


def check_steps(steps: int, first: int, every: int) -> list[int]:
    """Steps after which ``train_early_stopping`` validates: ``first``, every ``every``, ``steps``.

    Empty when ``steps <= first``: such a budget trains straight through,
    with no validation at all. Otherwise the last check is at ``steps``.
    """
    if first < 1 or every < 1:
        raise ValueError(f"first and every must be >= 1, got {first} and {every}")
    if steps <= first:
        return []
    return [*range(first, steps, every), steps]


def train_early_stopping(
    model: tf.keras.Model,
    dataset: tf.data.Dataset,
    steps: int,
    validation_loss,
    first: int,
    every: int,
    patience: int,
) -> dict:
    """Trains at most ``steps`` steps, stopping once the validation loss stops improving.

    The loss (``validation_loss(model) -> float``) is checked at
    ``check_steps(steps, first, every)``. Training stops after ``patience``
    checks in a row without a new lowest loss, and the weights of the check
    with the lowest loss are restored (Keras' ``EarlyStopping`` with
    ``restore_best_weights``; the optimizer state is not restored). A budget
    of at most ``first`` steps trains exactly as ``train_model`` does: the
    same batches, no validation. Batches come from one iterator, so
    stopping at step s has trained on the same batches as ``train_model``
    for s steps.

    Returns:
      ``{"steps": trained, "best_step": step whose weights the model has,
      "losses": {check step: validation loss}}``.
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    loop, iterator = _training_loop(model), iter(dataset)
    checks = check_steps(steps, first, every)
    if not checks:
        loop(iterator, tf.constant(steps))
        return {"steps": steps, "best_step": steps, "losses": {}}
    losses, best, best_weights, done = {}, None, None, 0
    for step in checks:
        loop(iterator, tf.constant(step - done))
        done = step
        losses[step] = float(validation_loss(model))
        if best is None or losses[step] < losses[best]:
            best, best_weights = step, model.get_weights()
        elif len([s for s in losses if s > best]) >= patience:
            break
    if best != done:
        model.set_weights(best_weights)
    return {"steps": done, "best_step": best, "losses": losses}


def evaluate_model(model: tf.keras.Model, dataset: tf.data.Dataset, steps: int) -> dict:
    """AUC and accuracy of ``model`` over the first ``steps`` batches of ``dataset``."""
    auc, accuracy = tf.keras.metrics.AUC(), tf.keras.metrics.BinaryAccuracy()

    # One traced step without autograph: called eagerly, Keras metrics convert
    # and run their update code through autograph on every call.
    @tf.function(autograph=False)
    def update(x, y):
        p, y = model(x, training=False), tf.reshape(y, [-1, 1])
        auc.update_state(y, p)
        accuracy.update_state(y, p)

    for x, y in dataset.take(steps):
        update(x, y)
    return {"auc": float(auc.result()), "binary_accuracy": float(accuracy.result())}


def validation_loss_fn(
    file_patterns: list[str], tf_transform_output, batch_size: int, batches: int
):
    """``loss(model)``: the model's loss on the first ``batches`` batches of ``file_patterns``.

    The rows are read once, drawn from all the files (``_input_fn`` with
    ``file_rows``: every span is represented, not just the first file's), and
    kept in memory; each call is one forward pass over them.
    """
    file_rows = file_records(file_patterns)
    dataset = _input_fn(
        file_patterns, None, tf_transform_output, batch_size, one_pass=True, file_rows=file_rows
    )
    parts = list(dataset.take(batches))
    if not parts:
        raise ValueError(f"no validation rows in {file_patterns}")
    x = {key: tf.concat([p[0][key] for p in parts], 0) for key in parts[0][0]}
    y = tf.cast(tf.reshape(tf.concat([p[1] for p in parts], 0), [-1, 1]), tf.float32)
    return lambda model: float(model.loss(y, model(x, training=False)))


TRAINING_RECORD = "early_stopping.json"  # in the Trainer's model_run artifact


def write_training_record(model_run_dir: str, record: dict) -> None:
    """Writes ``record`` (``train_early_stopping``'s result and the budget) as JSON.

    Integer check steps become JSON object keys, i.e. strings.
    """
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, TRAINING_RECORD), "w") as f:
        f.write(json.dumps(record, sort_keys=True))


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point: trains, then exports to ``serving_model_dir``.

    It trains ``budget_steps`` steps: ``train_args.num_steps`` at least,
    and ``custom_config["train_epochs"]`` passes over the train split (its
    records are counted first), streamed rather than cached above
    ``CACHE_MAX_ROWS``. With ``custom_config["early_stopping"]``
    (``{"patience": p, "every": e}``, p > 0) a budget above
    ``train_args.num_steps`` stops early (``train_early_stopping``: checks
    from ``num_steps`` on, every e steps, of the loss on the first
    ``eval_args.num_steps`` batches of the eval split) and keeps the best
    weights, and records what it did in ``model_run_dir``
    (``TRAINING_RECORD``); a budget of ``num_steps`` trains straight through
    and reads no validation rows. The family and its hyperparameters come from the
    ``hyperparameters`` input (ModelSelection's choice, or the Tuner's best values, which are
    wide & deep), over ``custom_config["hparams"]``; without either it
    trains wide & deep with ``DEFAULT_HPARAMS``. Every family exports the
    same signatures.
    """
    custom = fn_args.custom_config or {}
    hparams = dict(custom.get("hparams", {}))
    if fn_args.hyperparameters:
        hparams.update(fn_args.hyperparameters.get("values", fn_args.hyperparameters))
    seed = int(custom.get("seed", 42))
    tf.keras.utils.set_random_seed(seed)
    family = hparams.pop("model_family", WIDE_DEEP)
    hp = family_hparams(family, hparams)
    logging.info("Trainer: model family %s, hyperparameters %s", family, hp)

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    file_rows = file_records(fn_args.train_files)
    rows = sum(file_rows)
    steps = budget_steps(
        rows, float(custom.get("train_epochs", 0.0)), hp["batch_size"], fn_args.train_steps
    )
    logging.info("Trainer: %d train rows, %d steps of %d", rows, steps, hp["batch_size"])
    train = _input_fn(
        fn_args.train_files,
        fn_args.data_accessor,
        tf_transform_output,
        hp["batch_size"],
        seed,
        cache=rows <= CACHE_MAX_ROWS,
        file_rows=file_rows,
    )
    evaluation = _input_fn(
        fn_args.eval_files,
        fn_args.data_accessor,
        tf_transform_output,
        hp["batch_size"],
        one_pass=True,
    )
    model = build_model(hp)
    stopping = custom.get("early_stopping") or {}
    # Within the floor there is nothing to check: not even the validation rows are read.
    if stopping.get("patience") and fn_args.eval_steps and steps > fn_args.train_steps:
        run = train_early_stopping(
            model,
            train,
            steps,
            validation_loss_fn(
                fn_args.eval_files, tf_transform_output, hp["batch_size"], fn_args.eval_steps
            ),
            first=fn_args.train_steps,
            every=int(stopping["every"]),
            patience=int(stopping["patience"]),
        )
        logging.info(
            "Trainer: trained %d of %d steps, kept the weights of step %d (eval loss by step: %s)",
            run["steps"],
            steps,
            run["best_step"],
            run["losses"],
        )
        if getattr(fn_args, "model_run_dir", None):
            write_training_record(fn_args.model_run_dir, {"budget_steps": steps, **run})
    else:
        train_model(model, train, steps)
    if fn_args.eval_steps:
        metrics = evaluate_model(model, evaluation, fn_args.eval_steps)
        logging.info("Trainer eval (at most %d batches): %s", fn_args.eval_steps, metrics)
    export_model(model, tf_transform_output, fn_args.serving_model_dir)
