"""Shadow traffic: copies run on the shadow's own thread, per-batch records, failures contained."""

import glob
import logging
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from log_records import read_records
from shadow_fakes import FakeManager, FakeServable
from tensorflow_serving.config import model_server_config_pb2

from serving.metrics import ServingMetrics
from serving.request_log import RequestLogger
from serving.shadow import ShadowMirror, shadow_prefix


def _config(prefix):
    return text_format.Parse(
        f"name: 'm' base_path: '/x' model_platform: 'tensorflow' logging_config {{ "
        f"log_collector_config {{ filename_prefix: '{prefix}' }} "
        "sampling_config { sampling_rate: 0.5 } }",
        model_server_config_pb2.ModelConfig(),
    )


def _column(records, alias):
    return [
        v for r in records for v in tf.make_ndarray(r.predict_log.response.outputs[alias]).ravel()
    ]


def test_copies_run_on_the_shadow_thread_and_are_recorded_per_batch(tmp_path):
    stable, shadow = FakeServable(2, a=1.0), FakeServable(1, a=3.0)
    metrics = ServingMetrics()
    logger = RequestLogger(metrics=metrics)
    logger.configure("m", _config(str(tmp_path / "logs" / "m")))
    mirror = ShadowMirror(
        FakeManager(stable, shadow), 1.0, version=1, request_logger=logger, metrics=metrics
    )
    for x, rid, latency in (
        ([[1.0]], b"a", 100.0),
        ([[2.0], [3.0]], b"b", 200.0),
        ([[4.0]], b"", 300.0),
    ):
        x = np.array(x, np.float32)
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x * 1.0}, latency, rid)
    mirror.close()
    logger.close()
    assert set(shadow.threads) == {"shadow"} and shadow.inflight == 0
    # next to the request logs, in a sub-directory their readers do not scan
    prefix = shadow_prefix(str(tmp_path / "logs" / "m"))
    assert prefix == str(tmp_path / "logs" / "shadow" / "m")
    records = read_records(prefix)
    assert 1 <= len(records) <= 3  # one record per shadow batch
    assert _column(records, "_request_ids") == [b"a", b"b/0", b"b/1", b""]
    assert _column(records, "y") == [3.0, 6.0, 9.0, 12.0]
    assert _column(records, "_stable/y") == [1.0, 2.0, 3.0, 4.0]
    assert _column(records, "_stable_latency_us") == [100.0, 200.0, 200.0, 300.0]
    assert all(v > 0 for v in _column(records, "_shadow_latency_us"))
    assert _column(records, "_shadow_error") == [b""] * len(records)
    first = records[0]
    assert first.log_metadata.model_spec.version.value == 1  # the shadow
    assert first.predict_log.response.model_spec.version.value == 1
    assert first.predict_log.request.model_spec.version.value == 2  # the version that answered
    assert first.log_metadata.sampling_config.sampling_rate == 1.0
    assert list(first.log_metadata.saved_model_tags) == ["serve"]
    assert first.log_metadata.timestamp_secs > 1_600_000_000
    inputs = [
        v for r in records for v in tf.make_ndarray(r.predict_log.request.inputs["x"]).ravel()
    ]
    assert inputs == [1.0, 2.0, 3.0, 4.0]
    ids = first.predict_log.response.outputs["_request_ids"]
    assert ids.dtype == tf.string.as_datatype_enum and list(ids.string_val[:1]) == [b"a"]
    latency = first.predict_log.response.outputs["_stable_latency_us"]
    assert latency.dtype == tf.float64.as_datatype_enum and latency.double_val[0] == 100.0
    assert metrics.shadow_request_count.get("m", "1", "OK") == 3
    diffs = metrics.shadow_abs_diff.get("m", "1")
    assert diffs[-1] == 4 and diffs[-2] == pytest.approx(2 + 4 + 6 + 8)  # count, sum of |3x - x|


