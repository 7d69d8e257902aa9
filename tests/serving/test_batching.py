"""Scheduler units with a fake servable: merging, splitting, limits, padding."""

import threading

import numpy as np
import pytest

from serving.batching import BatchingParameters, Scheduler, parse_batching_parameters
from serving.errors import Code, ServingError


class FakeSignature:
    key = "serving_default"


class FakeServable:
    """Doubles `x`; records the batch sizes it was called with."""

    def __init__(self, gate=None):
        self.calls = []
        self.gate = gate
        self.inflight = 0
        self.started = threading.Event()  # set when a batch starts running

    def enter(self):
        self.inflight += 1

    def exit(self):
        self.inflight -= 1

    def run(self, signature, feeds):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(120), "the test never opened the gate"
        self.calls.append(feeds["x"].shape[0])
        return {"y": feeds["x"] * 2}


def submit_all(scheduler, servable, arrays, submitted=lambda: None):
    """Submits every array, calls `submitted()`, then waits for every callback."""
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
    submitted()
    assert done.wait(120)
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
    gate = threading.Event()
    servable = FakeServable(gate)
    scheduler = Scheduler(BatchingParameters(max_batch_size=16, num_batch_threads=1))
    arrays = [np.full((2, 1), i, np.float32) for i in range(6)]
    first = np.zeros((1, 1), np.float32)
    blocker = threading.Thread(target=scheduler.run, args=(servable, FakeSignature(), {"x": first}))
    blocker.start()  # occupies the only worker until the gate opens
    assert servable.started.wait(120)
    # The gate opens once all six are queued behind the blocker (events, not a timer).
    results = submit_all(scheduler, servable, arrays, submitted=gate.set)
    blocker.join()
    for i, (outputs, error) in enumerate(results):
        assert error is None
        assert outputs["y"].tolist() == [[2.0 * i]] * 2
    assert servable.calls[0] == 1 and sum(servable.calls[1:]) == 12
    assert len(servable.calls) < 7  # the six queued requests shared batches
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
