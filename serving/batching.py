"""Server-side dynamic batching with TF Serving's `BatchingParameters`.

Requests for the same servable signature queue up; `num_batch_threads`
workers each take as many queued requests as fit into `max_batch_size` rows
(waiting up to `batch_timeout_micros` for an under-full batch), concatenate
their inputs along dim 0, run the signature once and split the outputs back.
Only requests whose non-batch input shapes agree share a batch. When a
merged batch fails, its requests are re-run one by one, so a bad request
fails alone instead of failing its batch-mates (TF Serving fails the batch).

With batching disabled the same workers run each request on its own, so a
signature call never blocks the REST event loop or a gRPC thread's peers.
REST row requests may arrive as `DeferredRows` (checked, not yet arrays):
the worker converts all of a batch's deferred requests in one go before
the call and runs it on those columns (serving/deferred_rows.py).
Completions for asyncio callers are handed back to their loop with one
`call_soon_threadsafe` per batch.

Over 400 lines: ``Scheduler`` is one queue / worker / merge / split loop with the
per-request re-run of a failed batch, which shares its queues and locks, plus the
parsing of TF Serving's ``BatchingParameters`` it is configured by.
"""

import collections
import dataclasses
import os
import threading
import time

import numpy as np
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from serving.deferred_rows import DeferredRows, build_columns
from serving.errors import Code, ServingError, invalid