def _hung_mirror(tmp_path, queue_size: int, fail: bool = False):
    """(stable, shadow, metrics, mirror, logger, log prefix), the shadow hung on a first copy."""
    stable, shadow = FakeServable(2), FakeServable(1, hang=True, fail=fail)
    metrics = ServingMetrics()
    logger = RequestLogger(metrics=metrics)
    prefix = str(tmp_path / "shadow" / "m")
    mirror = ShadowMirror(
        FakeManager(stable, shadow),
        1.0,
        version=1,
        request_logger=logger,
        log_prefix=prefix,
        metrics=metrics,
        queue_size=queue_size,
    )
    x = np.ones((1, 1), np.float32)
    mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, b"first")
    assert shadow.entered.wait(60)  # the shadow is hung on the first copy
    return stable, shadow, metrics, mirror, logger, prefix


def test_a_hung_then_failing_shadow_never_blocks_and_is_counted(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="serving.shadow")  # whatever the root's level
    stable, shadow, metrics, mirror, logger, prefix = _hung_mirror(tmp_path, 2, fail=True)
    x = np.ones((1, 1), np.float32)
    for i in range(9):  # the serving thread goes on: 2 copies queue, 7 are dropped
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, b"%d" % i)
    assert metrics.shadow_request_count.get("m", "", "DROPPED") == 7
    shadow.release.set()
    mirror.close()
    logger.close()
    assert metrics.shadow_request_count.get("m", "1", "ERROR") == 3
    records = read_records(prefix)
    assert _column(records, "_request_ids") == [b"first", b"0", b"1"]
    assert set(_column(records, "_shadow_error")) == {b"boom"}
    assert all("y" not in r.predict_log.response.outputs for r in records)
    assert _column(records, "_stable/y") == [1.0, 1.0, 1.0]
    # the drops reach the records (each counts those since the previous one) and the log
    assert sum(_column(records, "_shadow_dropped")) == 7
    assert "7 mirrored calls of m dropped" in caplog.text


def _waiting_mirror(monkeypatch, wake_copies: int, queue_size: int):
    """(stable, shadow, metrics, mirror): a worker that, once drained, waits for
    `wake_copies` (capped at half of `queue_size`) or 600 s."""
    from serving import shadow as shadow_module

    monkeypatch.setattr(shadow_module, "WAKE_COPIES", wake_copies)
    monkeypatch.setattr(shadow_module, "PASS_SECONDS", 600.0)
    monkeypatch.setattr(shadow_module, "POLL_SECONDS", 0.01)
    stable, shadow = FakeServable(2), FakeServable(1, a=3.0)
    metrics = ServingMetrics()
    mirror = ShadowMirror(
        FakeManager(stable, shadow), 1.0, version=1, metrics=metrics, queue_size=queue_size
    )
    return stable, shadow, metrics, mirror


def _offer(mirror, stable, request_ids) -> None:
    x = np.ones((1, 1), np.float32)
    for request_id in request_ids:
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, request_id)


def _wait_until_ran(metrics, copies: int) -> None:
    deadline = time.monotonic() + 60
    while (metrics.shadow_request_count.get("m", "1", "OK") or 0) < copies:
        assert time.monotonic() < deadline, "the shadow did not run the copies"
        time.sleep(0.01)


def test_the_worker_runs_in_bursts_of_wake_copies(monkeypatch):
    stable, shadow, metrics, mirror = _waiting_mirror(monkeypatch, 3, queue_size=100)
    _offer(mirror, stable, [b"a", b"b"])
    time.sleep(0.3)  # 30 looks at the queue: 2 copies are not a burst (and 600 s are far)
    assert shadow.batches == []
    _offer(mirror, stable, [b"c"])
    _wait_until_ran(metrics, 3)
    assert shadow.batches == [3]  # the three copies in one run
    _offer(mirror, stable, [b"d"])
    mirror.close()  # ends the wait: the queued copy runs, the worker stops
    assert shadow.batches == [3, 1] and not mirror._thread.is_alive()


def test_the_worker_wakes_at_half_the_queue_size_at_most(monkeypatch):
    # WAKE_COPIES above the queue size would never wake: half of it (2) does
    stable, shadow, metrics, mirror = _waiting_mirror(monkeypatch, 8192, queue_size=4)
    _offer(mirror, stable, [b"a", b"b"])
    _wait_until_ran(metrics, 2)
    assert shadow.batches == [2]
    mirror.close()


