"""The streaming ExampleGen writes what TFX's CsvExampleGen writes, split for split."""

import os

import pytest
from google.protobuf import struct_pb2

pytest.importorskip("tfx")

from tfx.components.example_gen.csv_example_gen import executor as tfx_csv  # noqa: E402
from tfx.proto import example_gen_pb2  # noqa: E402
from tfx.types import artifact_utils, standard_artifacts  # noqa: E402
from tfx.utils import proto_utils  # noqa: E402

from components.example_gen import executor as streaming  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLITS = {"train": 8, "eval": 1, "test": 1}

# Cells that a naive reader gets wrong: an always-empty column, ints with
# spaces and signs (Python's int accepts them, so tfx_bsl infers INT), an int
# too large for int64 (tfx_bsl: STRING), floats as "1e3"/".5", a quoted comma,
# a quoted line break, a quoted empty string.
TRICKY = """a,b,c,d,e,f,g
1,1.5,x,,12345678901234567890, 3,1e3
2,,"y,z",,7,+4,.5
,2.25,"two
lines",,8,5,
3,-0.0,"",,9,-6,nan
"""


def _run(executor, input_base: str, out: str, splits: dict | None):
    examples = standard_artifacts.Examples()
    examples.uri = out
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")]
    )
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[
                example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b)
                for n, b in (splits or {}).items()
            ]
        )
    )
    if not splits:  # input splits: one per file pattern, no hashing
        output_config = example_gen_pb2.Output()
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="all", pattern="*.csv")]
        )
    executor.Do(
        {},
        {"examples": [examples]},
        {
            "input_base": input_base,
            "input_config": proto_utils.proto_to_json(input_config),
            "output_config": proto_utils.proto_to_json(output_config),
            "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
            "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        },
    )
    return examples


def _records(examples, split: str) -> list[bytes]:
    """The split's examples, each re-serialized deterministically (wire order is not data)."""
    import tensorflow as tf

    folder = artifact_utils.get_split_uri([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(folder, "*")))
    parse = tf.train.Example.FromString
    return [
        parse(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


@pytest.mark.slow
def test_same_records_and_splits_as_tfx_csv_example_gen(tmp_path):
    """Bundled span-2016 (834 rows) plus the tricky file: same examples in the same splits."""
    data = tmp_path / "in"
    data.mkdir()
    with open(os.path.join(REPO_ROOT, "data", "taxi", "span-2016", "data.csv")) as f:
        (data / "taxi.csv").write_text(f.read())
    ours = _run(streaming.Executor(), str(data), str(tmp_path / "ours"), SPLITS)
    theirs = _run(tfx_csv.Executor(), str(data), str(tmp_path / "theirs"), SPLITS)
    sizes = {}
    for split in SPLITS:
        mine, stock = _records(ours, split), _records(theirs, split)
        assert sorted(mine) == sorted(stock), split
        sizes[split] = len(mine)
    assert sum(sizes.values()) == 833
    assert sizes["train"] > 600 and sizes["eval"] > 50  # a hash split, not one bucket
    for key in ("payload_format", "file_format"):
        assert ours.get_string_custom_property(key) == theirs.get_string_custom_property(key)
    assert ours.split_names == theirs.split_names


@pytest.mark.slow
def test_tricky_cells_typed_as_tfx_does(tmp_path):
    import tensorflow as tf

    data = tmp_path / "in"
    data.mkdir()
    (data / "tricky.csv").write_text(TRICKY)
    ours = _run(streaming.Executor(), str(data), str(tmp_path / "ours"), None)
    theirs = _run(tfx_csv.Executor(), str(data), str(tmp_path / "theirs"), None)
    mine, stock = _records(ours, "all"), _records(theirs, "all")
    assert mine == stock  # same order too: no shuffle on either side here (one file)
    first = tf.train.Example.FromString(mine[0]).features.feature
    assert first["a"].int64_list.value == [1]
    assert first["e"].bytes_list.value == [b"12345678901234567890"]  # beyond int64
    assert first["f"].int64_list.value == [3]  # " 3" is an int to Python
    assert not first["d"].HasField("kind")  # always empty: a feature without a kind


def test_column_type_rule():
    import pyarrow as pa

    t = streaming.ColumnType
    cases = {
        ("1", "-2", None): t.INT,
        ("1", "2.5"): t.FLOAT,
        ("1", " 2"): t.INT,
        ("1e3",): t.FLOAT,
        ("99999999999999999999",): t.STRING,
        ("1.5", "x"): t.STRING,
        (None, None): t.UNKNOWN,
    }
    for values, expected in cases.items():
        assert streaming.column_type(pa.array(values, pa.string())) == expected, values


def test_split_index_matches_tfx_partition():
    from tfx.components.example_gen import base_example_gen_executor as base

    config = example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in SPLITS.items()
        ]
    )
    buckets = [8, 9, 10]
    for i in range(200):
        record = f"record {i}".encode()
        assert streaming.split_index(record, buckets) == base._PartitionFn(
            record, 3, buckets, config
        )


def test_sort_features_is_deterministic_serialization():
    import tensorflow as tf

    feature = {
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=[i] * (i % 3)))
        for i, name in enumerate(["zeta", "alpha", "mid", "a" * 200, "b"])
    }
    feature["text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * 300]))
    feature["none"] = tf.train.Feature()
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    expected = example.SerializeToString(deterministic=True)
    # Entries in another order (a proto map's wire order is arbitrary) sort back.
    entries = example.features.feature
    shuffled = tf.train.Example()
    for name in reversed(sorted(entries)):
        shuffled.features.feature[name].CopyFrom(entries[name])
    assert shuffled.SerializeToString() != expected  # the case worth testing
    assert streaming.sort_features(shuffled.SerializeToString()) == expected
    assert streaming.sort_features(b"") is None
    assert streaming.sort_features(b"\x12\x00") is None  # not a features field


def test_the_component_is_tfx_csv_example_gen_plus_a_code_fingerprint():
    # Same node id, driver and exec properties as TFX's CsvExampleGen (so the
    # same cache key but for the executor's code fingerprint in custom_config).
    from tfx.components import CsvExampleGen as TfxCsvExampleGen

    from components.example_gen import CsvExampleGen

    stock = TfxCsvExampleGen(input_base="/data")
    ours = CsvExampleGen(input_base="/data")
    assert ours.id == stock.id == "CsvExampleGen"
    assert ours.driver_class is stock.driver_class
    assert ours.executor_spec.executor_class is streaming.Executor
    assert ours.exec_properties == stock.exec_properties

    fingerprinted = CsvExampleGen(input_base="/data", code_fingerprint="abc123")
    changed = {
        key
        for key, value in fingerprinted.exec_properties.items()
        if value != stock.exec_properties.get(key)
    }
    assert changed == {"custom_config"}
    config = proto_utils.json_to_proto(
        fingerprinted.exec_properties["custom_config"], example_gen_pb2.CustomConfig()
    )
    value = struct_pb2.Struct()
    assert config.custom_config.Unpack(value)
    assert dict(value) == {"code_fingerprint": "abc123"}


def _one_feature(name: str, feature) -> bytes:
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={name: feature})).SerializeToString()


