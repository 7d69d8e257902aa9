"""Reads the server's sampled `PredictionLog` TFRecords into raw feature rows.

The server (`serving/request_log.py`) writes `<filename_prefix>.<unix_ms>.<seq>.tfrecord`
files; every record carries `log_metadata.timestamp_secs` and the model spec
with the resolved version. `read_window` keeps the records whose timestamp is
in `[start, end)` and turns each logged instance into one row
`{feature: value}` (predict inputs, or classify/regress `tf.Example`s).

Nothing is skipped silently: unreadable files, corrupt records and records
that are not predict/classify/regress logs are counted and described in
`LogWindow.problems`. A damaged stretch of a file (bad length or data CRC)
costs only the records it touches: `iter_records` resynchronises on the next
offset where a whole record (length, length CRC, data, data CRC) checks out.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import mmap
import os
import struct

import google_crc32c
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2


@dataclasses.dataclass
class LogWindow:
    """What `read_window` found for one time window."""

    start: float
    end: float
    files: list[str]
    rows: list[dict] = dataclasses.field(default_factory=list)
    records: int = 0  # well-formed records inside the window
    outside: int = 0  # well-formed records outside the window
    malformed: int = 0  # undecodable records plus records lost in damaged stretches
    skipped_bytes: int = 0  # bytes of damaged stretches that were skipped
    problems: list[str] = dataclasses.field(default_factory=list)
    versions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    predictions: list[dict] = dataclasses.field(default_factory=list)

    @property
    def served_version(self) -> int | None:
        """The newest model version seen in the window."""
        return max(self.versions) if self.versions else None


def log_files(prefix: str) -> list[str]:
    """Request log files of `prefix` (a `filename_prefix`, or a directory), oldest first."""
    if os.path.isdir(prefix):
        pattern = os.path.join(glob.escape(prefix), "*.tfrecord")
    else:
        pattern = glob.escape(prefix) + ".*.tfrecord"
    return sorted(glob.glob(pattern), key=_file_order)


def _file_order(path: str):
    parts = os.path.basename(path).split(".")
    try:
        return (int(parts[-3]), int(parts[-2]), path)
    except (IndexError, ValueError):
        return (0, 0, path)


_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def _masked_crc(data) -> int:
    """TFRecord's masked CRC32C."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass
class Damage:
    """A stretch of a TFRecord file that was skipped.

    Attributes:
      offset: where the stretch starts.
      length: its bytes.
      records: records lost in it (record headers whose length CRC checks out,
        at least 1).
    """

    offset: int
    length: int
    records: int


def _header_ok(data, pos: int) -> bool:
    """The length field at `pos` matches its masked CRC."""
    return _masked_crc(data[pos : pos + 8]) == _HEADER.unpack_from(data, pos)[1]


def _record_at(data, pos: int, size: int):
    """The payload of a whole valid record at `pos`, else None."""
    if pos + _HEADER.size > size:
        return None
    if not _header_ok(data, pos):
        return None
    length = _HEADER.unpack_from(data, pos)[0]
    end = pos + _HEADER.size + length
    if end + _FOOTER.size > size:
        return None
    payload = data[pos + _HEADER.size : end]
    if _masked_crc(payload) != _FOOTER.unpack_from(data, end)[0]:
        return None
    return payload


_SCAN_CHUNK = 1 << 20


def _resync(data, pos: int, size: int) -> tuple[int, int]:
    """The next offset >= `pos` holding a whole valid record (else `size`).

    Also returns how many record headers (length + its CRC) were passed on
    the way. Only offsets whose length field is below 2**40 (bytes 5-7 zero,
    found with numpy) get their CRCs checked, so random bytes scan fast.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    headers = 0
    last = size - _HEADER.size - _FOOTER.size  # the last offset an empty record fits at
    while pos <= last:
        stop = min(last, pos + _SCAN_CHUNK - 1)
        high = buf[pos + 5 : stop + 8]
        candidates = np.flatnonzero((high[:-2] == 0) & (high[1:-1] == 0) & (high[2:] == 0))
        for offset in (pos + int(i) for i in candidates):
            if not _header_ok(data, offset):
                continue
            if _record_at(data, offset, size) is not None:
                return offset, headers
            headers += 1
        pos = stop + 1
    return size, headers


def iter_records(path: str):
    """Yields a TFRecord file's records (bytes) and `Damage` for skipped stretches.

    A record whose length or data CRC is wrong is not the end of the file:
    the reader scans forward to the next offset holding a whole valid record
    and reports the bytes in between as one `Damage`.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            pos = 0
            while pos < size:
                payload = _record_at(data, pos, size)
                if payload is not None:
                    yield payload
                    pos += _HEADER.size + len(payload) + _FOOTER.size
                    continue
                start = pos
                pos, headers = _resync(data, pos + 1, size)
                own = pos - start >= _HEADER.size and _header_ok(data, start)
                yield Damage(start, pos - start, max(1, headers + own))


