"""``tf.Example`` bytes in protobuf's deterministic serialization, built without parsing.

A serialized ``tf.Example`` is one ``features`` field (tag ``0x0A``, a varint
length, the ``Features`` message), and ``Features`` is a run of map entries
(tag ``0x0A``, a varint length, the entry: key, then value). Protobuf's
deterministic serialization writes the entries sorted by key; tfx_bsl's
encoder writes them in its map's hash order. Two ways to the sorted bytes:

* ``sort_features``: one record, its entries re-ordered in Python;
* ``join_columns``: a block of rows, each column encoded alone by tfx_bsl
  (so each record holds exactly one entry) and the entries spliced, row by
  row and column by column in key order, with numpy: no Python per row
  (encoding 83,300 taxi rows: 1.29 instead of 1.71 CPU s, the same bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_TAG = 0x0A  # field 1, length-delimited: Example.features and Features.feature alike


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the protobuf varint at ``data[pos]``."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def sort_features(example: bytes) -> bytes | None:
    """A serialized ``tf.Example`` with its feature map entries sorted by name.

    That is protobuf's deterministic serialization of the same message (map
    entries in key order; everything inside an entry is already canonical),
    about twice as fast as parsing and re-serializing it. None if ``example``
    is not laid out as one ``features`` field of map entries (key, value).
    """
    if not example or example[0] != _TAG:
        return None
    length, pos = _varint(example, 1)
    end = pos + length
    if end != len(example):
        return None
    entries = []
    while pos < end:
        if example[pos] != _TAG:  # field 1 of Features: one map entry
            return None
        size, start = _varint(example, pos + 1)
        stop = start + size
        if example[start] != _TAG:  # the entry's key comes first
            return None
        key_size, key_start = _varint(example, start + 1)
        entries.append((example[key_start : key_start + key_size], example[pos:stop]))
        pos = stop
    entries.sort()
    body = b"".join(entry for _, entry in entries)
    return b"\n" + _varint_bytes(len(body)) + body


def _binary_parts(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all bytes as uint8, start, length) of ``records``."""
    array = pa.array(records, pa.large_binary())
    offsets = np.frombuffer(array.buffers()[1], np.int64)[: len(array) + 1]
    data = array.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data, offsets[:-1], np.diff(offsets)


def _entry_spans(data: np.ndarray, start: np.ndarray, length: np.ndarray):
    """(start, length) of the ``Features`` body of each one-entry ``tf.Example`` record.

    None if a non-empty record does not begin with the ``features`` tag and a
    varint that covers the rest of it exactly (not tfx_bsl's layout).
    """
    present = length > 0
    if not (data[start[present]] == _TAG).all():
        return None
    header = np.where(present, 2, 0)  # the tag and the varint's first byte
    value = np.zeros(len(start), np.int64)
    more = present.copy()
    for shift in range(0, 63, 7):  # a record's length fits in 9 varint bytes
        if not more.any():
            break
        byte = data[start[more] + header[more] - 1].astype(np.int64)
        value[more] |= (byte & 0x7F) << shift
        cont = byte >= 0x80
        rows = np.flatnonzero(more)
        header[rows[cont]] += 1
        more[rows[~cont]] = False
    if more.any() or not (value[present] == (length - header)[present]).all():
        return None
    return start + header, length - header


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of non-negative ``values``: (uint8 rows of 10 bytes, bytes used)."""
    remaining = values.astype(np.uint64)
    out = np.zeros((len(values), 10), np.uint8)
    used = np.zeros(len(values), np.int64)
    more = np.ones(len(values), bool)
    for k in range(10):
        if not more.any():
            break
        low = (remaining & np.uint64(0x7F)).astype(np.uint8)
        remaining = remaining >> np.uint64(7)
        cont = remaining > 0
        out[more, k] = np.where(cont, low | 0x80, low)[more]
        used[more] += 1
        more &= cont
    return out, used


def _gather(pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``pool[starts[0]:starts[0]+lengths[0]] + pool[starts[1]:...] + ...`` (empty ones skipped)."""
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    # int32 positions halve the memory traffic; a block's pool is far below 2 GiB.
    index = np.int32 if len(pool) < 2**31 else np.int64
    step = np.ones(total, index)
    first = np.cumsum(lengths[:-1])
    step[0] = starts[0]
    # At each segment's first byte, jump from the previous segment's last byte.
    step[first] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return pool[np.cumsum(step, dtype=index)]


def join_columns(columns: Sequence[Sequence[bytes]]) -> list[bytes] | None:
    """Row-wise joins of one-feature ``tf.Example`` records into whole records, deterministically.

    ``columns`` holds, per feature in key order, each row's ``tf.Example``
    with only that feature (as tfx_bsl's encoder writes it); row ``i`` of the
    result is the ``tf.Example`` with all of row ``i``'s features, as
    ``SerializeToString(deterministic=True)`` writes it. None if a record is
    not laid out as ``_entry_spans`` expects.
    """
    rows = len(columns[0])
    pools, starts, lengths = [], [], []
    base = 0
    for records in columns:
        data, start, length = _binary_parts(records)
        spans = _entry_spans(data, start, length)
        if spans is None:
            return None
        pools.append(data)
        starts.append(spans[0] + base)
        lengths.append(spans[1])
        base += len(data)
    body = np.sum(lengths, axis=0)
    varint, used = varints(body)
    header = np.zeros((rows, 11), np.uint8)
    header[:, 0] = _TAG
    header[:, 1:] = varint
    pools.append(header.ravel())
    segment_starts = np.column_stack([base + 11 * np.arange(rows, dtype=np.int64), *starts])
    segment_lengths = np.column_stack([1 + used, *lengths])
    joined = _gather(np.concatenate(pools), segment_starts.ravel(), segment_lengths.ravel())
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(segment_lengths.sum(axis=1), out=offsets[1:])
    result = pa.Array.from_buffers(
        pa.large_binary(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(joined)]
    )
    return result.to_pylist()
