"""Scheduler units with a fake servable: merging, splitting, limits, padding."""

import threading

import numpy as np
import pytest

from serving.batching import (
    BatchingParameters,
    BatchSlice,
    Scheduler,
    parse_batching_parameters,
)
from serving.errors import Code, ServingError


class FakeSignature:
    key = "serving_default"


class FakeServable:
    """Doubles `x`; records the batch sizes it was called with."""

    def __init__(self, gate=None):
        self.calls = []
        self.gate = gate
        self.inflight = 0
        self.running = threading.Event()  # set once a batch is inside run()

    def enter(self):
        self.inflight += 1

    def exit(self):
        self.inflight -= 1

    def run(self, signature, feeds):
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(60)
        self.calls.append(feeds["x"].shape[0])
        return {"y": feeds["x"] * 2}


def submit_all(scheduler, servable, arrays, release=None):
    """Submits every array, then calls ``release`` (if any), then waits for all answers."""
    results = [None] * len(arrays)
    remaining = [len(arrays)]
    lock, done = threading.Lock(), threading.Event()

    def callback(i):
        def finish(outputs, error):
            results[i] = (outputs, error)
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        return finish

    for i, array in enumerate(arrays):
        scheduler.submit(servable, FakeSignature(), {"x": array}, callback(i))
    if release is not None:
        release()
    assert done.wait(60)
    return results


def test_parse_batching_parameters():
    params = parse_batching_parameters(
        "max_batch_size { value: 8 } batch_timeout_micros { value: 100 } "
        "num_batch_threads { value: 3 } allowed_batch_sizes: 4 allowed_batch_sizes: 8"
    )
    assert (
        params.max_batch_size,
        params.batch_timeout_micros,
        params.num_batch_threads,
        params.allowed_batch_sizes,
    ) == (8, 100, 3, (4, 8))
    with pytest.raises(ValueError, match="Last entry in allowed_batch_sizes must match"):
        parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 4")


def test_requests_are_merged_and_split_back():
    servable = GatedServable()
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    arrays = [np.full((2, 1), i, np.float32) for i in range(6)]
    results = _queue_behind_blocker(scheduler, servable, arrays)
    for i, (outputs, error) in enumerate(results):
        assert error is None
        assert outputs["y"].tolist() == [[2.0 * i]] * 2
        # where the task's rows sit in its batch
        assert isinstance(outputs, BatchSlice) and outputs.end - outputs.start == 2
        assert outputs.batch_outputs["y"][outputs.start : outputs.end].tolist() == (
            outputs["y"].tolist()
        )
    assert servable.calls == [1, 12]  # the blocker, then the six queued requests in one batch
    assert servable.inflight == 0
    scheduler.stop()


class RefusesNegatives(FakeServable):
    """Like the taxi model's input checks: a bad row fails the call, naming the row."""

    def run(self, signature, feeds):
        bad = np.flatnonzero(feeds["x"][:, 0] < 0)
        if bad.size:
            self.calls.append(feeds["x"].shape[0])
            raise ServingError(Code.INVALID_ARGUMENT, f"input x, row {bad[0]}: negative")
        return super().run(signature, feeds)


def test_a_bad_request_fails_alone_and_names_its_own_row():
    gate = threading.Event()
    servable = RefusesNegatives(gate)
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    arrays = [np.full((2, 1), 1, np.float32), np.array([[1.0], [-1.0]], np.float32)]
    arrays.append(np.full((3, 1), 3, np.float32))
    first = np.zeros((1, 1), np.float32)
    blocker = threading.Thread(target=scheduler.run, args=(servable, FakeSignature(), {"x": first}))
    blocker.start()  # occupies the only worker until the gate opens
    assert servable.running.wait(60)
    results = submit_all(scheduler, servable, arrays, release=gate.set)
    (good, _), (_, error), (other, _) = results
    blocker.join()
    # The three were merged (7 rows refused), then each ran alone.
    assert servable.calls == [1, 7, 2, 2, 3]
    assert good["y"].tolist() == [[2.0]] * 2 and other["y"].tolist() == [[6.0]] * 3
    assert error.code == Code.INVALID_ARGUMENT and error.message == "input x, row 1: negative"
    assert servable.inflight == 0
    scheduler.stop()


def test_padding_to_allowed_batch_sizes():
    servable = FakeServable()
    scheduler = Scheduler(
        BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    )
    outputs = scheduler.run(servable, FakeSignature(), {"x": np.ones((3, 1), np.float32)})
    assert servable.calls == [4] and outputs["y"].shape == (3, 1)
    scheduler.stop()


