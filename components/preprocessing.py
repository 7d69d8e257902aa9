"""Transform module: ``preprocessing_fn`` for the taxi model.

The same graph runs in training (TFX Transform) and in serving (the
``tft_layer`` embedded in the exported SavedModel), so there is no
training/serving skew in feature engineering.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from components import features


def _dense(value: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """Turns a [batch, 0-or-1] sparse or [batch, 1] dense column into [batch].

    Missing values (an empty row of a sparse tensor) become ``default``.
    """
    if value.dtype != tf.string:
        default = tf.cast(default, value.dtype)
    if isinstance(value, tf.SparseTensor):
        value = tf.sparse.to_dense(
            tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1]),
            default_value=default,
        )
    return tf.squeeze(value, axis=1) if value.shape.rank == 2 else value


def _missing(value: tf.Tensor | tf.SparseTensor):
    """The fill value for a missing entry of ``value``'s dtype."""
    return "" if value.dtype == tf.string else -1


def _as_string(value: tf.Tensor) -> tf.Tensor:
    """Integer categories (census tracts) become strings for the vocabulary."""
    return value if value.dtype == tf.string else tf.strings.as_string(value)


def _label(tips: tf.Tensor, fare: tf.Tensor) -> tf.Tensor:
    """1 when the tip is more than ``TIP_FRACTION`` of the fare, else 0."""
    return tf.cast(tips > features.TIP_FRACTION * fare, tf.int64)


# Nothing here needs autograph (no tensor-dependent Python control flow);
# skipping its source-to-source conversion of TFT's internals saves seconds
# per trace, and Transform traces this function several times.
@tf.autograph.experimental.do_not_convert
def preprocessing_fn(inputs: dict) -> dict:
    """Maps raw taxi features to model-ready tensors.

    Args:
      inputs: raw features as parsed with the curated schema (sparse for
        optional columns, dense for required ones).

    Returns:
      Transformed features keyed by ``features.transformed_name(key)`` and
      the label under ``features.LABEL_KEY`` when the tips column is present.
    """
    outputs = {}
    for key in features.DENSE_FLOAT_KEYS:
        value = tf.cast(_dense(inputs[key], 0.0), tf.float32)
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(value)

    for key in features.BUCKET_KEYS:
        value = tf.cast(_dense(inputs[key], 0.0), tf.float32)
        outputs[features.transformed_name(key)] = tft.bucketize(value, features.BUCKET_COUNT)

    for key, size in features.IDENTITY_KEYS.items():
        value = tf.cast(_dense(inputs[key], 0), tf.int64)
        # Out-of-range ids fold into the valid range instead of failing.
        outputs[features.transformed_name(key)] = tf.math.floormod(value, size)

    for key in features.VOCAB_KEYS:
        value = _as_string(_dense(inputs[key], _missing(inputs[key])))
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            value,
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_BUCKETS,
            vocab_filename=key,
        )

    if features.TIPS_KEY in inputs:
        tips = tf.cast(_dense(inputs[features.TIPS_KEY], 0.0), tf.float32)
        fare = tf.cast(_dense(inputs["fare"], 0.0), tf.float32)
        outputs[features.LABEL_KEY] = _label(tips, fare)
    return outputs