@dataclasses.dataclass
class BatchingParameters:
    """TF Serving's batching knobs, with `SharedBatchScheduler` defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False
    # Not in TF Serving (used by the derived defaults, serving/defaults.py):
    # a request that cannot join a batch (more rows than max_batch_size,
    # scalar inputs, unequal 0th dimensions) runs on its own instead of failing.
    run_unbatchable_alone: bool = False


def _batching_message_class():
    """Builds a `BatchingParameters` proto class compatible with upstream's."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="serving_local/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file_proto.message_type.add(name="BatchingParameters")
    wrapped = [
        ("max_batch_size", 1, "Int64Value"),
        ("batch_timeout_micros", 2, "Int64Value"),
        ("max_enqueued_batches", 3, "Int64Value"),
        ("num_batch_threads", 4, "Int64Value"),
        ("thread_pool_name", 5, "StringValue"),
        ("enable_large_batch_splitting", 8, "BoolValue"),
        ("max_execution_batch_size", 9, "Int64Value"),
    ]
    label = descriptor_pb2.FieldDescriptorProto
    for name, number, kind in wrapped:
        message.field.add(
            name=name,
            number=number,
            label=label.LABEL_OPTIONAL,
            type=label.TYPE_MESSAGE,
            type_name=f".google.protobuf.{kind}",
        )
    message.field.add(
        name="allowed_batch_sizes", number=6, label=label.LABEL_REPEATED, type=label.TYPE_INT64
    )
    message.field.add(
        name="pad_variable_length_inputs",
        number=7,
        label=label.LABEL_OPTIONAL,
        type=label.TYPE_BOOL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Parses a text-format `BatchingParameters` file's contents.

    Raises:
      ValueError: on a parse error or an invalid `allowed_batch_sizes`.
    """
    proto = _batching_message_class()()
    text_format.Parse(text, proto)
    params = BatchingParameters()
    for field in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    ):
        if proto.HasField(field):
            setattr(params, field, getattr(proto, field).value)
    params.allowed_batch_sizes = tuple(proto.allowed_batch_sizes)
    params.pad_variable_length_inputs = proto.pad_variable_length_inputs
    sizes = params.allowed_batch_sizes
    if sizes and sizes[-1] != params.max_batch_size:
        raise ValueError(
            "Last entry in allowed_batch_sizes must match max_batch_size; last "
            f"entry was {sizes[-1]}; expected {params.max_batch_size}"
        )
    return params


class BatchSlice(dict):
    """A task's outputs from a merged batch (alias -> rows `start:end` of the batch
    outputs), with the batch's inputs and outputs, so a consumer that regroups the
    same requests (serving/shadow.py) can take their rows without re-concatenating."""

    __slots__ = ("batch_feeds", "batch_outputs", "start", "end")


class _Task:
    __slots__ = ("feeds", "rows", "key", "callback", "loop", "enqueued", "alone")

    def __init__(self, feeds, rows, key, callback, loop, alone=False):
        self.feeds = feeds
        self.rows = rows
        self.key = key
        self.callback = callback
        self.loop = loop
        self.alone = alone
        self.enqueued = time.monotonic()


class _Queue:
    __slots__ = ("servable", "signature", "tasks", "rows")

    def __init__(self, servable, signature):
        self.servable = servable
        self.signature = signature
        self.tasks = collections.deque()
        self.rows = 0


def _task_rows(feeds: dict):
    """Returns (rows, merge key); tasks merge only if their keys are equal."""
    shapes = [(a.shape, a.dtype.char) for a in feeds.values()]
    rows = shapes[0][0][0] if shapes and shapes[0][0] else None
    for shape, _ in shapes:
        if not shape:
            raise invalid("Batching session Run() input tensors must have at least one dimension")
        if shape[0] != rows:
            raise invalid("Batching session Run() input tensors must have equal 0th-dimension size")
    return rows or 0, tuple([(shape[1:], char) for shape, char in shapes])


class Scheduler:
    """Runs signature calls on worker threads, batching them if configured.

    Args:
      params: batching parameters, or None to run each request alone.
      num_threads: worker count when batching is off.
      on_batch: optional `fn(servable, rows, padded_rows)` called per batch.
    """

    def __init__(self, params: BatchingParameters = None, num_threads: int = 4, on_batch=None):
        self.params = params
        self._cond = threading.Condition()
        self._queues: dict = {}
        self._ready: dict = {}
        self._stopping = False
        self._idle = 0  # workers waiting on the condition
        self._on_batch = on_batch
        count = params.num_batch_threads if params else num_threads
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(max(1, count))
        ]
        for thread in self._threads:
            thread.start()

    # -- submission -------------------------------------------------------

    def submit(self, servable, signature, feeds: dict, callback, loop=None) -> None:
        """Queues a signature call.

        `callback(outputs, error)` runs on `loop` (if given) or on the worker.

        Raises:
          ServingError: for batching-level rejections (size, queue full).
        """
        params = self.params
        alone = False
        if params is not None:
            try:
                if type(feeds) is DeferredRows:
                    rows, key = feeds.rows, feeds.key
                else:
                    rows, key = _task_rows(feeds)
                if rows > params.max_batch_size:
                    raise invalid(
                        f"Task size {rows} is larger than maximum input batch size "
                        f"{params.max_batch_size}"
                    )
            except ServingError:
                if not params.run_unbatchable_alone:
                    raise
                # counts as one full batch in the queue; its key matches no other task
                alone, rows, key = True, params.max_batch_size, object()
        else:
            rows, key = 1, None
        task = _Task(feeds, rows, key, callback, loop, alone)
        qkey = (id(servable), signature.key)
        with self._cond:
            if self._stopping:
                raise ServingError(Code.UNAVAILABLE, "Server is shutting down")
            queue = self._queues.get(qkey)
            if queue is None:
                queue = self._queues[qkey] = _Queue(servable, signature)
            if params is not None and (
                queue.rows + rows > params.max_enqueued_batches * params.max_batch_size
            ):
                raise ServingError(
                    Code.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            servable.enter()
            queue.tasks.append(task)
            queue.rows += rows
            self._ready[qkey] = queue
            if self._idle:
                self._cond.notify()

    def run(self, servable, signature, feeds: dict, timeout: float = None) -> dict:
        """Submits and waits; for callers on plain threads (gRPC)."""
        done = threading.Event()
        box = []

        def finish(outputs, error):
            box.append((outputs, error))
            done.set()

        self.submit(servable, signature, feeds, finish)
        if not done.wait(timeout):
            raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        outputs, error = box[0]
        if error is not None:
            raise error
        return outputs

    def forget(self, servable) -> None:
        """Drops the (empty) queues of an unloaded servable."""
        with self._cond:
            for key in [k for k in self._queues if k[0] == id(servable)]:
                if not self._queues[key].tasks:
                    del self._queues[key]

    def stop(self) -> None:
        """Finishes queued work, then stops the workers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    # -- workers ----------------------------------------------------------

    def _next_batch(self):
        params = self.params
        while True:
            if not self._ready:
                if self._stopping:
                    return None, None
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1
                continue
            queue = min(self._ready.values(), key=lambda q: q.tasks[0].enqueued)
            if (
                params is not None
                and params.batch_timeout_micros > 0
                and (queue.rows < params.max_batch_size and not self._stopping)
            ):
                wait = queue.tasks[0].enqueued + params.batch_timeout_micros / 1e6
                wait -= time.monotonic()
                if wait > 0:
                    self._idle += 1
                    try:
                        self._cond.wait(wait)
                    finally:
                        self._idle -= 1
                    continue
            batch = self._take(queue)
            if not queue.tasks:
                self._ready.pop((id(queue.servable), queue.signature.key), None)
            return queue, batch

    def _take(self, queue: _Queue) -> list:
        first = queue.tasks.popleft()
        batch = [first]
        rows = first.rows
        if self.params is not None:
            limit = self.params.max_batch_size
            tasks = queue.tasks
            while tasks and tasks[0].key == first.key and rows + tasks[0].rows <= limit:
                task = tasks.popleft()
                batch.append(task)
                rows += task.rows
        queue.rows -= rows
        return batch

    def _work(self) -> None:
        while True:
            with self._cond:
                queue, batch = self._next_batch()
            if queue is None:
                return
            try:
                self._execute(queue, batch)
            finally:
                for _ in batch:
                    queue.servable.exit()

    def _padded_size(self, rows: int) -> int:
        for size in self.params.allowed_batch_sizes if self.params else ():
            if size >= rows:
                return size
        return rows

    def _execute(self, queue: _Queue, batch: list) -> None:
        servable, signature = queue.servable, queue.signature
        if len(batch) == 1 and (self.params is None or batch[0].alone):
            results, errors = _attempt(
                lambda: [servable.run(signature, _materialize(batch) or batch[0].feeds)], 1
            )
        else:
            results, errors = _attempt(
                lambda: self._run_merged(servable, signature, batch), len(batch)
            )
            if errors[0] is not None and len(batch) > 1:
                # One request's bad input (a value the graph refuses) must not fail
                # its batch-mates, nor name a row of the merged batch: re-run each alone.
                results, errors = [], []
                for task in batch:
                    result, error = _attempt(
                        lambda t=task: self._run_merged(servable, signature, [t]), 1
                    )
                    results += result
                    errors += error
        self._deliver(batch, results, errors)

    def _run_merged(self, servable, signature, batch: list) -> list:
        rows = sum(t.rows for t in batch)
        padded = self._padded_size(rows)
        columns = _materialize(batch)
        if columns is not None and padded == rows:
            feeds = columns
        elif len(batch) == 1 and padded == rows:
            feeds = batch[0].feeds
        else:
            feeds = {}
            for alias in batch[0].feeds if columns is None else columns:
                if columns is not None:
                    parts = [columns[alias]]
                else:
                    parts = [t.feeds[alias] for t in batch]
                if padded > rows:
                    pad = np.repeat(parts[0][:1], padded - rows, axis=0)
                    parts.append(pad)
                feeds[alias] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if self._on_batch is not None:
            self._on_batch(servable, rows, padded)
        outputs = servable.run(signature, feeds)
        if len(batch) == 1:
            for array in outputs.values():
                if array.ndim == 0 or array.shape[0] != padded:
                    raise invalid(_SPLIT_ERROR)
            return [{a: v[:rows] for a, v in outputs.items()} if padded > rows else outputs]
        for array in outputs.values():
            if array.ndim == 0 or array.shape[0] != padded:
                raise invalid(_SPLIT_ERROR)
        results = []
        start = 0
        for task in batch:
            end = start + task.rows
            results.append(BatchSlice({a: v[start:end] for a, v in outputs.items()}))
            results[-1].batch_feeds, results[-1].batch_outputs = feeds, outputs
            results[-1].start, results[-1].end = start, end
            start = end
        return results

    @staticmethod
    def _deliver(batch: list, results: list, errors: list) -> None:
        by_loop: dict = {}
        for task, result, error in zip(batch, results, errors, strict=True):
            if task.loop is None:
                task.callback(result, error)
            else:
                by_loop.setdefault(task.loop, []).append((task.callback, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_run_callbacks, items)
            except RuntimeError:  # loop closed during shutdown
                pass


def _materialize(batch: list):
    """Builds the batch's DeferredRows (one conversion per layout).

    Returns:
      The batch's columns (alias -> ndarray over all its rows) when every task
      was deferred and converted here together; else None, and every task's
      feeds hold its arrays.
    """
    deferred = [t.feeds for t in batch if type(t.feeds) is DeferredRows]
    if not deferred:
        return None
    pending = [part for part in deferred if not part.built]
    by_layout: dict = {}
    for part in pending:
        by_layout.setdefault(id(part.layout), []).append(part)
    if len(by_layout) == 1 and len(pending) == len(batch):
        return build_columns(pending)
    for parts in by_layout.values():
        build_columns(parts)
    for part in deferred:
        part.fill()
    return None


def _attempt(run, count: int) -> tuple:
    """(results, errors) of `run()` for `count` tasks; an error is every task's error."""
    try:
        return run(), [None] * count
    except ServingError as e:
        return [None] * count, [_detached(e)] * count
    except Exception as e:  # never let a worker die
        return [None] * count, [_detached(ServingError(Code.INTERNAL, str(e)))] * count


_SPLIT_ERROR = (
    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
    "dimension sizes of the input tensors"
)


def _detached(error: ServingError) -> ServingError:
    """`error` without traceback or chained exceptions.

    Kept, they reach this worker's frames (the batch and its feeds) through
    a cycle that only a full garbage collection frees, so every failed
    request's tensors would stay in memory until then.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error


def _run_callbacks(items: list) -> None:
    for callback, result, error in items:
        callback(result, error)