def _scalar(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _predict_rows(log: prediction_log_pb2.PredictLog) -> list[dict]:
    columns = {}
    for alias, tensor in log.request.inputs.items():
        array = tf.make_ndarray(tensor)
        columns[alias] = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
    if not columns:
        raise ValueError("predict log without inputs")
    sizes = {len(c) for c in columns.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs with different batch sizes {sorted(sizes)}")
    rows = []
    for i in range(sizes.pop()):
        rows.append(
            {alias: _scalar(c[i][0]) if c.shape[1] else None for alias, c in columns.items()}
        )
    return rows


def _example_rows(request_input) -> list[dict]:
    which = request_input.WhichOneof("kind")
    if which == "example_list":
        examples, context = request_input.example_list.examples, None
    elif which == "example_list_with_context":
        examples = request_input.example_list_with_context.examples
        context = request_input.example_list_with_context.context
    else:
        raise ValueError("classify/regress log without examples")
    rows = []
    for example in examples:
        merged = tf.train.Example()
        if context is not None:
            merged.MergeFrom(context)
        merged.MergeFrom(example)
        row = {}
        for name, feature in merged.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            row[name] = _scalar(values[0]) if values else None
        rows.append(row)
    return rows


def _prediction_values(log: prediction_log_pb2.PredictLog) -> list[float]:
    for alias in ("probabilities", "scores", "outputs"):
        if alias in log.response.outputs:
            array = tf.make_ndarray(log.response.outputs[alias])
            return [float(v) for v in array.reshape(array.shape[0], -1)[:, -1]]
    return []


def row_request_ids(request_id: str, rows: int) -> list[str]:
    """Ids of a request's rows: the id itself for one row, `<id>/<i>` for a batch."""
    if not request_id:
        return [""] * rows
    return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]


def parse_record(record: bytes) -> tuple[float, int, list[dict], list[float], str]:
    """One serialized PredictionLog -> (timestamp, version, rows, predictions, request id).

    The request id is the logged predict request's `client_id` ("" if none).
    Predictions are the positive-class probability (predict: last column of
    `probabilities`/`scores`/`outputs`; classify: the last class's score).

    Raises:
      ValueError: the record is not a usable predict/classify/regress log.
    """
    try:
        entry = prediction_log_pb2.PredictionLog.FromString(record)
    except Exception as e:  # protobuf DecodeError
        raise ValueError(f"not a PredictionLog ({e})") from None
    which = entry.WhichOneof("log_type")
    if which == "predict_log":
        rows = _predict_rows(entry.predict_log)
        predictions = _prediction_values(entry.predict_log)
    elif which == "classify_log":
        rows = _example_rows(entry.classify_log.request.input)
        predictions = [
            item.classes[-1].score if item.classes else float("nan")
            for item in entry.classify_log.response.result.classifications
        ]
    elif which == "regress_log":
        rows = _example_rows(entry.regress_log.request.input)
        predictions = [r.value for r in entry.regress_log.response.result.regressions]
    else:
        raise ValueError(f"unsupported log type {which!r}")
    if not entry.log_metadata.HasField("model_spec") or not entry.log_metadata.timestamp_secs:
        raise ValueError("log_metadata without model_spec or timestamp")
    version = entry.log_metadata.model_spec.version.value
    request_id = ""
    if which == "predict_log":
        request_id = entry.predict_log.request.client_id.decode("utf-8", errors="replace")
    timestamp = float(entry.log_metadata.timestamp_secs)
    return timestamp, int(version), rows, predictions, request_id


def read_window(prefix: str, start: float, end: float) -> LogWindow:
    """Rows of the requests logged in `[start, end)` (unix seconds)."""
    files = log_files(prefix)
    window = LogWindow(start=start, end=end, files=files)
    for path in files:
        index = 0
        try:
            for item in iter_records(path):
                if isinstance(item, Damage):
                    window.malformed += item.records
                    window.skipped_bytes += item.length
                    window.problems.append(
                        f"{path} bytes {item.offset}-{item.offset + item.length}: damaged or truncated, "
                        f"skipped {item.records} record(s)"
                    )
                    continue
                index, record = index + 1, item
                try:
                    timestamp, version, rows, predictions, request_id = parse_record(record)
                except ValueError as e:
                    window.malformed += 1
                    window.problems.append(f"{path} record {index - 1}: {e}")
                    continue
                if not start <= timestamp < end:
                    window.outside += 1
                    continue
                window.records += 1
                window.versions[version] += len(rows)
                window.rows.extend(rows)
                ids = row_request_ids(request_id, len(rows))
                for i in range(len(rows)):
                    window.predictions.append(
                        {
                            "request_id": ids[i],
                            "timestamp": timestamp,
                            "version": version,
                            "prediction": predictions[i] if i < len(predictions) else None,
                        }
                    )
        except OSError as e:
            window.malformed += 1
            window.problems.append(f"{path} after record {index}: unreadable ({e})")
    return window