def test_sampling_missing_and_same_version_are_counted():
    stable = FakeServable(1)
    metrics = ServingMetrics()
    draws = iter([0.3, 0.7, 0.1])
    mirror = ShadowMirror(
        FakeManager(stable), 0.5, version=1, metrics=metrics, random=lambda: next(draws)
    )
    x = np.ones((1, 1), np.float32)
    for _ in range(3):  # draws 0.3 and 0.1 are below the share
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0)
    mirror.close()
    assert metrics.shadow_request_count.get("m", "1", "SAME_VERSION") == 2
    missing = ShadowMirror(FakeManager(stable), 1.0, version=9, metrics=metrics)
    missing.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0)
    missing.close()
    assert metrics.shadow_request_count.get("m", "", "NO_SHADOW") == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"share": 1.5, "version": 1}, "must be in \\[0, 1\\]"),
        ({"share": 0.5}, "exactly one of"),
        ({"share": 0.5, "version": 1, "label": "canary"}, "exactly one of"),
    ],
)
def test_bad_flags_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShadowMirror(FakeManager(), **kwargs)


@pytest.mark.slow
@pytest.mark.ours
def test_server_answers_from_stable_and_logs_the_shadow(tmp_path, start_shadow_server):

    import grpc
    import model_factory
    import requests
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base = tmp_path / "models"
    model_factory.save_half_plus_two(str(base / "1"))  # shadow: 0.5 x + 2
    model_factory.save_half_plus_two(str(base / "2"), a=1.0, b=0.0)  # stable (latest): x
    logs = tmp_path / "logs" / "m"
    server = start_shadow_server(base, logs)
    for i in range(3):
        answer = requests.post(
            f"{server.url}/v1/models/m:predict",
            json={"instances": [[float(i)]]},
            headers={"X-Request-Id": f"r{i}"},
            timeout=60,
        )
        assert answer.json() == {"predictions": [[float(i)]]}  # from the stable version
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[4.0]], np.float32)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(request, timeout=60, metadata=[("x-request-id", "g4")])
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [[4.0]]
    server.wait_for_metric(
        ':serving:shadow_request_count{model_name="m",version="1",status="OK"} 4'
    )
    assert server.stop() == 0
    records = read_records(str(tmp_path / "logs" / "shadow" / "m"))
    rows = sorted(
        zip(
            _column(records, "_request_ids"),
            _column(records, "y"),
            _column(records, "_stable/y"),
            strict=True,
        )
    )
    assert rows == [(b"g4", 4.0, 4.0), (b"r0", 2.0, 0.0), (b"r1", 2.5, 1.0), (b"r2", 3.0, 2.0)]
    # the ordinary request log still holds only the stable answers
    assert {r.log_metadata.model_spec.version.value for r in read_records(str(logs))} == {2}
    assert not glob.glob(os.path.join(tmp_path, "logs", "*.shadow*"))


def test_copies_with_different_input_shapes_run_in_separate_batches(tmp_path):
    stable, shadow = FakeServable(2), FakeServable(1, a=2.0, hang=True)
    metrics = ServingMetrics()
    logger = RequestLogger(metrics=metrics)
    prefix = str(tmp_path / "shadow" / "m")
    mirror = ShadowMirror(
        FakeManager(stable, shadow),
        1.0,
        version=1,
        request_logger=logger,
        log_prefix=prefix,
        metrics=metrics,
    )
    for rid, x in ((b"a", [[1.0]]), (b"b", [[2.0, 3.0]]), (b"c", [[4.0]]), (b"d", 5.0)):
        x = np.array(x, np.float32)
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, rid)
        if rid == b"a":  # the others queue while the shadow holds "a": one pass takes them all
            assert shadow.entered.wait(60)
    shadow.release.set()
    mirror.close()
    logger.close()
    assert metrics.shadow_request_count.get("m", "1", "OK") == 4
    by_id = {}
    for record in read_records(prefix):
        outputs = record.predict_log.response.outputs
        ids = tf.make_ndarray(outputs["_request_ids"]).ravel().tolist()
        ys = tf.make_ndarray(outputs["y"]).reshape(len(ids), -1).tolist()
        by_id.update(zip(ids, ys, strict=True))
    assert by_id == {b"a": [2.0], b"b": [4.0, 6.0], b"c": [8.0], b"d": [10.0]}


