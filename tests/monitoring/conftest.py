"""Fixtures: tiny request logs (PredictionLog TFRecords) written like the server does."""

import importlib.util
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from ml_metadata import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    logging_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)

NUMERIC = {
    "fare": np.float32,
    "trip_miles": np.float32,
    "trip_seconds": np.int64,
    "trip_start_hour": np.int64,
    "trip_start_day": np.int64,
    "trip_start_month": np.int64,
    "pickup_latitude": np.float32,
    "pickup_longitude": np.float32,
    "dropoff_latitude": np.float32,
    "dropoff_longitude": np.float32,
    "pickup_community_area": np.int64,
    "dropoff_community_area": np.int64,
    "dropoff_census_tract": np.int64,
}


def taxi_rows(n: int, seed: int = 0, shift: bool = False) -> list:
    """`n` plausible raw taxi rows; `shift` makes fares 5x and every payment Cash."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        fare = float(rng.gamma(2.0, 5.0))
        rows.append(
            {
                "fare": fare * (5 if shift else 1),
                "trip_miles": fare / 3,
                "trip_seconds": int(rng.integers(60, 2000)),
                "trip_start_hour": int(rng.integers(0, 24)),
                "trip_start_day": int(rng.integers(1, 8)),
                "trip_start_month": int(rng.integers(1, 13)),
                "pickup_latitude": 41.88,
                "pickup_longitude": -87.63,
                "dropoff_latitude": 41.9,
                "dropoff_longitude": -87.62,
                "pickup_community_area": int(rng.integers(1, 78)),
                "dropoff_community_area": int(rng.integers(1, 78)),
                "dropoff_census_tract": 17031081500,
                "payment_type": "Cash" if shift else str(rng.choice(["Cash", "Credit Card"])),
                "company": str(rng.choice(["", "Taxi Affiliation Services", "Flash Cab"])),
            }
        )
    return rows


def predict_log(
    rows: list, timestamp: int, version: int = 1, request_id: str = "", probabilities=None
) -> bytes:
    """One serialized PredictionLog of a batched predict call on `rows`."""
    spec = model_pb2.ModelSpec(name="taxi", signature_name="serving_default")
    spec.version.value = version
    request = predict_pb2.PredictRequest(model_spec=spec, client_id=request_id.encode())
    for name in rows[0]:
        values = [r[name] for r in rows]
        array = np.array(values, dtype=NUMERIC.get(name, object))
        if array.dtype == object:
            array = np.array([v.encode() for v in values], dtype=object)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array.reshape(-1, 1)))
    response = predict_pb2.PredictResponse(model_spec=spec)
    response.outputs["probabilities"].CopyFrom(
        tf.make_tensor_proto(
            np.array(probabilities or [0.25] * len(rows), np.float32).reshape(-1, 1)
        )
    )
    entry = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request, response=response)
    )
    entry.log_metadata.CopyFrom(logging_pb2.LogMetadata(model_spec=spec, timestamp_secs=timestamp))
    return entry.SerializeToString()


@pytest.fixture
def write_log(tmp_path):
    """write_log(records, seq) -> path of `<tmp>/logs/taxi.<ms>.<seq>.tfrecord`."""

    def write(records: list, seq: int = 1) -> str:
        directory = tmp_path / "logs"
        directory.mkdir(exist_ok=True)
        path = str(directory / f"taxi.{1_700_000_000_000 + seq}.{seq:06d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
        return path

    return write


@pytest.fixture
def log_prefix(tmp_path) -> str:
    return str(tmp_path / "logs" / "taxi")


@pytest.fixture
def make_rows():
    """The `taxi_rows` builder (conftest modules are not imported by tests)."""
    return taxi_rows


@pytest.fixture
def make_log():
    """The `predict_log` builder."""
    return predict_log


def _serving_conftest():
    """tests/serving/conftest.py as a module (its ServerProcess is reused here)."""
    name = "serving_test_support"
    if name not in sys.modules:
        path = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "conftest.py"
        )
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(args, ready_model) -> ServerProcess (always stopped)."""
    server_process = _serving_conftest().ServerProcess
    started = []

    def start(args, ready_model=None):
        server = server_process(args, str(tmp_path / f"server{len(started)}.log"))
        started.append(server)
        if ready_model:
            server.wait_ready(ready_model)
        return server

    yield start
    for server in started:
        server.stop()


def make_fake_store(path: str, pushed_versions) -> str:
    """An MLMD file with one PushedModel artifact per blessed (pushed) version."""
    store = metadata_store.MetadataStore(
        metadata_store_pb2.ConnectionConfig(
            sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(
                filename_uri=path,
                connection_mode=metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE,
            )
        )
    )
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    for version in pushed_versions:
        artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=f"/pushed/{version}")
        artifact.custom_properties["pushed"].int_value = 1
        artifact.custom_properties["pushed_version"].string_value = str(version)
        store.put_artifacts([artifact])
    return path


@pytest.fixture
def fake_store():
    """make_fake_store(path, versions) -> path of a tiny MLMD file with pushed versions."""
    return make_fake_store
