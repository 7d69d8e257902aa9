"""Builds the tiny SavedModels the serving tests run against.

`half_plus_two` mirrors upstream's test model (y = 0.5 * x + 2) with predict,
classify and regress signatures; `multi_input` has named string/int/float
inputs like the taxi model's raw-feature signature.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)


class _HalfPlusTwo(tf.Module):
    """y = a * x + b with predict/classify/regress signatures."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a = tf.Variable(a, dtype=tf.float32)
        self.b = tf.Variable(b, dtype=tf.float32)

    def _parse_x(self, serialized):
        feats = tf.io.parse_example(
            serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)}
        )
        return feats["x"]

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        return {"scores": self.a * self._parse_x(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self.a * self._parse_x(inputs) + self.b}


def save_half_plus_two(export_dir: str, a: float = 0.5, b: float = 2.0) -> str:
    """Saves the y = a*x + b model to `export_dir` and returns it."""
    module = _HalfPlusTwo(a, b)
    signatures = {
        "serving_default": module.predict,
        "classify_x_to_y": module.classify,
        "regress_x_to_y": module.regress,
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


class _MultiInput(tf.Module):
    """Raw named features in, several outputs (incl. a `_bytes` one) out."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="name"),
            tf.TensorSpec([None], tf.int64, name="age"),
            tf.TensorSpec([None], tf.float32, name="score"),
        ]
    )
    def serve(self, name, age, score):
        prob = tf.sigmoid(score + tf.cast(age, tf.float32) / 100.0)
        return {
            "greeting": tf.strings.join([name, "!"]),
            "age_plus": age + 1,
            "probabilities": tf.reshape(prob, [-1, 1]),
            "raw_bytes": name,
        }


def save_multi_input(export_dir: str) -> str:
    """Saves the multi-input model to `export_dir` and returns it."""
    module = _MultiInput()
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    return export_dir


def write_warmup(version_dir: str, model_name: str, xs=(1.0, 2.0)) -> str:
    """Writes a half_plus_two warmup file into `version_dir/assets.extra`."""
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, "tf_serving_warmup_requests")
    with tf.io.TFRecordWriter(path) as writer:
        for x in xs:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([[x]], dtype=tf.float32))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