def test_copies_from_one_merged_batch_take_their_rows_from_it(tmp_path):
    from serving.batching import BatchSlice

    stable, shadow = FakeServable(2), FakeServable(1, a=3.0, hang=True)
    logger = RequestLogger()
    prefix = str(tmp_path / "shadow" / "m")
    mirror = ShadowMirror(
        FakeManager(stable, shadow), 1.0, version=1, request_logger=logger, log_prefix=prefix
    )
    batch_x = np.arange(4, dtype=np.float32).reshape(4, 1)
    batch_y = batch_x * 1.0

    def batch_copy(row):
        outputs = BatchSlice({"y": batch_y[row : row + 1]})
        outputs.batch_feeds, outputs.batch_outputs = {"x": batch_x}, {"y": batch_y}
        outputs.start, outputs.end = row, row + 1
        return {"x": batch_x[row : row + 1]}, outputs

    x = np.ones((1, 1), np.float32)
    mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, b"held")
    assert shadow.entered.wait(60)  # what follows is taken in one pass
    for rid, (feeds, outputs) in ((b"c", batch_copy(2)), (b"a", batch_copy(0))):
        mirror.offer(stable, "serving_default", feeds, outputs, 1.0, rid)
        if rid == b"c":  # a request that ran alone, between the two
            z = np.array([[9.0]], np.float32)
            mirror.offer(stable, "serving_default", {"x": z}, {"y": z}, 1.0, b"z")
    shadow.release.set()
    mirror.close()
    logger.close()
    rows = {}
    for record in read_records(prefix):
        outputs = record.predict_log.response.outputs
        ids = tf.make_ndarray(outputs["_request_ids"]).ravel().tolist()
        x_in = tf.make_ndarray(record.predict_log.request.inputs["x"]).ravel().tolist()
        y = tf.make_ndarray(outputs["y"]).ravel().tolist()
        y_stable = tf.make_ndarray(outputs["_stable/y"]).ravel().tolist()
        rows.update(zip(ids, zip(x_in, y, y_stable, strict=True), strict=True))
    assert rows == {
        b"held": (1.0, 3.0, 1.0),
        b"a": (0.0, 0.0, 0.0),
        b"c": (2.0, 6.0, 2.0),
        b"z": (9.0, 27.0, 9.0),
    }


@pytest.mark.parametrize(
    "rows, batch_rows, parts",
    [
        ([0, 1, 2, 3], 4, 1),  # the whole batch in row order: the batch arrays themselves
        ([3, 1, 0, 2], 4, 4),  # the whole batch, offered out of order
        ([1, 2], 4, 1),  # consecutive rows inside it: one view
        ([0, 3], 4, 2),  # rows with a gap
        ([0, 1, 2], 4, 1),  # all requests of a batch padded to 4 rows
    ],
)
def test_gather_takes_each_offered_row_of_a_batch_with_its_copy(rows, batch_rows, parts):
    from serving.batching import BatchSlice
    from serving.shadow import _Copies, _gather, _ids_and_latencies, _take

    batch_x = np.arange(batch_rows, dtype=np.float32).reshape(batch_rows, 1)
    batch_y = batch_x * 10
    batch_feeds, batch_outputs = {"x": batch_x}, {"y": batch_y}  # shared, as the scheduler does

    def copy(row):
        outputs = BatchSlice({"y": batch_y[row : row + 1]})
        outputs.batch_feeds, outputs.batch_outputs = batch_feeds, batch_outputs
        outputs.start, outputs.end = row, row + 1
        return (outputs, float(row), b"r%d" % row)

    queue = _Copies()
    for outputs, latency, request_id in (copy(r) for r in rows):  # as `offer` queues them
        queue.filling.extend(
            ("servable", "serving_default", batch_feeds, batch_outputs, outputs.start)
            + (outputs.end, latency, request_id)
        )
    groups, taken = _take(queue, 2048)
    assert taken == len(rows) and not len(queue) and len(groups) == 1
    (runs,) = groups.values()
    assert len(runs) == parts
    feeds, outputs = _gather(runs)
    ids, latencies = _ids_and_latencies(runs)
    assert ids == [b"r%d" % r for r in rows]  # record order: each id with its own row
    assert feeds["x"].ravel().tolist() == [float(r) for r in rows]
    assert outputs["y"].ravel().tolist() == [10.0 * r for r in rows]
    assert latencies == [float(r) for r in rows]
    if rows == list(range(batch_rows)):
        assert feeds["x"] is batch_x and outputs["y"] is batch_y  # nothing copied


