"""Reading ExampleGen's record files in batches, as Arrow record batches of tf.Examples.

Beam's Python TFRecord reader (what TFXIO's Beam source uses) hands records
to Python one at a time, checks each record's CRC in Python and moves every
record through the runner as its own element; at 100x the sample that was
about half of StatisticsGen's CPU and a fifth of Transform's. Here TF's C++
reader (gzip and CRC checks in C++) reads ``READ_BATCH`` records per step
and tfx_bsl's ``tf.Example`` decoder (the one TFXIO's Beam source uses)
turns each batch into one Arrow record batch. StatisticsGen and Transform
read their inputs this way (components/statistics_gen/executor.py,
components/span_order.py through core/compat.py).

The records come out in file order, then record order, whatever the runner:
Transform's analyzers fold batches in order, so the same files always give
the same analysis.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import tensorflow as tf
from tfx.types import artifact_utils
from tfx_bsl.coders import example_coder

READ_BATCH = 4096  # records per tf.data batch, and per Arrow record batch


def split_files(examples, split: str) -> list[str]:
    """The record files of ``split`` of one Examples artifact, in name order."""
    uri = artifact_utils.get_split_uri([examples], split)
    return sorted(glob.glob(os.path.join(uri, "*")))


def record_batches(
    path: str, batch_size: int | None = None, schema: bytes | None = None
) -> Iterator[pa.RecordBatch]:
    """Yields the tf.Examples of one (gzipped if ``.gz``) TFRecord file as Arrow record batches.

    Args:
      path: the record file.
      batch_size: records per batch, default ``READ_BATCH``; the last batch may be shorter.
      schema: a serialized TFMD ``Schema`` to decode with (its features only, typed as
        the schema says), as TFXIO does when given one; None decodes every feature
        with the types found in the data.
    """
    batch_size = batch_size or READ_BATCH
    decoder = (
        example_coder.ExamplesToRecordBatchDecoder(schema)
        if schema is not None
        else example_coder.ExamplesToRecordBatchDecoder()
    )
    compression = "GZIP" if path.endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(path, compression_type=compression)
    for batch in dataset.batch(batch_size).as_numpy_iterator():
        yield decoder.DecodeBatch(list(batch))


def matching_files(patterns: Sequence[str]) -> list[str]:
    """The files matching each of ``patterns`` (any TF filesystem), each pattern's in name order.

    Raises:
      FileNotFoundError: a pattern matches no file (reading it would silently read nothing).
    """
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no record files match {pattern}")
        files.extend(matched)
    return files


def matched_record_batches(
    patterns: Sequence[str], batch_size: int | None = None, schema: bytes | None = None
) -> Iterator[pa.RecordBatch]:
    """``record_batches`` of every file of ``matching_files(patterns)`` in turn.

    Batches do not span files. This is the reader of the Transform's TFXIO
    (``core.compat.batched_tf_example_tfxio``): one call per dataset.
    """
    for path in matching_files(patterns):
        yield from record_batches(path, batch_size, schema)
