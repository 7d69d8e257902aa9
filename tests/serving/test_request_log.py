"""Request logging: sampling, PredictionLog contents and file rotation."""

import glob

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from log_records import read_records
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.request_log import RequestLogger


class FakeServable:
    name = "m"
    version = 7


def _config(prefix: str, rate: float):
    return text_format.Parse(
        f"name: 'm' base_path: '/x' model_platform: 'tensorflow' logging_config {{ "
        f"log_collector_config {{ filename_prefix: '{prefix}' }} "
        f"sampling_config {{ sampling_rate: {rate} }} }}",
        model_server_config_pb2.ModelConfig(),
    )


def test_logs_are_complete_and_rotated(tmp_path):
    prefix = str(tmp_path / "logs" / "m")
    logger = RequestLogger(max_file_bytes=300, max_files=3)
    logger.configure("m", _config(prefix, 1.0))
    assert logger.sampled("m") and not logger.sampled("other")
    for i in range(20):
        logger.log_predict(
            FakeServable(),
            "serving_default",
            {"x": np.array([[float(i)]], np.float32)},
            {"y": np.array([[i * 2.0]], np.float32)},
        )
    logger.close()
    files = glob.glob(prefix + ".*.tfrecord")
    assert 1 < len(files) <= 3  # rotated by size, oldest files removed
    records = read_records(prefix)
    assert 0 < len(records) < 20
    last = records[-1]
    assert last.log_metadata.model_spec.name == "m"
    assert last.log_metadata.model_spec.version.value == 7
    assert last.log_metadata.model_spec.signature_name == "serving_default"
    assert list(last.log_metadata.saved_model_tags) == ["serve"]
    assert last.predict_log.request.inputs["x"].float_val == [19.0]
    assert last.predict_log.response.outputs["y"].float_val == [38.0]


def test_zero_rate_or_no_config_disables(tmp_path):
    logger = RequestLogger()
    logger.configure("m", _config(str(tmp_path / "m"), 0.0))
    assert not logger.sampled("m")
    logger.configure("m", model_server_config_pb2.ModelConfig(name="m"))
    assert not logger.sampled("m")
    logger.close()


def test_request_id_is_logged_as_client_id(tmp_path):
    prefix = str(tmp_path / "m")
    logger = RequestLogger()
    logger.configure("m", _config(prefix, 1.0))
    feeds, outputs = {"x": np.array([[1.0]], np.float32)}, {"y": np.array([[2.0]], np.float32)}
    logger.log_predict(FakeServable(), "serving_default", feeds, outputs, b"req-1")
    logger.log_predict(FakeServable(), "serving_default", feeds, outputs)
    logger.log_predict(FakeServable(), "serving_default", feeds, outputs, b"x" * 257)
    logger.close()
    assert [r.predict_log.request.client_id for r in read_records(prefix)] == [b"req-1", b"", b""]


@pytest.mark.slow
@pytest.mark.ours
def test_server_logs_rest_header_and_grpc_metadata_request_ids(tmp_path, start_server):
    import grpc
    import model_factory
    import requests
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = tmp_path / "models"
    model_factory.save_half_plus_two(str(base / "1"))
    prefix = str(tmp_path / "logs" / "m")
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' logging_config {{ log_collector_config {{ "
        f"filename_prefix: '{prefix}' }} sampling_config {{ sampling_rate: 1.0 }} }} }} }}"
    )
    server = start_server([f"--model_config_file={config}"], ready_model="m")
    response = requests.post(
        f"{server.url}/v1/models/m:predict",
        json={"instances": [1.0]},
        headers={"X-Request-Id": "rest-1"},
        timeout=10,
    )
    assert response.json() == {"predictions": [2.5]}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(request, timeout=10, metadata=[("x-request-id", "grpc-1")])
        request.client_id = b"grpc-2"
        stub.Predict(request, timeout=10)
    assert server.stop() == 0
    ids = sorted(r.predict_log.request.client_id for r in read_records(prefix))
    assert ids == [b"grpc-1", b"grpc-2", b"rest-1"]


def test_records_are_built_off_the_serving_thread_and_flushed_when_idle(tmp_path, monkeypatch):
    import threading
    import time

    from serving import request_log

    builders = []
    real = request_log.encode_predict_log

    def recording(*args):
        builders.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(request_log, "encode_predict_log", recording)
    prefix = str(tmp_path / "m")
    logger = RequestLogger()
    logger.configure("m", _config(prefix, 1.0))
    feeds, outputs = {"x": np.array([[1.0]], np.float32)}, {"y": np.array([[2.0]], np.float32)}
    logger.log_predict(FakeServable(), "serving_default", feeds, outputs, b"r-1")
    deadline = time.monotonic() + 60  # no close(): the idle writer flushes on its own
    while time.monotonic() < deadline and not (glob.glob(prefix + ".*") and read_records(prefix)):
        time.sleep(0.05)
    assert [r.predict_log.request.client_id for r in read_records(prefix)] == [b"r-1"]
    assert set(builders) == {"request-log"}  # never on the caller's (event loop) thread
    logger.close()


