"""StatisticsGen's batched executor: the statistics and artifact of TFX's executor."""

import os

import pytest
import tensorflow as tf
from tensorflow_data_validation.statistics import stats_options as options
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.components.statistics_gen import executor as tfx_executor
from tfx.types import artifact_utils, standard_artifacts

from components import records
from components.statistics_gen import executor

pytestmark = pytest.mark.slow


def _example(i: int) -> bytes:
    feature = {
        "fare": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5 * i])),
        "trip_seconds": tf.train.Feature(int64_list=tf.train.Int64List(value=[60 * i])),
    }
    if i % 3:  # a string feature missing in a third of the rows
        feature["payment_type"] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b"Cash" if i % 2 else b"Credit Card"])
        )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture
def examples(tmp_path):
    """Two splits of two gzipped files each (23 + 18 and 5 + 9 records)."""
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path / "examples")
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    artifact.span = 7
    i = 0
    for split, sizes in (("train", (23, 18)), ("eval", (5, 9))):
        folder = os.path.join(artifact.uri, f"Split-{split}")
        os.makedirs(folder)
        for n, size in enumerate(sizes):
            path = os.path.join(folder, f"data_tfrecord-{n:05d}-of-{len(sizes):05d}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for _ in range(size):
                    writer.write(_example(i))
                    i += 1
    return artifact


def _run(cls, examples, out, exec_properties=None):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(out)
    context = cls.Context(beam_pipeline_args=[], tmp_dir=str(out / ".tmp"), unique_id="1")
    cls(context).Do(
        {"examples": [examples]},
        {"statistics": [statistics]},
        {"exclude_splits": "[]", **(exec_properties or {})},
    )
    return statistics


def _stats(statistics, split) -> statistics_pb2.DatasetFeatureStatisticsList:
    result = statistics_pb2.DatasetFeatureStatisticsList()
    path = os.path.join(statistics.uri, f"Split-{split}", tfx_executor.DEFAULT_FILE_NAME)
    with open(path, "rb") as f:
        result.ParseFromString(f.read())
    return result


def test_the_statistics_and_artifact_are_those_of_tfx_executor(examples, tmp_path, monkeypatch):
    # Batches of 7 records: files of 23, 18, 5 and 9 records end in partial batches.
    monkeypatch.setattr(records, "READ_BATCH", 7)
    ours = _run(executor.Executor, examples, tmp_path / "ours")
    stock = _run(tfx_executor.Executor, examples, tmp_path / "stock")
    for split, rows in (("train", 41), ("eval", 14)):
        mine, theirs = _stats(ours, split), _stats(stock, split)
        assert mine.datasets[0].num_examples == rows
        assert mine == theirs, split
    assert ours.split_names == stock.split_names
    assert ours.span == 7
    mine_props = {k: v for k, v in ours.mlmd_artifact.custom_properties.items()}
    assert mine_props == dict(stock.mlmd_artifact.custom_properties.items())


def test_what_it_does_not_implement_goes_to_tfx_executor(examples, tmp_path, monkeypatch):
    def fail(*args):
        raise AssertionError("read in batches although sampling was asked for")

    monkeypatch.setattr(records, "record_batches", fail)
    statistics = _run(
        executor.Executor,
        examples,
        tmp_path / "sampled",
        {"stats_options_json": options.StatsOptions(sample_rate=0.5).to_json()},
    )
    assert _stats(statistics, "train").datasets[0].num_examples < 41
