"""The Evaluators score every row of a small split and a seeded bottom-k sample of a large one."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("tfx")

import tensorflow as tf  # noqa: E402
from tfx.components.evaluator import executor as tfx_evaluator  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from components.evaluator import executor as ours  # noqa: E402
from components.evaluator import sampling  # noqa: E402


def _records(n: int) -> list[bytes]:
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={"i": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            )
        ).SerializeToString()
        for i in range(n)
    ]


def test_hash_cutoff_is_the_max_rows_th_smallest_hash():
    hashes = np.array([50, 10, 90, 30, 70], dtype=np.uint64)
    assert sampling.hash_cutoff(hashes, 2) == 30
    assert sampling.hash_cutoff(hashes, 4) == 70
    assert sampling.hash_cutoff(hashes, 5) is None  # all fit: keep everything
    with pytest.raises(ValueError, match="max_rows must be positive, got 0"):
        sampling.hash_cutoff(hashes, 0)


def test_sample_is_the_max_rows_smallest_hashes_in_read_order_whatever_the_order():
    records = [f"row-{i}".encode() for i in range(1000)]
    kept: list[bytes] = []
    assert sampling.sample_records(lambda: records, kept.append, 100, seed=42) == 1000
    by_hash = sorted(records, key=lambda r: sampling.record_hash(r, 42))
    assert len(kept) == 100
    assert set(kept) == set(by_hash[:100])
    assert kept == [r for r in records if r in set(kept)]  # read order kept
    shuffled = list(reversed(records))
    again: list[bytes] = []
    sampling.sample_records(lambda: shuffled, again.append, 100, seed=42)
    assert set(again) == set(kept)
    other: list[bytes] = []
    sampling.sample_records(lambda: records, other.append, 100, seed=43)
    assert len(set(other) & set(kept)) < 50  # another seed, another sample


def test_duplicates_at_the_cutoff_do_not_exceed_max_rows():
    # The scaled data holds identical records; they share a hash. With the
    # cutoff inside a group of copies only as many copies as fit are kept.
    records = [f"row-{i}".encode() for i in range(50)]
    by_hash = sorted(set(records), key=lambda r: sampling.record_hash(r, 42))
    records += [by_hash[9]] * 4  # five copies of the 10th smallest
    kept: list[bytes] = []
    assert sampling.sample_records(lambda: records, kept.append, 12, seed=42) == 54
    assert len(kept) == 12
    assert sorted(kept) == sorted(by_hash[:9] + [by_hash[9]] * 3)


def test_records_that_all_fit_are_read_once_and_not_written():
    reads = []

    def read():
        reads.append(1)
        return [b"a", b"b", b"c"]

    written: list[bytes] = []
    assert sampling.sample_records(read, written.append, 3, seed=0) is None
    assert (len(reads), written) == (1, [])


def test_record_hash_is_keyed_by_the_seed():
    # Known answers: BLAKE2b-64 of b"row" keyed by the little-endian seed. A
    # change of hash would change every sample, hence every large evaluation.
    assert sampling.record_hash(b"row", 0) == 13653377577682648333
    assert sampling.record_hash(b"row", 1) == 2349339518840211134


def _examples(tmp_path, splits: dict[str, int]) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = json.dumps(list(splits))
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    for split, n in splits.items():
        os.makedirs(f"{examples.uri}/Split-{split}")
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(f"{examples.uri}/Split-{split}/data.gz", options) as w:
            for record in _records(n):
                w.write(record)
    return examples


def _read_split(examples, split: str) -> list[bytes]:
    return list(ours.read_records(ours.split_files([examples], split))())


def test_read_yields_every_record_of_every_file_in_order_across_batches(tmp_path, monkeypatch):
    # Batches of 7 over files of 30 and 200 records: partial last batches,
    # file boundaries inside a batch's reach, and a fresh pass per call.
    monkeypatch.setattr(ours, "READ_BATCH", 7)
    examples = _examples(tmp_path, {"eval": 30, "test": 200})
    plain = tmp_path / "plain"
    with tf.io.TFRecordWriter(str(plain)) as w:  # an uncompressed file too
        for record in _records(3):
            w.write(record)
    files = [
        *ours.split_files([examples], "eval"),
        *ours.split_files([examples], "test"),
        str(plain),
    ]
    read = ours.read_records(files)
    expected = _records(30) + _records(200) + _records(3)
    assert list(read()) == expected
    assert list(read()) == expected
    assert all(type(record) is bytes for record in read())


@pytest.fixture()
def parent(monkeypatch):
    """Calls of TFX's ``Do`` (input dict, exec properties, the sampled records then)."""
    calls = []

    def do(self, input_dict, output_dict, exec_properties):
        [examples] = input_dict["examples"]
        seen = {s: _read_split(examples, s) for s in json.loads(examples.split_names)}
        calls.append((input_dict, exec_properties, seen))

    monkeypatch.setattr(tfx_evaluator.Executor, "Do", do)
    return calls


def _do(tmp_path, examples, max_rows: int, splits=("eval",)):
    executor = ours.Executor(ours.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="7"))
    properties = {
        "eval_config": "{}",
        "example_splits": json.dumps(list(splits)),
        "max_rows": max_rows,
        "seed": 42,
        "code_fingerprint": "abc",
    }
    executor.Do({"examples": [examples], "model": []}, {"evaluation": []}, properties)


def test_a_split_within_max_rows_goes_to_tfx_untouched(tmp_path, parent):
    examples = _examples(tmp_path, {"eval": 30, "test": 30})
    _do(tmp_path, examples, max_rows=30)
    [(input_dict, properties, _)] = parent
    assert input_dict["examples"][0] is examples
    assert properties == {"eval_config": "{}", "example_splits": '["eval"]'}
    assert not os.path.exists(tmp_path / "tmp" / "7" / "sampled_examples")


def test_a_larger_split_is_scored_on_its_seeded_sample_then_removed(tmp_path, parent):
    examples = _examples(tmp_path, {"eval": 200, "test": 30})
    _do(tmp_path, examples, max_rows=50, splits=("eval", "test"))
    [(input_dict, properties, seen)] = parent
    [sample] = input_dict["examples"]
    assert sample is not examples
    assert sample.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    expected = sorted(_records(200), key=lambda r: sampling.record_hash(r, 42))[:50]
    assert sorted(seen["eval"]) == sorted(expected)
    assert seen["test"] == _records(30)  # within the limit: whole
    assert properties == {"eval_config": "{}", "example_splits": '["eval", "test"]'}
    assert not os.path.exists(sample.uri)