def test_a_full_queue_drops_and_counts(tmp_path, monkeypatch):
    import threading

    from serving import request_log
    from serving.metrics import ServingMetrics

    entered, release = threading.Event(), threading.Event()
    real = request_log.encode_predict_log

    def blocking(*args):
        entered.set()
        assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(request_log, "encode_predict_log", blocking)
    metrics = ServingMetrics()
    logger = RequestLogger(metrics=metrics, queue_size=2)
    logger.configure("m", _config(str(tmp_path / "m"), 1.0))
    feeds, outputs = {"x": np.array([[1.0]], np.float32)}, {"y": np.array([[2.0]], np.float32)}
    logger.log_predict(FakeServable(), "serving_default", feeds, outputs)
    assert entered.wait(60)  # the writer holds the first record
    for _ in range(9):
        logger.log_predict(FakeServable(), "serving_default", feeds, outputs)
    assert metrics.request_log_count.get("m", "DROPPED") == 7  # 2 fit in the queue
    release.set()
    logger.close()
    assert metrics.request_log_count.get("m", "OK") == 3
    assert len(read_records(str(tmp_path / "m"))) == 3


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5], [-2.25]], np.float32),
        np.array([3, -(2**63), 2**63 - 1], np.int64),
        np.array([[1, -7]], np.int32),
        np.array([0.1, 1e300], np.float64),
        np.array([True, False]),
        np.array([b"abc", b"", "h\u00e9".encode()], dtype=object),
        np.array([b"a" * 127, b"b" * 128, b"c"], dtype=object),  # a two-byte length
        np.array([b"ab", "c\u00e9"], dtype=object),  # bytes and str
        np.array([b"Flash", b"", b"Cash", b"Flash"] * 3, dtype=object),  # repeated: encoded once
        np.array([[b""] * 4] * 2, dtype=object),  # empty request ids
        np.array([b"a" * 128] * 4 + [b"b"] * 12, dtype=object),  # repeated, a long one
        np.array([b"ab"] * 7 + ["ab"], dtype=object),  # repeated, bytes and str
        np.array([], dtype=object),
        np.array([["x", "yz"]]),  # numpy unicode
        np.array(4.0, np.float32),  # scalar
        np.zeros((0, 3), np.float32),
        np.array([1.5, 2.0], np.float16),
    ],
)
def test_encoded_tensors_parse_to_the_same_arrays(array):
    from tensorflow.core.framework import tensor_pb2

    from serving.log_encoding import encode_tensor
    from serving.tensors import to_tensor_proto

    parsed = tensor_pb2.TensorProto.FromString(encode_tensor(array))
    reference = to_tensor_proto(array)
    assert parsed.dtype == reference.dtype
    assert parsed.tensor_shape == reference.tensor_shape
    decoded, expected = tf.make_ndarray(parsed), tf.make_ndarray(reference)
    assert decoded.dtype == expected.dtype and decoded.tolist() == expected.tolist()


def test_encoded_predict_log_equals_the_protobuf_built_one():
    from tensorflow_serving.apis import logging_pb2, predict_pb2

    from serving.log_encoding import encode_predict_log
    from serving.model_info import model_spec
    from serving.tensors import to_tensor_proto

    spec = model_spec("m", 7, "serving_default")
    metadata = logging_pb2.LogMetadata(model_spec=spec, saved_model_tags=["serve"])
    metadata.sampling_config.sampling_rate = 0.1
    feeds = {"x": np.array([[1.0]], np.float32), "s": np.array([[b"a"]], dtype=object)}
    outputs = {"y": np.array([[0.25, 0.75]], np.float32)}
    encoded = prediction_log_pb2.PredictionLog.FromString(
        encode_predict_log(
            spec.SerializeToString(),
            metadata.SerializeToString(),
            1764000000,
            feeds,
            outputs,
            b"req-9",
        )
    )
    expected = prediction_log_pb2.PredictionLog()
    expected.log_metadata.CopyFrom(metadata)
    expected.log_metadata.timestamp_secs = 1764000000
    request = predict_pb2.PredictRequest(model_spec=spec, client_id=b"req-9")
    for alias, array in feeds.items():
        request.inputs[alias].CopyFrom(to_tensor_proto(array))
    response = predict_pb2.PredictResponse(model_spec=spec)
    response.outputs["y"].CopyFrom(to_tensor_proto(outputs["y"]))
    expected.predict_log.request.CopyFrom(request)
    expected.predict_log.response.CopyFrom(response)
    assert encoded == expected


def test_varints_are_protobufs_at_every_length_boundary():
    from google.protobuf.internal.encoder import _VarintBytes

    from serving.log_encoding import _varint

    edges = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 2**35 + 7, 2**63 - 1, 2**64 - 1]
    for value in edges + list(range(0, 20000, 7)):
        assert _varint(value) == _VarintBytes(value), value
