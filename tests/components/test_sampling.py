"""The shared one-pass bottom-k sampler of the Tuner and ModelSelection, against known answers."""

import hashlib
import random

import pytest
import tensorflow as tf

from components import sampling
from components.evaluator import sampling as evaluator_sampling


def _hash(record: bytes, seed: int) -> int:
    """The documented hash, computed here: BLAKE2b-64 keyed by the little-endian seed."""
    key = seed.to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(record, digest_size=8, key=key).digest(), "little")


def _expected(records: list[bytes], n: int, seed: int) -> list[bytes]:
    """The n smallest (hash, read position), in read order."""
    kept = sorted(range(len(records)), key=lambda i: (_hash(records[i], seed), i))[:n]
    return [records[i] for i in sorted(kept)]


def _write(path, records, compress=True) -> str:
    with tf.io.TFRecordWriter(str(path), options="GZIP" if compress else None) as writer:
        for record in records:
            writer.write(record)
    return str(path)


@pytest.fixture
def small_batches(monkeypatch):
    # 7 records a read: the cut-back to max_rows and the running cutoff happen many times.
    monkeypatch.setattr(sampling, "READ_BATCH", 7)


def test_record_hash_known_answers():
    # The Evaluator's rule, so both sample the same records under the same seed.
    assert sampling.record_hash(b"row", 0) == 13653377577682648333
    assert sampling.record_hash(b"row", 1) == 2349339518840211134


@pytest.mark.slow
@pytest.mark.parametrize("max_rows", [1, 5, 17, 60])
def test_bottom_k_is_the_smallest_hashes_in_read_order(tmp_path, small_batches, max_rows):
    records = [f"row-{i}".encode() for i in range(100)]
    files = [_write(tmp_path / "a.gz", records[:45]), _write(tmp_path / "b.gz", records[45:])]
    sample, counts = sampling.bottom_k(files, max_rows, seed=3)
    assert counts == [45, 55]
    assert sample == _expected(records, max_rows, 3)
    # Known answer: the same sample as the Evaluator's two-pass sampler.
    kept: list[bytes] = []
    evaluator_sampling.sample_records(lambda: records, kept.append, max_rows, seed=3)
    assert sample == kept


@pytest.mark.slow
def test_bottom_k_is_the_same_rows_whatever_the_order(tmp_path, small_batches):
    records = [f"row-{i}".encode() for i in range(80)]
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    sample, _ = sampling.bottom_k([_write(tmp_path / "a.gz", records)], 10, seed=9)
    again, _ = sampling.bottom_k([_write(tmp_path / "b.gz", shuffled)], 10, seed=9)
    assert sorted(sample) == sorted(again) and len(set(sample)) == 10
    other, _ = sampling.bottom_k([_write(tmp_path / "a.gz", records)], 10, seed=10)
    assert sorted(other) != sorted(sample)  # another seed, another sample


@pytest.mark.slow
def test_bottom_k_keeps_exactly_max_rows_of_copies_at_the_cutoff(tmp_path, small_batches):
    # Scaled data holds identical records: only as many copies as fit are kept.
    records = [f"row-{i}".encode() for i in range(50)]
    by_hash = sorted(records, key=lambda r: _hash(r, 42))
    records += [by_hash[9]] * 30  # 31 copies of the 10th smallest, read last
    sample, counts = sampling.bottom_k([_write(tmp_path / "a.gz", records)], 12, seed=42)
    assert counts == [80]
    assert sorted(sample) == sorted(by_hash[:9] + [by_hash[9]] * 3)


@pytest.mark.slow
def test_bottom_k_of_few_rows_plain_files_and_no_files(tmp_path):
    records = [f"row-{i}".encode() for i in range(20)]
    plain = _write(tmp_path / "data-00000-of-00001", records, compress=False)
    # At most max_rows records: all of them, in read order (no sampling).
    assert sampling.bottom_k([plain], 20, seed=1) == (records, [20])
    assert sampling.bottom_k([plain], 5, seed=1) == (_expected(records, 5, 1), [20])
    assert sampling.bottom_k([], 5, seed=1) == ([], [])
    with pytest.raises(ValueError, match=r"^max_rows must be positive, got 0$"):
        sampling.bottom_k([plain], 0, seed=1)