def test_join_columns_is_the_deterministic_serialization_of_each_row():
    """Rows of one-feature records joined in key order: varint lengths of 1-3 bytes, empty
    features, an all-empty row; every row equals protobuf's own deterministic bytes."""
    import tensorflow as tf

    from components.example_gen import wire

    def feature(kind: str, row: int):
        if kind == "int":  # 0 to 2 values, some 10-byte varints
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[-row] * (row % 3)))
        if kind == "text":  # entries of 1, 2 and 3 length bytes
            size = (0, 5, 200, 20_000)[row % 4]
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * size]))
        return tf.train.Feature()  # no kind, as an always-empty CSV column

    names = {"zeta": "int", "alpha": "text", "b": "none", "a" * 130: "int"}
    ordered = sorted(names, key=str.encode)
    rows = 9
    columns = [[_one_feature(n, feature(names[n], r)) for r in range(rows)] for n in ordered]
    expected = [
        tf.train.Example(
            features=tf.train.Features(feature={n: feature(names[n], r) for n in names})
        ).SerializeToString(deterministic=True)
        for r in range(rows)
    ]
    assert wire.join_columns(columns) == expected
    # Not laid out as tfx_bsl writes one feature: no join (the caller falls back).
    assert wire.join_columns([[b"\x12\x00"] * 2]) is None
    assert wire.join_columns([[columns[0][0] + b"\x00"]]) is None  # length does not cover it


def test_varints_match_protobuf():
    import numpy as np

    from components.example_gen import wire

    values = [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**35 + 7, 2**63 - 1]
    raw, used = wire.varints(np.array(values, np.uint64))
    for row, value in enumerate(values):
        assert bytes(raw[row, : used[row]]) == wire._varint_bytes(value), value  # noqa: SLF001


@pytest.mark.slow
def test_splits_are_written_as_tfx_names_them_and_nothing_else(tmp_path):
    """Two input files: shard i of every split comes from file i; no temporary files stay."""
    data = tmp_path / "in"
    data.mkdir()
    with open(os.path.join(REPO_ROOT, "data", "taxi", "span-2016", "data.csv")) as f:
        lines = f.read().splitlines(keepends=True)
    (data / "a.csv").write_text("".join(lines[:400]))
    (data / "b.csv").write_text(lines[0] + "".join(lines[400:]))
    ours = _run(streaming.Executor(), str(data), str(tmp_path / "ours"), SPLITS)
    assert sorted(os.listdir(tmp_path / "ours")) == [f"Split-{s}" for s in sorted(SPLITS)]
    for split in SPLITS:
        assert sorted(os.listdir(tmp_path / "ours" / f"Split-{split}")) == [
            "data_tfrecord-00000-of-00002.gz",
            "data_tfrecord-00001-of-00002.gz",
        ]
    assert sum(len(_records(ours, s)) for s in SPLITS) == 833


def test_encode_block_joined_equals_its_fallback(tmp_path, monkeypatch):
    """The column-wise join and the per-record sort give the same bytes for the same block."""
    from components.example_gen import wire

    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY)
    header = ["a", "b", "c", "d", "e", "f", "g"]
    types = streaming.infer_file_types(str(path), header)
    [block] = list(streaming.read_blocks(str(path), header))
    joined = streaming.encode_block(block, types)
    monkeypatch.setattr(wire, "join_columns", lambda columns: None)
    assert streaming.encode_block(block, types) == joined
    assert len(joined) == 4
