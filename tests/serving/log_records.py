"""Reading what the server logged: `PredictionLog` TFRecords under a prefix (tests only)."""

import glob

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2


def read_records(prefix: str) -> list:
    """Every `PredictionLog` in `<prefix>.*.tfrecord`, files in name order."""
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for path in sorted(glob.glob(glob.escape(prefix) + ".*.tfrecord"))
        for record in tf.data.TFRecordDataset(path)
    ]
