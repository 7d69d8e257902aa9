"""Sampled request logging as `PredictionLog` TFRecords (TF Serving's logging_config).

A model's `logging_config { log_collector_config { filename_prefix: "..." }
sampling_config { sampling_rate: 0.1 } }` turns logging on. Sampled requests
are logged with their full request and response (inputs/outputs as typed
TensorProtos, classify/regress examples and results) plus `log_metadata`
(model spec with the resolved version and signature, sampling config,
SavedModel tags, timestamp), so the files can feed drift monitoring.

A predict call's request id (REST header `x-request-id`, gRPC metadata
`x-request-id` or the request's own `client_id`) is logged as the logged
`PredictRequest.client_id`, so late labels can be joined to predictions.
TF Serving's protos have no request-id field; classify/regress logs carry none.

The serving thread only keeps references (the decoded input arrays, the
outputs, the ids and the time); one background thread builds the protos and
writes them, taking whatever queued since its last pass as one batch, and
flushes at most every `FLUSH_SECONDS` (and on close). Records go to
`<filename_prefix>.<unix_ms>.<seq>.tfrecord`; a file is rotated after
`max_file_bytes`, and only the newest `max_files` per prefix are kept. When
the queue is full, records are dropped and counted (`status="DROPPED"`).
"""

import glob
import logging
import os
import queue
import random
import threading
import time

import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    logging_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from serving.log_encoding import encode_predict_log
from serving.model_info import model_spec

log = logging.getLogger(__name__)

MAX_REQUEST_ID_BYTES = 256
REQUEST_ID_HEADER = "x-request-id"
FLUSH_SECONDS = 0.2
_PASS_SECONDS = 0.02  # the writer's pause between passes, so records accumulate
_MAX_PASS = 512  # records built per pass


