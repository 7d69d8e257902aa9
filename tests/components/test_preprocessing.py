"""preprocessing_fn on 300 real rows: label rule, scaling, vocab, buckets, ids."""

import numpy as np

from components import features


def test_outputs_and_label(transform_output, raw_rows):
    _, data = transform_output
    expected = {features.transformed_name(k) for k in features.model_feature_keys()}
    assert set(data[0]) == expected | {features.LABEL_KEY}
    labels = [row[features.LABEL_KEY] for row in data]
    truth = [int(r["tips"][0] > 0.2 * r["fare"][0]) for r in raw_rows]
    assert labels == truth
    assert 0 < np.mean(labels) < 1


def test_dense_floats_are_standardised(transform_output):
    _, data = transform_output
    fare = np.array([row["fare_xf"] for row in data])
    assert abs(fare.mean()) < 1e-4
    assert abs(fare.std() - 1) < 1e-3


def test_categorical_ranges(transform_output):
    _, data = transform_output
    for key in features.BUCKET_KEYS:
        values = {row[features.transformed_name(key)] for row in data}
        assert values <= set(range(features.BUCKET_COUNT + 1))
    for key, size in features.IDENTITY_KEYS.items():
        values = {row[features.transformed_name(key)] for row in data}
        assert values <= set(range(size))
    for key in features.VOCAB_KEYS:
        values = {row[features.transformed_name(key)] for row in data}
        assert values <= set(range(features.vocab_dimension(key)))


def test_unseen_category_goes_to_oov_bucket(transform_output, raw_rows):
    output, _ = transform_output
    import tensorflow as tf

    layer = output.transform_features_layer()
    row = dict(raw_rows[0])
    raw = output.raw_feature_spec()
    batch = {}
    for key, spec in raw.items():
        if key == "payment_type":
            value = b"Bitcoin"
        else:
            value = row[key][0] if row[key] else None
        if isinstance(spec, tf.io.FixedLenFeature):
            batch[key] = tf.constant([[value]], dtype=spec.dtype)
        else:
            values = [] if value is None else [value]
            batch[key] = tf.SparseTensor(
                indices=tf.constant([[0, 0]] * len(values), dtype=tf.int64, shape=[len(values), 2]),
                values=tf.constant(values, dtype=spec.dtype),
                dense_shape=[1, 1],
            )
    out = layer(batch)
    vocab_size = output.vocabulary_size_by_name("payment_type")
    assert int(out["payment_type_xf"][0]) >= vocab_size