@pytest.mark.parametrize(
    "feeds, message",
    [
        (
            {"x": np.ones((9, 1), np.float32)},
            "Task size 9 is larger than maximum input batch size 8",
        ),
        ({"x": np.float32(1.0)}, "must have at least one dimension"),
        ({"x": np.ones(2), "z": np.ones(3)}, "must have equal 0th-dimension size"),
    ],
)
def test_rejections(feeds, message):
    scheduler = Scheduler(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    with pytest.raises(ServingError, match=message):
        scheduler.submit(FakeServable(), FakeSignature(), feeds, lambda o, e: None)
    scheduler.stop()


def test_queue_full_is_unavailable():
    gate = threading.Event()
    servable = FakeServable(gate)
    scheduler = Scheduler(
        BatchingParameters(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    )
    x = np.ones((2, 1), np.float32)
    with pytest.raises(ServingError) as error:
        for _ in range(4):  # one running (blocked) + one queued fill the queue
            scheduler.submit(servable, FakeSignature(), {"x": x}, lambda o, e: None)
    assert error.value.code == Code.UNAVAILABLE
    gate.set()
    scheduler.stop()


def test_without_batching_each_request_runs_alone():
    servable = FakeServable()
    scheduler = Scheduler(None, num_threads=2)
    results = submit_all(scheduler, servable, [np.ones((n, 1), np.float32) for n in (1, 3, 2)])
    assert all(error is None for _, error in results)
    assert sorted(servable.calls) == [1, 2, 3]
    scheduler.stop()


class GatedServable(FakeServable):
    """Blocks its first call until `release`; fails any call holding a negative x.

    Records the number of x values of each call.
    """

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def run(self, signature, feeds):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60)
        self.calls.append(int(np.size(feeds["x"])))
        if (np.asarray(feeds["x"]) < 0).any():
            raise ServingError(Code.INVALID_ARGUMENT, "negative x")
        return {"y": feeds["x"] * 2}


def _queue_behind_blocker(scheduler, servable, arrays):
    """Submits `arrays` while the only worker is busy, so they meet in one queue."""
    blocker = threading.Thread(
        target=scheduler.run, args=(servable, FakeSignature(), {"x": np.zeros((1, 1))})
    )
    blocker.start()
    assert servable.entered.wait(60)
    results = [None] * len(arrays)
    done = [threading.Event() for _ in arrays]

    def callback(i):
        def finish(outputs, error):
            results[i] = (outputs, error)
            done[i].set()

        return finish

    for i, array in enumerate(arrays):
        scheduler.submit(servable, FakeSignature(), {"x": array}, callback(i))
    servable.release.set()
    blocker.join(60)
    assert all(event.wait(60) for event in done)
    return results


def test_a_failed_batch_is_rerun_request_by_request():
    servable = GatedServable()
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    arrays = [np.full((1, 1), v, np.float32) for v in (1.0, -1.0, 3.0)]
    results = _queue_behind_blocker(scheduler, servable, arrays)
    assert results[0][0]["y"].tolist() == [[2.0]] and results[0][1] is None
    assert results[1][0] is None and results[1][1].message == "negative x"
    assert results[2][0]["y"].tolist() == [[6.0]] and results[2][1] is None
    assert servable.calls == [1, 3, 1, 1, 1]  # blocker, merged (failed), then one by one
    assert servable.inflight == 0
    scheduler.stop()


@pytest.mark.parametrize(
    "feeds",
    [
        {"x": np.ones((9, 1), np.float32)},  # more rows than max_batch_size
        {"x": np.float32(1.0)},  # scalar
        {"x": np.ones((2, 1)), "z": np.ones(3)},  # unequal 0th dimensions
    ],
)
def test_unbatchable_requests_run_alone_when_asked(feeds):
    servable = GatedServable()
    scheduler = Scheduler(
        BatchingParameters(max_batch_size=8, num_batch_threads=1, run_unbatchable_alone=True)
    )
    normal = [np.full((1, 1), 2.0, np.float32)] * 2
    results = _queue_behind_blocker(scheduler, servable, [feeds["x"], *normal])
    assert [error for _, error in results] == [None] * 3
    assert results[0][0]["y"].tolist() == (feeds["x"] * 2).tolist()
    assert results[1][0]["y"].tolist() == [[4.0]] == results[2][0]["y"].tolist()
    # the odd one ran alone, the two ordinary requests shared one batch
    assert servable.calls == [1, int(np.size(feeds["x"])), 2]
    scheduler.stop()