def _mirror_rows(tmp_path, name, copies, hold):
    """{request id: (input, shadow y, stable y, stable latency)} of `copies` mirrored.

    `hold`: the shadow holds a first copy so that all of `copies` are taken in
    one pass (one bulk batch); else each copy is run and recorded alone.
    """
    stable, shadow = FakeServable(2), FakeServable(1, a=3.0, hang=hold)
    logger = RequestLogger()
    prefix = str(tmp_path / name / "m")
    metrics = ServingMetrics()
    mirror = ShadowMirror(
        FakeManager(stable, shadow),
        1.0,
        version=1,
        request_logger=logger,
        log_prefix=prefix,
        metrics=metrics,
    )
    if hold:
        x = np.zeros((1, 1), np.float32)
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, b"held")
        assert shadow.entered.wait(60)
    for done, (feeds, outputs, latency, rid) in enumerate(copies, 1):
        mirror.offer(stable, "serving_default", feeds, outputs, latency, rid)
        if not hold:  # run alone: wait until it ran before offering the next
            deadline = time.monotonic() + 60
            while (metrics.shadow_request_count.get("m", "1", "OK") or 0) < done:
                assert time.monotonic() < deadline
                time.sleep(0.01)
    shadow.release.set()
    mirror.close()
    logger.close()
    rows, records = {}, read_records(prefix)
    for record in records:
        outputs = record.predict_log.response.outputs
        ids = tf.make_ndarray(outputs["_request_ids"]).ravel().tolist()
        n = len(ids)
        columns = [
            tf.make_ndarray(record.predict_log.request.inputs["x"]).reshape(n, -1).tolist(),
            tf.make_ndarray(outputs["y"]).reshape(n, -1).tolist(),
            tf.make_ndarray(outputs["_stable/y"]).reshape(n, -1).tolist(),
            tf.make_ndarray(outputs["_stable_latency_us"]).ravel().tolist(),
        ]
        rows.update(zip(ids, zip(*columns, strict=True), strict=True))
    rows.pop(b"held", None)
    return rows, len(records)


def test_bulk_batches_log_the_same_rows_as_one_by_one(tmp_path, monkeypatch):
    from serving import shadow as shadow_module
    from serving.batching import BatchSlice

    monkeypatch.setattr(shadow_module, "PASS_SECONDS", 0.01)  # one by one: a short pause

    def batch(first, n, padded):  # a merged batch of one-row requests, as the scheduler has it
        x = np.arange(first, first + padded, dtype=np.float32).reshape(padded, 1)
        y = x * 10
        out = []
        for row in range(n):
            outputs = BatchSlice({"y": y[row : row + 1]})
            outputs.batch_feeds, outputs.batch_outputs = {"x": x}, {"y": y}
            outputs.start, outputs.end = row, row + 1
            out.append(
                ({"x": x[row : row + 1]}, outputs, 10.0 * (first + row), b"b%d" % (first + row))
            )
        return out

    one, two = batch(0, 4, 4), batch(10, 3, 4)  # the second padded to 4 rows
    alone = np.array([[20.0], [21.0]], np.float32)  # a two-row request that ran alone
    copies = [one[0], one[1], two[2], one[2], one[3], two[0], two[1]]
    copies.insert(3, ({"x": alone}, {"y": alone * 10}, 7.0, b"pair"))
    bulk, bulk_records = _mirror_rows(tmp_path, "bulk", copies, hold=True)
    single, single_records = _mirror_rows(tmp_path, "single", copies, hold=False)
    assert bulk_records == 2 and single_records == len(copies)  # "held" + one bulk batch
    assert bulk == single
    assert bulk[b"b11"] == ([11.0], [33.0], [110.0], 110.0)
    assert bulk[b"pair/1"] == ([21.0], [63.0], [210.0], 7.0)
    assert len(bulk) == 9


