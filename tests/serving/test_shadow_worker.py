"""The shadow's candidate in a worker process: same records as in-thread, crashes contained."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from log_records import read_records
from shadow_fakes import FakeManager

from serving import shadow_worker
from serving.metrics import ServingMetrics
from serving.request_log import RequestLogger
from serving.servable import Servable
from serving.shadow import ShadowMirror
from serving.shadow_worker import ShadowWorker

pytestmark = pytest.mark.slow  # starts worker processes


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """(stable v2: y = x, shadow v1: y = 0.5 x + 2) loaded in this process."""
    import model_factory

    base = tmp_path_factory.mktemp("models")
    model_factory.save_half_plus_two(str(base / "1"))
    model_factory.save_half_plus_two(str(base / "2"), a=1.0, b=0.0)
    stable, shadow = Servable("m", 2, str(base / "2")), Servable("m", 1, str(base / "1"))
    yield stable, shadow
    stable.close()
    shadow.close()


def _rows(records):
    """Per logged row: (request id, input, shadow y or None, stable y, stable latency)."""
    rows = []
    for r in records:
        outputs = r.predict_log.response.outputs
        ids = tf.make_ndarray(outputs["_request_ids"]).ravel().tolist()
        x = tf.make_ndarray(r.predict_log.request.inputs["x"]).ravel().tolist()
        y = tf.make_ndarray(outputs["y"]).ravel().tolist() if "y" in outputs else [None] * len(ids)
        stable = tf.make_ndarray(outputs["_stable/y"]).ravel().tolist()
        latency = tf.make_ndarray(outputs["_stable_latency_us"]).ravel().tolist()
        rows += list(zip(ids, x, y, stable, latency, strict=True))
    return sorted(rows)


def _mirror(manager, prefix, metrics, worker=None):
    return ShadowMirror(
        manager,
        1.0,
        version=1,
        request_logger=RequestLogger(metrics=metrics),
        log_prefix=prefix,
        metrics=metrics,
        worker=worker,
    )


def _offer(mirror, stable, xs, tag=b"r"):
    for i, x in enumerate(xs):
        x = np.array([[x]], np.float32)
        mirror.offer(stable, "serving_default", {"x": x}, {"y": x}, 10.0 + i, b"%s%d" % (tag, i))


def _wait(metrics, status, count, version="1"):
    deadline = time.monotonic() + 120
    while (metrics.shadow_request_count.get("m", version, status) or 0) < count:
        assert time.monotonic() < deadline, f"{status} did not reach {count}"
        time.sleep(0.05)


def test_the_worker_writes_what_the_shadow_thread_wrote(tmp_path, versions):
    stable, shadow = versions
    xs = [0.0, 1.0, 2.0, 6.0]
    rows = {}
    for where, worker in (("thread", None), ("process", ShadowWorker)):
        metrics = ServingMetrics()
        prefix = str(tmp_path / where / "m")
        mirror = _mirror(FakeManager(stable, shadow), prefix, metrics, worker)
        _offer(mirror, stable, xs)
        mirror.close()
        mirror._logger.close()
        rows[where] = _rows(read_records(prefix))
        assert metrics.shadow_request_count.get("m", "1", "OK") == 4
        diffs = metrics.shadow_abs_diff.get("m", "1")  # |0.5 x + 2 - x|: 2, 1.5, 1, 1
        assert diffs[-1] == 4 and diffs[-2] == pytest.approx(5.5)
        assert metrics.shadow_latency.get("m", "1")[-1] >= 1  # batches observed
    assert rows["process"] == rows["thread"]
    assert rows["process"] == [
        (b"r0", 0.0, 2.0, 0.0, 10.0),
        (b"r1", 1.0, 2.5, 1.0, 11.0),
        (b"r2", 2.0, 3.0, 2.0, 12.0),
        (b"r3", 6.0, 5.0, 6.0, 13.0),
    ]


def test_a_killed_worker_is_counted_and_replaced(tmp_path, versions, monkeypatch):
    monkeypatch.setattr(shadow_worker, "RESTART_SECONDS", 0.0)
    stable, shadow = versions
    metrics = ServingMetrics()
    workers = []

    def worker(on_result):
        workers.append(ShadowWorker(on_result))
        return workers[0]

    prefix = str(tmp_path / "m")
    mirror = _mirror(FakeManager(stable, shadow), prefix, metrics, worker)
    _offer(mirror, stable, [1.0], b"a")
    _wait(metrics, "OK", 1)
    first = workers[0].pid
    os.kill(first, signal.SIGTERM)  # ignored: the server decides when it ends
    os.kill(first, signal.SIGINT)
    _offer(mirror, stable, [1.5], b"t")
    _wait(metrics, "OK", 2)
    assert workers[0].pid == first
    os.kill(first, signal.SIGKILL)
    _until(lambda: workers[0].pid != first, "the result thread did not notice the death")
    _offer(mirror, stable, [2.0, 3.0], b"b")  # the next batch starts a new worker
    _wait(metrics, "OK", 4)
    assert workers[0].pid not in (None, first)
    mirror.close()
    assert metrics.shadow_request_count.get("m", "1", "ERROR") is None  # nothing was in flight
    assert [row[0] for row in _rows(read_records(prefix))] == [b"a0", b"b0", b"b1", b"t0"]


def _batch(path: str, x: np.ndarray, ids: list, copies: int) -> dict:
    """What `ShadowMirror` submits: rows `x` (stable y = x) for the version at `path`."""
    return {
        "model": "m",
        "stable_version": 2,
        "shadow_version": 1,
        "path": path,
        "signature_key": "serving_default",
        "feeds": {"x": x},
        "stable_outputs": {"y": x},
        "ids": ids,
        "stable_latency": [1.0] * len(ids),
        "share": 1.0,
        "now": 0,
        "dropped": 0,
        "prefix": "",
        "copies": copies,  # mirrored calls (one call may have several rows)
    }


def _until(done, what: str) -> None:
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_rows_in_flight_when_the_worker_dies_are_counted_as_errors(tmp_path, versions):
    _, shadow = versions
    results = []
    worker = ShadowWorker(lambda *result: results.append(result))
    worker.start()
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)  # sent batches stay unanswered
    batch = _batch(shadow.path, np.ones((3, 1), np.float32), [b"x", b"y", b"z"], copies=2)
    worker.submit(batch)
    os.kill(pid, signal.SIGKILL)
    _until(lambda: results, "the lost batch was not counted")
    assert results == [("m", "1", "ERROR", 2, None, None)]
    assert worker.pid is None
    worker.close()


def test_a_candidate_that_does_not_load_is_an_error_record(tmp_path, versions):
    stable, _ = versions
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")

    class Broken:  # what the manager holds; the worker loads `path` itself
        name, version, path = "m", 1, str(broken)

    metrics = ServingMetrics()
    prefix = str(tmp_path / "logs" / "m")
    mirror = _mirror(FakeManager(stable, Broken), prefix, metrics, ShadowWorker)
    _offer(mirror, stable, [1.0, 2.0])
    mirror.close()
    assert metrics.shadow_request_count.get("m", "1", "ERROR") == 2
    records = read_records(prefix)
    errors = {
        tf.make_ndarray(r.predict_log.response.outputs["_shadow_error"]).item() for r in records
    }
    assert len(errors) == 1 and b"did not load" in errors.pop()
    assert [row[2] for row in _rows(records)] == [None, None]  # no shadow outputs
    assert [row[3] for row in _rows(records)] == [1.0, 2.0]  # the stable answers kept


def test_a_worker_that_cannot_start_again_yet_counts_its_batches(versions, monkeypatch):
    stable, shadow = versions
    monkeypatch.setattr(shadow_worker, "RESTART_SECONDS", 3600.0)
    metrics = ServingMetrics()
    mirror = _mirror(FakeManager(stable, shadow), "", metrics, ShadowWorker)
    _offer(mirror, stable, [1.0])
    _wait(metrics, "OK", 1)
    os.kill(mirror._worker.pid, signal.SIGKILL)
    _until(lambda: mirror._worker.pid is None, "the death was not noticed")
    _offer(mirror, stable, [2.0, 3.0])
    _wait(metrics, "ERROR", 2)  # not run, counted; the serving side never waited
    mirror.close()


def test_a_failing_result_callback_does_not_stop_the_answers(versions):
    _, shadow = versions
    results = []

    def on_result(*result):
        results.append(result)
        if len(results) == 1:
            raise RuntimeError("metrics broke")

    worker = ShadowWorker(on_result)
    batch = _batch(shadow.path, np.full((1, 1), 2.0, np.float32), [b"x"], copies=1)
    sending = threading.Thread(  # past MAX_INFLIGHT it blocks if answers stop being read
        daemon=True,
        target=lambda: [worker.submit(batch) for _ in range(3 * shadow_worker.MAX_INFLIGHT)],
    )
    sending.start()
    sending.join(timeout=120)
    assert not sending.is_alive(), "answers stopped being read after the callback raised"
    worker.close()
    assert [r[2:4] for r in results] == [("OK", 1)] * 3 * shadow_worker.MAX_INFLIGHT
    assert results[0][5].tolist() == [1.0]  # |0.5 * 2 + 2 - 2|
