"""Batched reading of record files: every record, in file order, decoded as TFXIO does."""

import os

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import tf_example_record

from components import records

pytestmark = pytest.mark.slow


def _example(i: int) -> bytes:
    feature = {
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5 * i])),
        "trip_seconds": tf.train.Feature(int64_list=tf.train.Int64List(value=[60 * i])),
    }
    if i % 3:
        feature["company"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"c%d" % i]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path: str, first: int, count: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = "GZIP" if path.endswith(".gz") else None
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for i in range(first, first + count):
            writer.write(_example(i))


def _fares(batches) -> list:
    return [v for b in batches for [v] in b.column(b.schema.get_field_index("fare")).to_pylist()]


@pytest.fixture
def folders(tmp_path):
    """Two folders: a/ holds 12 + 5 records (gzipped), b/ holds 4 records (not compressed)."""
    _write(str(tmp_path / "a" / "part-00001.gz"), 12, 5)  # listed second, by name
    _write(str(tmp_path / "a" / "part-00000.gz"), 0, 12)
    _write(str(tmp_path / "b" / "part-00000"), 100, 4)
    return tmp_path


def test_record_batches_cut_a_file_into_batches_of_every_record(folders):
    batches = list(records.record_batches(str(folders / "a" / "part-00000.gz"), batch_size=5))
    assert [b.num_rows for b in batches] == [5, 5, 2]
    assert _fares(batches) == [0.5 * i for i in range(12)]


def test_the_default_batch_size_is_read_batch(folders, monkeypatch):
    monkeypatch.setattr(records, "READ_BATCH", 7)
    batches = list(records.record_batches(str(folders / "a" / "part-00000.gz")))
    assert [b.num_rows for b in batches] == [7, 5]


def test_with_a_schema_only_its_features_are_decoded_as_typed_there(folders):
    schema = schema_pb2.Schema()
    schema.feature.add(name="fare", type=schema_pb2.FLOAT)
    schema.feature.add(name="company", type=schema_pb2.BYTES)
    path = str(folders / "a" / "part-00000.gz")
    [batch] = records.record_batches(path, batch_size=100, schema=schema.SerializeToString())
    # What TFXIO's own Beam source decodes with the same schema.
    stock = next(
        tf_example_record.TFExampleRecord(path, schema=schema).RecordBatches(
            _options(batch_size=100)
        )
    )
    assert batch.schema.names == ["fare", "company"]
    assert batch.equals(stock)
    assert batch.column(1).to_pylist()[:4] == [None, [b"c1"], [b"c2"], None]


def _options(batch_size):
    from tfx_bsl.tfxio import dataset_options

    return dataset_options.RecordBatchesOptions(
        batch_size=batch_size, drop_final_batch=False, num_epochs=1, shuffle=False
    )


def test_matched_record_batches_read_patterns_in_turn_and_each_pattern_in_name_order(folders):
    patterns = [str(folders / "b" / "*"), str(folders / "a" / "*")]
    batches = list(records.matched_record_batches(patterns, 10))
    # b's 4 records, then a's files by name: 10 + 2 of part-00000, 5 of part-00001.
    assert [b.num_rows for b in batches] == [4, 10, 2, 5]
    assert _fares(batches) == [0.5 * i for i in (*range(100, 104), *range(17))]


def test_a_pattern_matching_nothing_is_an_error_naming_it(folders):
    missing = str(folders / "c" / "*")
    with pytest.raises(FileNotFoundError, match=r"no record files match .*/c/\*"):
        list(records.matched_record_batches([str(folders / "a" / "*"), missing]))


def test_split_files_lists_a_splits_files_in_name_order(folders):
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = str(folders)
    examples.split_names = artifact_utils.encode_split_names(["x"])
    os.rename(folders / "a", folders / "Split-x")
    assert records.split_files(examples, "x") == [
        str(folders / "Split-x" / "part-00000.gz"),
        str(folders / "Split-x" / "part-00001.gz"),
    ]
