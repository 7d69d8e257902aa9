"""Streaming CSV -> ``tf.Example`` executor: CsvExampleGen's records in bounded memory.

TFX's CsvExampleGen executor holds a whole span in memory twice on Beam's
in-memory DirectRunner: its parsed CSV lines feed both the column-type
inference and, through that as a side input, the conversion (so the runner
buffers every line until the types are known), and every split goes through
a ``Reshuffle`` before it is written (a buffer of every serialized example).
It also builds each ``tf.Example`` field by field in Python.

This executor writes the same records (same column types, same values, the
same split of every record: see ``split_index``) in two streaming passes over
the files, each holding one block of rows at a time:

1. ``infer_file_types``: the column types, with tfx_bsl's own rule (a column
   is INT if every non-empty value is an int64, else FLOAT if every value is a
   float, else STRING; UNKNOWN if it is always empty).
2. ``write_file``: the rows, parsed by Arrow's CSV reader in blocks, cast to
   those types, turned into ``tf.Example`` by tfx_bsl's C++ encoder (one
   column at a time, joined in key order by ``wire.join_columns``), then
   hashed into their split and written as they come by TF's TFRecord writer
   (gzip, shard ``i`` of every split from the ``i``-th file).

A Beam element is a file, not a row: Beam's ``Partition`` and
``WriteToTFRecord`` cost more per row than the encoding (Python per
element, Python CRCs, a zlib call per record). Records are written in input
order, serialized deterministically (features sorted by name), so the same
CSV gives the same bytes. Fast paths use Arrow
casts; a block whose values Arrow does not parse the way Python does (say
``" 3"``) falls back to Python's ``int``/``float``, so the types and values
are those of the stock executor.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.write_split import DEFAULT_FILE_NAME, to_file_format_str
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx_bsl.coders import csv_decoder, example_coder

from components.example_gen import wire
from components.example_gen.wire import sort_features  # noqa: F401 - this module's API

ColumnType = csv_decoder.ColumnType
BLOCK_BYTES = 1 << 20  # Arrow CSV block: ~5,000 taxi rows held at a time
_INTEGER = r"^\s*[+-]?\d+\s*$"


def read_blocks(path: str, column_names: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Blocks of a CSV file's rows after its header, every column a string; empty = null."""
    reader = pa_csv.open_csv(
        path,
        read_options=pa_csv.ReadOptions(
            column_names=list(column_names), skip_rows=1, block_size=BLOCK_BYTES
        ),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in column_names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    yield from reader


def _python_type(values: Iterable[str]) -> ColumnType:
    """tfx_bsl's per-value rule, folded over ``values`` (STRING ends the scan)."""
    result = ColumnType.UNKNOWN
    for value in values:
        result = max(result, csv_decoder._InferValueType(value))  # noqa: SLF001
        if result == ColumnType.STRING:
            break
    return result


def column_type(column: pa.Array) -> ColumnType:
    """The type tfx_bsl infers for these string values (nulls are empty cells)."""
    values = column.drop_null()
    if len(values) == 0:
        return ColumnType.UNKNOWN
    try:
        pc.cast(values, pa.int64())
        return ColumnType.INT
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        pc.cast(values, pa.float64())
        # Arrow parsed them all as floats; integers beyond int64 are STRING to tfx_bsl.
        if not pc.any(pc.match_substring_regex(values, _INTEGER)).as_py():
            return ColumnType.FLOAT
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _python_type(values.to_pylist())


def merge_types(types: Iterable[dict[str, ColumnType]]) -> dict[str, ColumnType]:
    """Column-wise maximum (UNKNOWN < INT < FLOAT < STRING), as tfx_bsl combines them."""
    merged: dict[str, ColumnType] = {}
    for block in types:
        for name, kind in block.items():
            merged[name] = max(merged.get(name, ColumnType.UNKNOWN), kind)
    return merged


def infer_file_types(path: str, column_names: Sequence[str]) -> dict[str, ColumnType]:
    """Column types of one CSV file, one block at a time."""
    return merge_types(
        {name: column_type(block.column(name)) for name in column_names}
        for block in read_blocks(path, column_names)
    )


def _typed_values(values: pa.Array, kind: ColumnType) -> pa.Array:
    """Non-null string ``values`` as the Example value type of ``kind``."""
    if kind == ColumnType.STRING:
        return pc.cast(values, pa.large_binary())
    arrow_type, parse = (pa.int64(), int) if kind == ColumnType.INT else (pa.float64(), float)
    try:
        typed = pc.cast(values, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        typed = pa.array([parse(v) for v in values.to_pylist()], arrow_type)
    if kind == ColumnType.FLOAT:
        typed = pc.cast(typed, pa.float32(), safe=False)  # FloatList holds float32
    return typed


def _feature_column(column: pa.Array, kind: ColumnType) -> pa.Array:
    """One value per non-empty cell, an empty list per empty cell (CsvExampleGen's encoding).

    An UNKNOWN column (empty in the whole span) is all nulls: a feature without
    a kind, as CsvExampleGen writes it.
    """
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(len(column), pa.large_list(pa.int64()))
    present = pc.is_valid(column)
    offsets = pa.array([0], pa.int64())
    if len(column):
        counts = pc.cumulative_sum(pc.cast(present, pa.int64()))
        offsets = pa.concat_arrays([offsets, counts])
    return pa.LargeListArray.from_arrays(offsets, _typed_values(column.filter(present), kind))


def encode_block(block: pa.RecordBatch, types: dict[str, ColumnType]) -> list[bytes]:
    """Rows of a string block -> ``tf.Example`` bytes, deterministically serialized.

    Each column is encoded alone by tfx_bsl and the one-feature records are
    joined row by row in key order (``wire.join_columns``); should tfx_bsl
    lay them out otherwise, the whole block is encoded at once and each
    record's entries sorted (``wire.sort_features``) or re-serialized.
    """
    from tensorflow.core.example import example_pb2

    names = sorted(block.schema.names, key=str.encode)  # protobuf orders map keys as bytes
    columns = {name: _feature_column(block.column(name), types[name]) for name in names}
    joined = wire.join_columns(
        [
            example_coder.RecordBatchToExamples(pa.RecordBatch.from_arrays([column], [name]))
            for name, column in columns.items()
        ]
    )
    if joined is not None:
        return joined
    encoded = example_coder.RecordBatchToExamples(
        pa.RecordBatch.from_arrays(list(columns.values()), names)
    )
    parse = example_pb2.Example.FromString
    result = []
    for example in encoded:
        canonical = wire.sort_features(example)
        if canonical is None:
            canonical = parse(example).SerializeToString(deterministic=True)
        result.append(canonical)
    return result


def split_buckets(output_config: example_gen_pb2.Output) -> list[int]:
    """Cumulative hash buckets of the output splits (TFX's convention)."""
    total, buckets = 0, []
    for split in output_config.split_config.splits:
        total += split.hash_buckets
        buckets.append(total)
    return buckets


def split_index(record: bytes, buckets: Sequence[int]) -> int:
    """The output split of a deterministically serialized record, exactly as TFX's ExampleGen.

    sha256 of the record modulo the total bucket count, located among the
    cumulative ``buckets``.
    """
    bucket = int(hashlib.sha256(record).hexdigest(), 16) % buckets[-1]
    return bisect.bisect(buckets, bucket)


def span_files(input_base: str, pattern: str) -> tuple[list[str], list[str]]:
    """(sorted CSV files of ``pattern``, their shared header).

    Raises:
      RuntimeError: no file matches, or the files' headers differ.
    """
    files = sorted(fileio.glob(os.path.join(input_base, pattern)))
    if not files:
        raise RuntimeError(f"Split pattern {os.path.join(input_base, pattern)} matches no files.")
    header = io_utils.load_csv_column_names(files[0])
    for path in files[1:]:
        if io_utils.load_csv_column_names(path) != header:
            raise RuntimeError(f"{path}: header differs from {files[0]}'s")
    return files, header


def shard_name(index: int, shards: int) -> str:
    """File name of shard ``index`` of ``shards`` in a split (as TFX's ``WriteToTFRecord`` names it)."""
    return f"{DEFAULT_FILE_NAME}-{index:05d}-of-{shards:05d}.gz"


def write_file(
    shard: tuple[int, str],
    column_names: Sequence[str],
    types: dict[str, ColumnType],
    split_dirs: Sequence[str],
    buckets: Sequence[int] | None,
    shards: int,
    tmp_dir: str,
) -> list[int]:
    """Encodes CSV file ``shard = (index, path)`` into shard ``index`` of every split; rows per split.

    With ``buckets`` each record goes to the split ``split_index`` gives it,
    else all go to ``split_dirs[0]``. Records are written as they come, in
    file order, by TF's TFRecord writer (gzip, as TFX writes them) into
    ``tmp_dir``, then renamed into place: a retried file replaces its own
    shards whole.
    """
    import tensorflow as tf

    index, path = shard
    name = shard_name(index, shards)
    attempt = uuid.uuid4().hex  # two attempts at one file (a runner's retry) never share a file
    temps = [os.path.join(tmp_dir, f"{os.path.basename(d)}-{name}.{attempt}") for d in split_dirs]
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    writers = [tf.io.TFRecordWriter(temp, options) for temp in temps]
    counts = [0] * len(split_dirs)
    try:
        for block in read_blocks(path, column_names):
            records = encode_block(block, types)
            if buckets is None:
                write = writers[0].write
                for record in records:
                    write(record)
                counts[0] += len(records)
                continue
            for record in records:
                split = split_index(record, buckets)
                writers[split].write(record)
                counts[split] += 1
    finally:
        for writer in writers:
            writer.close()
    for temp, split_dir in zip(temps, split_dirs, strict=True):
        fileio.makedirs(split_dir)
        fileio.rename(temp, os.path.join(split_dir, name), overwrite=True)
    return counts


@beam.ptransform_fn
def _WriteSplits(  # noqa: N802
    pipeline: beam.Pipeline,
    files: list[str],
    header: list[str],
    split_dirs: list[str],
    buckets: list[int] | None,
    tmp_dir: str,
):
    """CSV files -> TFRecord shards of ``split_dirs``: a type pass, then an encoding pass.

    Both passes stream (one block of rows at a time); one Beam element per
    file, so no Beam work per row.
    """
    types = (
        pipeline
        | "TypeFiles" >> beam.Create(files)
        | "InferTypes" >> beam.Map(infer_file_types, header)
        | "MergeTypes" >> beam.CombineGlobally(merge_types)
    )
    return (
        pipeline
        | "EncodeFiles" >> beam.Create(list(enumerate(files)))
        | "EncodeAndWrite"
        >> beam.Map(
            write_file,
            header,
            beam.pvalue.AsSingleton(types),
            split_dirs,
            buckets,
            len(files),
            tmp_dir,
        )
    )


class Executor(BaseExampleGenExecutor):
    """CsvExampleGen's executor contract, streaming (see the module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX API
        raise NotImplementedError("Do builds its own streaming pipeline")

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX API
        """Writes each output split of the CSV span as gzipped TFRecords of ``tf.Example``."""
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config
        )
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config
        )
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        examples = output_dict[standard_component_specs.EXAMPLES_KEY]
        split_names = utils.generate_output_split_names(input_config, output_config)
        artifact_utils.get_single_instance(
            examples
        ).split_names = artifact_utils.encode_split_names(split_names)

        output_uri = artifact_utils.get_single_uri(examples)
        tmp_dir = os.path.join(output_uri, ".ingest-tmp")
        fileio.makedirs(tmp_dir)
        split_dir = {name: artifact_utils.get_split_uri(examples, name) for name in split_names}
        with self._make_beam_pipeline() as pipeline:
            if output_config.split_config.splits:
                if len(input_config.splits) != 1:
                    raise ValueError("output splits need exactly one input split")
                files, header = span_files(input_base, input_config.splits[0].pattern)
                _ = pipeline | "Records" >> _WriteSplits(
                    files,
                    header,
                    [split_dir[name] for name in split_names],
                    split_buckets(output_config),
                    tmp_dir,
                )
            else:
                for split in input_config.splits:
                    files, header = span_files(input_base, split.pattern)
                    _ = pipeline | f"Records[{split.name}]" >> _WriteSplits(
                        files, header, [split_dir[split.name]], None, tmp_dir
                    )
        fileio.rmtree(tmp_dir)

        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        from tfx.components.util import examples_utils

        for artifact in examples:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, to_file_format_str(file_format))
