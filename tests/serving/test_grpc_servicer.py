"""PredictionServicer in-process: where requests are decoded, and how calls fail.

A fake model (the signature runs as numpy) keeps these tests free of TF
sessions and sockets.
"""

import asyncio
import concurrent.futures
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from serving import grpc_server, limits
from serving.servable import Signature


class _Servable:
    name, version = "m", 7

    def __init__(self):
        definition = meta_graph_pb2.SignatureDef()
        definition.inputs["x"].name = "x:0"
        definition.inputs["x"].dtype = 1
        definition.outputs["y"].name = "y:0"
        definition.outputs["y"].dtype = 1
        self.signatures = {"serving_default": Signature("serving_default", definition)}


class _Manager:
    def resolve(self, name, version=None, label=None):
        return _Servable()


class _Scheduler:
    def submit(self, servable, signature, feeds, done, loop):
        loop.call_soon(done, {"y": feeds["x"] * 0.5 + 2}, None)


class _Metrics:
    def record_request(self, *args, **kwargs):
        pass


class _Context:
    code = details = None

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details

    def invocation_metadata(self):
        return ()


@pytest.fixture
def call(monkeypatch):
    """call(raw) -> (response bytes, context, names of the threads that decoded tensors)."""
    threads = []
    decode = grpc_server.from_tensor_proto

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return decode(*args, **kwargs)

    monkeypatch.setattr(grpc_server, "from_tensor_proto", recording)
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grpc-codec")
    servicer = grpc_server.PredictionServicer(
        _Manager(), _Scheduler(), _Metrics(), None, limits.RequestLimits(1 << 22, 1 << 26), executor
    )

    def run(raw):
        context = _Context()
        threads.clear()
        payload = asyncio.run(servicer.Predict(raw, context))
        return payload, context, list(threads)

    yield run
    executor.shutdown()


def _request(tensor) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tensor)
    return request.SerializeToString()


def _broadcast(rows: int):
    proto = tf.make_tensor_proto(1.0, dtype=tf.float32)
    proto.tensor_shape.Clear()
    proto.tensor_shape.dim.add(size=rows)
    proto.tensor_shape.dim.add(size=1)
    return proto


def test_small_requests_are_decoded_on_the_event_loop(call):
    payload, context, threads = call(_request(tf.make_tensor_proto([[1.0]], dtype=tf.float32)))
    assert context.code is None and threads == ["MainThread"]
    response = predict_pb2.PredictResponse.FromString(payload)
    assert list(response.outputs["y"].float_val) == [2.5]
    assert response.model_spec.version.value == 7


@pytest.mark.parametrize(
    "tensor",
    [
        tf.make_tensor_proto(np.ones([300_000, 1], np.float32)),  # 1.2 MB message
        _broadcast(300_000),  # 30-byte message declaring 300k elements
    ],
    ids=["big-message", "big-declared-shape"],
)
def test_big_requests_are_decoded_off_the_event_loop(call, tensor):
    payload, context, threads = call(_request(tensor))
    assert context.code is None
    assert len(threads) == 1 and threads[0].startswith("grpc-codec")
    assert len(predict_pb2.PredictResponse.FromString(payload).outputs["y"].float_val) == 300_000


def test_over_the_cap_fails_without_raising(call):
    payload, context, threads = call(_request(_broadcast(5_000_000)))
    assert payload == b"" and context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details.startswith("Tensor x (shape [5000000,1], 5000000 elements)")


def test_undecodable_message_is_internal_with_no_message(call):
    payload, context, threads = call(b"\x0a\xff\xff\xff\xff\x0f")
    assert (payload, context.code, context.details, threads) == (
        b"",
        grpc.StatusCode.INTERNAL,
        "",
        [],
    )


def test_out_of_memory_answers_resource_exhausted(call, monkeypatch):
    def exhausted(*args):
        raise MemoryError()

    monkeypatch.setattr(grpc_server, "_predict_response", exhausted)
    payload, context, _ = call(_request(tf.make_tensor_proto([[1.0]], dtype=tf.float32)))
    assert payload == b"" and context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_request_tensor_elements" in context.details
