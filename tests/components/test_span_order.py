"""Transform's executor reading in batches: the analysis of TFX's executor, same records in order."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.transform import executor as tfx_executor
from tfx.proto import transform_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import records, span_order

pytestmark = pytest.mark.slow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _span(root, span, rows, write_examples, raw_spec):
    """An Examples artifact of ``span``: train holds ``rows`` in two files, eval their first 20."""
    artifact = standard_artifacts.Examples()
    artifact.uri = os.path.join(root, f"span-{span}")
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    artifact.set_int_custom_property("span", span)  # where our ExampleGen records it
    train = os.path.join(artifact.uri, "Split-train")
    half = len(rows) // 2 + 7
    write_examples(rows[:half], os.path.join(train, "data_tfrecord-00000-of-00002.gz"), raw_spec)
    write_examples(rows[half:], os.path.join(train, "data_tfrecord-00001-of-00002.gz"), raw_spec)
    eval_path = os.path.join(artifact.uri, "Split-eval", "data_tfrecord-00000-of-00001.gz")
    write_examples(rows[:20], eval_path, raw_spec)
    return artifact


@pytest.fixture
def examples(tmp_path, raw_rows, transform_output, write_examples):
    """Spans 3 (the first 180 rows) and 4 (the other 120), span 3 first as MLMD hands them."""
    raw_spec = transform_output[0].raw_feature_spec()
    root = str(tmp_path / "examples")
    return [
        _span(root, 3, raw_rows[:180], write_examples, raw_spec),
        _span(root, 4, raw_rows[180:], write_examples, raw_spec),
    ]


def _run(cls, examples, out, cache=False):
    schema = standard_artifacts.Schema()
    schema.uri = os.path.join(REPO_ROOT, "data", "schema")
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(out)
    context = cls.Context(beam_pipeline_args=[], tmp_dir=str(out / ".tmp"), unique_id="1")
    outputs = {"transform_graph": [graph]}
    if cache:
        updated = standard_artifacts.TransformCache()
        updated.uri = str(out / "cache")
        outputs["updated_analyzer_cache"] = [updated]
    cls(context).Do(
        {"examples": examples, "schema": [schema]},
        outputs,
        {
            "module_path": None,
            "preprocessing_fn": "components.preprocessing.preprocessing_fn",
            "splits_config": proto_utils.proto_to_json(
                transform_pb2.SplitsConfig(analyze=["train"])
            ),
            "disable_statistics": 1,
            "force_tf_compat_v1": 0,
            "custom_config": json.dumps({}),
        },
    )
    return tft.TFTransformOutput(str(out))


def _transformed(output, raw_rows, serialize_example):
    spec = output.raw_feature_spec()
    batch = tf.io.parse_example([serialize_example(r, spec) for r in raw_rows], spec)
    return {k: v.numpy() for k, v in output.transform_features_layer()(batch).items()}


def _train(artifact) -> str:
    return os.path.join(artifact.uri, "Split-train", "*")


def _spied(tmp_path, monkeypatch):
    """Logs the patterns of every read of the Transform's source to a file (Beam runs a pickled copy)."""
    log = tmp_path / "reads.log"
    read = records.matched_record_batches

    def spy(patterns, batch_size=None, schema=None):
        with open(log, "a") as f:
            f.write(" ".join(patterns) + "\n")
        yield from read(patterns, batch_size, schema)

    monkeypatch.setattr(records, "matched_record_batches", spy)
    return log


def test_the_analysis_is_that_of_tfx_executor_reading_every_train_record_in_order(
    examples, tmp_path, raw_rows, serialize_example, monkeypatch
):
    # Batches of 64: every train file ends in a partial batch.
    monkeypatch.setattr(records, "READ_BATCH", 64)
    log = _spied(tmp_path, monkeypatch)
    ours = _run(span_order.SpanOrderedTransformExecutor, examples, tmp_path / "ours")
    # One read of both spans' train files, newest span first: one stream, no Flatten of
    # per-span PCollections (which Beam's in-memory runner holds in memory whole).
    [span3, span4] = examples
    assert log.read_text().splitlines() == [f"{_train(span4)} {_train(span3)}"]

    stock = _run(tfx_executor.Executor, examples, tmp_path / "stock")
    for key in ("payment_type", "company", "dropoff_census_tract"):
        assert ours.vocabulary_by_name(key) == stock.vocabulary_by_name(key)
    mine, theirs = (
        _transformed(ours, raw_rows, serialize_example),
        _transformed(stock, raw_rows, serialize_example),
    )
    assert mine.keys() == theirs.keys()
    for key in mine:
        # z-scores: the means and variances are sums over other batch boundaries.
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # The executor's processor is TFX's again once the run is over.
    assert tfx_executor.TransformProcessor.__name__ == "TransformProcessor"


def test_a_failing_run_puts_tfx_processor_back(examples, tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(records, "matched_record_batches", fail)
    stock = tfx_executor.TransformProcessor
    with pytest.raises(Exception, match="disk gone"):
        _run(span_order.SpanOrderedTransformExecutor, examples, tmp_path / "failed")
    assert tfx_executor.TransformProcessor is stock


def test_with_an_analyzer_cache_each_span_is_read_on_its_own(examples, tmp_path, monkeypatch):
    log = _spied(tmp_path, monkeypatch)
    _run(span_order.SpanOrderedTransformExecutor, examples, tmp_path / "cached", cache=True)
    assert sorted(log.read_text().splitlines()) == sorted(_train(a) for a in examples)
    assert len(os.listdir(tmp_path / "cached" / "cache")) == 2  # a cache entry per span