def test_ids_over_256_bytes_are_not_logged_and_row_ids_keep_their_index():
    from serving.shadow import _Copies, _ids_and_latencies, _take

    def copy(rows, request_id, latency):  # a request that ran alone, as `offer` queues it
        x = np.zeros((rows, 1), np.float32)
        return ("servable", "serving_default", {"x": x}, {"y": x}, None, None, latency, request_id)

    near = b"n" * 255  # its row ids "<id>/<i>" are longer than 256 bytes, and kept
    queue = _Copies()
    for args in ((1, b"a" * 257, 1.0), (1, b"b" * 256, 2.0), (2, near, 3.0), (2, b"c" * 300, 4.0)):
        queue.filling.extend(copy(*args))
    groups, _ = _take(queue, 2048)
    (runs,) = groups.values()
    assert len(runs) == 4
    ids, latencies = _ids_and_latencies(runs)
    assert ids == [b"", b"b" * 256, near + b"/0", near + b"/1", b"", b""]
    assert latencies == [1.0, 2.0, 3.0, 3.0, 4.0, 4.0]


def _copy_sequences():
    """Queued copies (as `offer` puts them) in the orders the scheduler can produce."""
    import random

    rng = random.Random(7)
    batches = [({"x": np.zeros((8, 1))}, {"y": np.zeros((8, 1))}) for _ in range(3)]
    servables = ("s1", "s2")

    def one_row(batch, row, servable="s1", key="serving_default"):
        feeds, outputs = batches[batch]
        return (servable, key, feeds, outputs, row, row + 1, float(row), b"%d-%d" % (batch, row))

    def rows(batch, start, end):
        feeds, outputs = batches[batch]
        return ("s1", "serving_default", feeds, outputs, start, end, 9.0, b"multi")

    def alone(n):
        x = np.zeros((n, 1))
        return ("s1", "serving_default", {"x": x}, {"y": x}, None, None, 5.0, b"alone")

    in_order = [one_row(b, r) for b in range(3) for r in range(8)]
    sequences = [
        in_order,
        [one_row(0, r) for r in (0, 1, 3, 2, 4, 5, 7)],  # a gap and a swap
        [one_row(0, 0), one_row(0, 1, "s2"), one_row(0, 2, "s2"), one_row(0, 3, key="k")],
        [one_row(0, 0), one_row(0, 1), one_row(0, 2, key="k"), one_row(0, 3, key="k")],
        [one_row(1, 0), one_row(1, 1, "s2"), one_row(1, 2), one_row(1, 3)],
        [one_row(0, 0), one_row(1, 1), one_row(0, 1), one_row(0, 2)],  # other batch between
        [rows(0, 0, 3), *[one_row(0, r) for r in range(3, 8)], alone(2), one_row(1, 0)],
        [alone(1), one_row(2, 0), one_row(2, 1), alone(3), one_row(2, 2), one_row(2, 3)],
    ]
    for _ in range(4):
        sequences.append(
            [
                one_row(rng.randrange(3), rng.randrange(8), rng.choice(servables))
                if rng.random() < 0.8
                else rng.choice([alone(2), rows(1, 2, 4)])
                for _ in range(40)
            ]
        )
        sequences.append(sorted(in_order, key=lambda c: (c[4] // 3, rng.random())))
    return sequences


class _FeedingList(list):
    """A list that gets more copies (on its right, as from the serving thread)
    when its `after`-th slice is deleted: between `_Copies.take`'s slice and
    its `del`, the moment that could lose them (the list is `filling` first,
    then swapped to `taking`)."""

    def __init__(self, items, later, after):
        super().__init__(items)
        self._later, self._after, self._deletes = later, after, 0

    def __delitem__(self, index):
        self._deletes += 1
        if self._deletes == self._after:
            self.extend(item for c in self._later for item in c)
        super().__delitem__(index)


def _feeding_queue(copies, later, after):
    from serving.shadow import _Copies

    queue = _Copies()
    queue.filling = _FeedingList([item for c in copies for item in c], later, after)
    return queue


def _take_all(monkeypatch, one_row_path, copies, max_rows, split=None):
    """The runs of successive `_take`s until the queue is empty, as plain tuples."""
    from serving import shadow as shadow_module

    monkeypatch.setattr(shadow_module, "_ONE_ROW_PATH", one_row_path)
    if split is None:
        queue = _feeding_queue(copies, [], -1)
    else:  # the copies after `split` arrive while the first ones are taken
        queue = _feeding_queue(copies[:split], copies[split:], 1)
    takes = []
    while len(queue):
        groups, rows = shadow_module._take(queue, max_rows)
        takes.append(
            (
                rows,
                [
                    (
                        key[1:],
                        [
                            (r.servable, id(r.feeds), r.start, r.end, r.ids, r.latencies, r.rows)
                            for r in runs
                        ],
                    )
                    for key, runs in groups.items()
                ],
            )
        )
    # every copy taken once, none lost to a `del` that met copies arriving
    taken_ids = [i for _, groups in takes for _, runs in groups for run in runs for i in run[4]]
    assert sorted(taken_ids) == sorted(copy[7] for copy in copies)
    return takes


@pytest.mark.parametrize("max_rows", [1, 3, 5, 16, 2048])
def test_one_row_chunks_make_the_same_runs_as_the_general_loop(monkeypatch, max_rows):
    taken_by_path = {True: [], False: []}
    for copies in _copy_sequences():
        for split in (None, 2, len(copies) // 2):
            for path in (True, False):
                taken_by_path[path].append(_take_all(monkeypatch, path, copies, max_rows, split))
    assert taken_by_path[True] == taken_by_path[False]
    # the in-order batches, taken whole: one run per batch (a pinned known answer)
    ((rows, groups),) = _take_all(monkeypatch, True, _copy_sequences()[0], 2048)
    assert rows == 24 and [len(runs) for _, runs in groups] == [3]
    assert [run[2:4] for run in groups[0][1]] == [(0, 8)] * 3


def test_copies_past_max_rows_go_back_to_the_front_in_order():
    from serving.shadow import _Copies, _take

    feeds, outputs = {"x": np.zeros((8, 1))}, {"y": np.zeros((8, 1))}
    x = np.zeros((2, 1))
    copies = [
        ("s", "k", feeds, outputs, 0, 3, 1.0, b"rows-0-3"),  # 3 rows: past max_rows=2
        ("s", "k", feeds, outputs, 3, 4, 2.0, b"row-3"),
        ("s", "k", feeds, outputs, 4, 5, 3.0, b"row-4"),
        ("s", "k", {"x": x}, {"y": x}, None, None, 4.0, b"alone-2"),
        ("s", "k", feeds, outputs, 5, 6, 5.0, b"row-5"),
    ]
    queue = _Copies()
    for copy in copies:
        queue.filling.extend(copy)
    taken = []
    while len(queue):
        groups, rows = _take(queue, 2)
        taken.append((rows, [run.ids for runs in groups.values() for run in runs]))
    assert taken == [
        (3, [[b"rows-0-3"]]),
        (2, [[b"row-3", b"row-4"]]),
        (2, [[b"alone-2"]]),
        (1, [[b"row-5"]]),
    ]


def test_copies_the_worker_holds_count_towards_the_queue_size(tmp_path):
    stable, shadow, metrics, mirror, logger, prefix = _hung_mirror(tmp_path, 3)
    x = np.ones((1, 1), np.float32)
    for request_id in (b"held-0", b"held-1"):  # copies of a pass past MAX_BATCH_ROWS
        mirror._copies.taking.extend(
            (stable, "serving_default", {"x": x}, {"y": x}, None, None, 1.0, request_id)
        )
    for i in range(5):  # 1 more fits (3 - 2 held), 4 are dropped
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 1.0, b"%d" % i)
    assert metrics.shadow_request_count.get("m", "", "DROPPED") == 4
    shadow.release.set()
    mirror.close()
    logger.close()
    assert _column(read_records(prefix), "_request_ids") == [b"first", b"held-0", b"held-1", b"0"]
