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
        feats = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
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


TAXI_FLOAT = (
    "trip_miles",
    "fare",
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
)
TAXI_INT = (
    "trip_seconds",
    "trip_start_hour",
    "trip_start_day",
    "trip_start_month",
    "pickup_community_area",
    "dropoff_community_area",
)
TAXI_STRING = ("payment_type", "company")


class _TaxiLike(tf.Module):
    """Raw taxi-style features -> tip probability, plus tf.Example signatures.

    ``miles_scale`` != 1 skews ``serving_default`` against the tf.Example
    signatures (its ``trip_miles`` is scaled, as a kilometre/mile mix-up in
    the serving code would), for parity checks that must catch it.
    """

    def __init__(self, miles_scale: float = 1.0):
        super().__init__()
        self.miles_scale = miles_scale
        n = len(TAXI_FLOAT) + len(TAXI_INT) + 2 * len(TAXI_STRING)
        self.w = tf.Variable(tf.linspace(-0.5, 0.5, n)[:, None] / 10.0)
        self.b = tf.Variable([0.1])

    def _score(self, feats):
        cols = [tf.cast(feats[k], tf.float32) for k in TAXI_FLOAT + TAXI_INT]
        for key in TAXI_STRING:
            bucket = tf.strings.to_hash_bucket_fast(feats[key], 2)
            cols += [tf.cast(tf.equal(bucket, i), tf.float32) for i in range(2)]
        x = tf.stack(cols, axis=1)
        return tf.sigmoid(tf.matmul(x, self.w) + self.b)

    @tf.function(
        input_signature=[
            {
                **{k: tf.TensorSpec([None], tf.float32, name=k) for k in TAXI_FLOAT},
                **{k: tf.TensorSpec([None], tf.int64, name=k) for k in TAXI_INT},
                **{k: tf.TensorSpec([None], tf.string, name=k) for k in TAXI_STRING},
            }
        ]
    )
    def serve(self, feats):
        if self.miles_scale != 1.0:
            feats = {**feats, "trip_miles": feats["trip_miles"] * self.miles_scale}
        return {"probabilities": self._score(feats)}

    def _parse(self, serialized):
        spec = {k: tf.io.FixedLenFeature([], tf.float32, 0.0) for k in TAXI_FLOAT}
        spec.update({k: tf.io.FixedLenFeature([], tf.int64, 0) for k in TAXI_INT})
        # Strings may be absent or present without a value (an empty CSV cell).
        spec.update({k: tf.io.VarLenFeature(tf.string) for k in TAXI_STRING})
        parsed = tf.io.parse_example(serialized, spec)
        for key in TAXI_STRING:
            sparse = parsed[key]
            shape = tf.stack([sparse.dense_shape[0], 1])
            parsed[key] = tf.sparse.to_dense(
                tf.SparseTensor(sparse.indices, sparse.values, shape), default_value=""
            )[:, 0]
        return parsed

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = self._score(self._parse(inputs))
        n = tf.shape(p)[0]
        return {
            "scores": tf.concat([1.0 - p, p], axis=1),
            "classes": tf.tile(tf.constant([["0", "1"]]), [n, 1]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self._score(self._parse(inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return {"probabilities": self._score(self._parse(examples))}


def save_taxi_like(export_dir: str, miles_scale: float = 1.0) -> str:
    """Saves a stand-in for the pipeline's taxi model (same signature layout).

    ``miles_scale`` != 1 makes ``serving_default`` disagree with
    ``serving_examples`` (a training/serving skew).
    """
    module = _TaxiLike(miles_scale)
    serve = module.serve.get_concrete_function()
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": serve,
            "classification": module.classify,
            "regression": module.regress,
            "serving_examples": module.serve_examples,
        },
    )
    return export_dir


def taxi_example(i: int = 0):
    """One raw taxi-style tf.Example."""
    feature = {}
    for k in TAXI_FLOAT:
        feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[1.5 + i]))
    for k in TAXI_INT:
        feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[3 + i]))
    for k in TAXI_STRING:
        feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"Cash"]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


MODELS_CONFIG = """model_config_list {{
  config {{
    name: 'half_plus_two'
    base_path: '{root}/half_plus_two'
    model_platform: 'tensorflow'
    model_version_policy {{ specific {{ versions: 123 versions: 124 }} }}
    version_labels {{ key: 'stable' value: 123 }}
    version_labels {{ key: 'canary' value: 124 }}
  }}
  config {{
    name: 'multi'
    base_path: '{root}/multi'
    model_platform: 'tensorflow'
  }}
}}
"""
MONITORING_CONFIG = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'


def write_models(root: str, root_in_server: str = None) -> str:
    """Writes the contract-test models and configs; returns the model config path.

    Args:
      root: directory to write to.
      root_in_server: the same directory as the server sees it (config base paths).
    """
    if not os.path.exists(os.path.join(root, "half_plus_two", "123")):
        save_half_plus_two(os.path.join(root, "half_plus_two", "123"))
        save_half_plus_two(os.path.join(root, "half_plus_two", "124"), b=3.0)
        save_multi_input(os.path.join(root, "multi", "1"))
    with open(os.path.join(root, "monitoring.config"), "w") as f:
        f.write(MONITORING_CONFIG)
    path = os.path.join(root, "models.config")
    with open(path, "w") as f:
        f.write(MODELS_CONFIG.format(root=root_in_server or root))
    return path


if __name__ == "__main__":
    import sys

    print(write_models(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
