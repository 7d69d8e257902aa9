"""Trainer module: Keras model, ``run_fn`` and the exported signatures.

The exported SavedModel carries the Transform graph, so every signature takes
raw data:

* ``serving_default``: raw named features (one tensor per column), so a REST
  client sends plain JSON values; floats that are NaN and empty strings mean
  "missing".
* ``serving_examples``: serialized ``tf.Example`` -> probabilities (used by the
  Evaluator).
* ``classification`` / ``regression``: serialized ``tf.Example`` under the key
  ``inputs`` with TF Serving's classify / regress method names, so the
  ``:classify`` and ``:regress`` APIs work.
* ``transform_features``: serialized ``tf.Example`` -> transformed features
  (the Evaluator reads the label from it).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tfx import v1 as tfx  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

from components import features  # noqa: E402

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

DEFAULT_HPARAMS = {
    "hidden_units": [64, 32],
    "embedding_dim": 8,
    "learning_rate": 0.003,
    "batch_size": 128,
    "dropout": 0.1,
}


def build_model(hparams: dict | None = None) -> tf.keras.Model:
    """Wide & deep binary classifier over the transformed features.

    Args:
      hparams: overrides for ``DEFAULT_HPARAMS``.

    Returns:
      A compiled Keras model whose inputs are keyed by transformed name and
      whose output is the probability of a big tip, shape [batch, 1].
    """
    hp = {**DEFAULT_HPARAMS, **(hparams or {})}
    inputs, deep, wide = {}, [], []
    for key in features.DENSE_FLOAT_KEYS:
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(1,), name=name, dtype=tf.float32)
        deep.append(inputs[name])
    categorical = {
        **{k: features.BUCKET_COUNT + 1 for k in features.BUCKET_KEYS},
        **features.IDENTITY_KEYS,
        **{k: features.vocab_dimension(k) for k in features.VOCAB_KEYS},
    }
    for key, size in categorical.items():
        name = features.transformed_name(key)
        inputs[name] = tf.keras.Input(shape=(1,), name=name, dtype=tf.int64)
        embedded = tf.keras.layers.Embedding(size, hp["embedding_dim"])(inputs[name])
        deep.append(tf.keras.layers.Flatten()(embedded))
        wide.append(
            tf.keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(
                inputs[name]
            )
        )
    x = tf.keras.layers.concatenate(deep)
    for units in hp["hidden_units"]:
        x = tf.keras.layers.Dense(units, activation="relu")(x)
        if hp["dropout"]:
            x = tf.keras.layers.Dropout(hp["dropout"])(x)
    joined = tf.keras.layers.concatenate([x, *wide])
    output = tf.keras.layers.Dense(1, activation="sigmoid", name="probabilities")(joined)
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hp["learning_rate"]),
        loss=tf.keras.losses.BinaryCrossentropy(),
        metrics=[tf.keras.metrics.AUC(name="auc"), tf.keras.metrics.BinaryAccuracy()],
    )
    return model


def _input_fn(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of (transformed features, label) read from transformed examples."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, label_key=features.LABEL_KEY, shuffle_seed=seed
        ),
        tf_transform_output.transformed_metadata.schema,
    ).repeat()


def raw_serving_specs(tf_transform_output: tft.TFTransformOutput) -> dict:
    """One dense [batch] input per raw model feature, typed as in the schema."""
    raw_spec = tf_transform_output.raw_feature_spec()
    return {
        key: tf.TensorSpec([None], raw_spec[key].dtype, name=key)
        for key in features.model_feature_keys()
    }


def _to_raw_features(inputs: dict, tf_transform_output: tft.TFTransformOutput) -> dict:
    """Dense [batch] request tensors -> the sparse/dense layout Transform expects.

    For optional columns (VarLen in the schema), NaN floats and empty strings
    become missing entries.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    raw = {}
    for key, value in inputs.items():
        if isinstance(raw_spec[key], tf.io.FixedLenFeature):
            raw[key] = tf.reshape(value, [-1, 1])
            continue
        if value.dtype == tf.string:
            present = tf.not_equal(value, "")
        elif value.dtype.is_floating:
            present = tf.logical_not(tf.math.is_nan(value))
        else:
            present = tf.ones_like(value, dtype=tf.bool)
        rows = tf.where(present)
        raw[key] = tf.SparseTensor(
            indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
            values=tf.boolean_mask(value, present),
            dense_shape=tf.stack([tf.shape(value, out_type=tf.int64)[0], 1]),
        )
    return raw


def _signatures(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput) -> dict:
    """The serving signatures described in the module docstring."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k != features.TIPS_KEY}

    def probabilities(raw_features):
        transformed = model.tft_layer(raw_features)
        transformed.pop(features.LABEL_KEY, None)
        return model(transformed)

    @tf.function(input_signature=[raw_serving_specs(tf_transform_output)])
    def serve_raw(inputs):
        return {"probabilities": probabilities(_to_raw_features(inputs, tf_transform_output))}

    def _parse(serialized):
        return tf.io.parse_example(serialized, serving_spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return {"probabilities": probabilities(_parse(examples))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        p = probabilities(_parse(inputs))
        scores = tf.concat([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        return {"outputs": tf.squeeze(probabilities(_parse(inputs)), axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
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
    signatures = _signatures(model, tf_transform_output)
    model.save(export_dir, save_format="tf", signatures=signatures)
    set_method_names(export_dir, {"classification": CLASSIFY_METHOD, "regression": REGRESS_METHOD})


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: trains, then exports to ``serving_model_dir``."""
    custom = fn_args.custom_config or {}
    hparams = dict(custom.get("hparams", {}))
    if fn_args.hyperparameters:
        hparams.update(fn_args.hyperparameters.get("values", fn_args.hyperparameters))
    seed = int(custom.get("seed", 42))
    tf.keras.utils.set_random_seed(seed)
    hp = {**DEFAULT_HPARAMS, **hparams}

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output, hp["batch_size"], seed
    )
    evaluation = _input_fn(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hp["batch_size"], seed
    )
    model = build_model(hp)
    model.fit(
        train,
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=0,
    )
    export_model(model, tf_transform_output, fn_args.serving_model_dir)