class _RotatingWriter:
    """TFRecord files with size-based rotation and a retention limit."""

    def __init__(self, prefix: str, max_file_bytes: int, max_files: int):
        self.prefix = prefix
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._writer = None
        self._bytes = 0
        self._seq = 0

    def write(self, record: bytes) -> None:
        if self._writer is None or self._bytes >= self.max_file_bytes:
            self._rotate()
        self._writer.write(record)
        self._bytes += len(record) + 16

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _rotate(self) -> None:
        self.close()
        directory = os.path.dirname(self.prefix)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._seq += 1
        path = f"{self.prefix}.{int(time.time() * 1000)}.{self._seq:06d}.tfrecord"
        self._writer = tf.io.TFRecordWriter(path)
        self._bytes = 0
        files = sorted(glob.glob(glob.escape(self.prefix) + ".*.tfrecord"))
        for old in files[: max(0, len(files) - self.max_files)]:
            try:
                os.remove(old)
            except OSError:
                pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class RequestLogger:
    """Samples and writes request logs for the models that configure them.

    Args:
      max_file_bytes: rotate a file once it reaches this size.
      max_files: files kept per prefix.
      metrics: optional `ServingMetrics`.
      queue_size: records buffered before dropping.
    """

    def __init__(
        self,
        max_file_bytes: int = 64 << 20,
        max_files: int = 10,
        metrics=None,
        queue_size: int = 10000,
    ):
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._metrics = metrics
        self._configs: dict = {}  # model -> (rate, prefix, SamplingConfig, its bytes)
        self._static: dict = {}  # writer thread: serialized model specs and metadata
        self._queue = queue.Queue(maxsize=queue_size)
        self._writers: dict = {}
        self._thread = threading.Thread(target=self._drain, name="request-log", daemon=True)
        self._thread.start()

    def configure(self, model_name: str, model_config) -> None:
        """Applies (or clears) a model's `logging_config`."""
        if not model_config.HasField("logging_config"):
            self._configs.pop(model_name, None)
            return
        config = model_config.logging_config
        prefix = config.log_collector_config.filename_prefix
        rate = config.sampling_config.sampling_rate
        if not prefix or rate <= 0:
            self._configs.pop(model_name, None)
            return
        sampling = config.sampling_config
        self._configs[model_name] = (rate, prefix, sampling, sampling.SerializeToString())

    def prefix(self, model_name: str):
        """The model's configured `filename_prefix`, or None."""
        config = self._configs.get(model_name)
        return config[1] if config is not None else None

    def sampled(self, model_name: str) -> bool:
        """Decides whether to log one request of `model_name`."""
        config = self._configs.get(model_name)
        return config is not None and random.random() < config[0]

    def log_predict(
        self, servable, signature_name: str, feeds: dict, outputs: dict, request_id: bytes = b""
    ) -> None:
        """Logs a predict call (call only when `sampled()` said so).

        `request_id` (at most MAX_REQUEST_ID_BYTES, else not logged) becomes the
        logged request's `client_id`. The arrays must not be modified afterwards.
        """
        config = self._configs.get(servable.name)
        if config is None:
            return
        name, version, now = servable.name, servable.version, int(time.time())
        if len(request_id) > MAX_REQUEST_ID_BYTES:
            request_id = b""

        def build() -> bytes:
            spec, metadata = self._static_parts(name, version, signature_name, config)
            return encode_predict_log(spec, metadata, now, feeds, outputs, request_id)

        self.write(config[1], name, build)

    def _static_parts(self, name, version, signature_name, config) -> tuple:
        """(serialized ModelSpec, LogMetadata without timestamp), cached (writer thread)."""
        key = (name, version, signature_name, config[3])
        parts = self._static.get(key)
        if parts is None:
            spec = model_spec(name, version, signature_name)
            metadata = logging_pb2.LogMetadata(
                model_spec=spec, sampling_config=config[2], saved_model_tags=["serve"]
            )
            if len(self._static) > 1024:
                self._static.clear()
            parts = self._static[key] = (spec.SerializeToString(), metadata.SerializeToString())
        return parts

    def log_classify(self, servable, signature_name: str, request_input, results: list) -> None:
        """Logs a classify call; `results` as from `classification_results`."""
        self._enqueue(servable, signature_name, _classify_entry, (request_input, results))

    def log_regress(self, servable, signature_name: str, request_input, values: list) -> None:
        """Logs a regress call."""
        self._enqueue(servable, signature_name, _regress_entry, (request_input, values))

    def write(self, prefix: str, model_name: str, build) -> bool:
        """Queues `build()` -> one serialized record for `prefix`, called on the writer thread.

        Returns False (and counts `DROPPED` for `model_name`) when the queue is full.
        """
        try:
            self._queue.put_nowait((prefix, model_name, build))
            return True
        except queue.Full:
            self._count(model_name, "DROPPED")
            return False

    def _enqueue(self, servable, signature_name, make_entry, payload) -> None:
        config = self._configs.get(servable.name)
        if config is None:
            return
        name, version, now = servable.name, servable.version, int(time.time())

        def build() -> bytes:
            spec = model_spec(name, version, signature_name)
            entry = make_entry(spec, *payload)
            entry.log_metadata.CopyFrom(
                logging_pb2.LogMetadata(
                    model_spec=spec,
                    sampling_config=config[2],
                    saved_model_tags=["serve"],
                    timestamp_secs=now,
                )
            )
            return entry.SerializeToString()

        self.write(config[1], name, build)

    def _count(self, model: str, status: str) -> None:
        if self._metrics is not None:
            self._metrics.request_log_count.inc((model, status))

    def _drain(self) -> None:
        dirty = set()
        last_flush = time.monotonic()
        running = True
        while running:
            try:
                items = [self._queue.get(timeout=FLUSH_SECONDS if dirty else None)]
            except queue.Empty:
                items = []
            while items and len(items) < _MAX_PASS:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if item is None:
                    running = False
                    continue
                prefix, model, build = item
                try:
                    record = build()
                    writer = self._writers.get(prefix)
                    if writer is None:
                        writer = self._writers[prefix] = _RotatingWriter(
                            prefix, self.max_file_bytes, self.max_files
                        )
                    writer.write(record)
                    dirty.add(writer)
                    self._count(model, "OK")
                    time.sleep(0)  # lets a waiting serving thread take the GIL
                except Exception:
                    log.exception("Request log write failed")
                    self._count(model, "ERROR")
            if dirty and (not items or time.monotonic() - last_flush >= FLUSH_SECONDS):
                for writer in dirty:
                    writer.flush()
                dirty.clear()
                last_flush = time.monotonic()
            if running and items:
                time.sleep(_PASS_SECONDS)

    def close(self) -> None:
        """Writes out what is queued and closes the files."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        for writer in self._writers.values():
            writer.close()


def _classify_entry(spec, request_input, results):
    request = classification_pb2.ClassificationRequest(model_spec=spec, input=request_input)
    response = classification_pb2.ClassificationResponse(model_spec=spec)
    for classes in results:
        item = response.result.classifications.add()
        for label, score in classes:
            item.classes.add(label=label, score=score)
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request, response=response)
    )


def _regress_entry(spec, request_input, values):
    request = regression_pb2.RegressionRequest(model_spec=spec, input=request_input)
    response = regression_pb2.RegressionResponse(model_spec=spec)
    for value in values:
        response.result.regressions.add(value=value)
    return prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=request, response=response)
    )
