"""bench_eval_sample scores the very rows the Evaluator's executor keeps."""

import os
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))

pytest.importorskip("tfx")

import bench_eval_sample  # noqa: E402

from components.evaluator import sampling  # noqa: E402


def test_sample_rows_are_the_executors_sample_in_read_order_copies_included():
    records = [f"row-{i}".encode() for i in range(300)]
    records += [records[7]] * 40 + [records[123]] * 40  # copies share a hash
    written: list[bytes] = []
    sampling.sample_records(lambda: records, written.append, 100, seed=42)
    kept = bench_eval_sample.sample_rows(records, 100, seed=42)
    assert [records[i] for i in kept] == written
    assert list(kept) == sorted(kept)


def test_metrics_are_auc_and_sum_of_predictions_over_sum_of_labels():
    labels = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    predictions = np.array([0.1, 0.9, 0.5, 0.4, 0.2])
    auc, calibration = bench_eval_sample.metrics(labels, predictions)
    assert auc == pytest.approx(5 / 6)  # of 6 (positive, negative) pairs, 0.4 < 0.5 is wrong
    assert calibration == pytest.approx(2.1 / 2)


def test_seed_list_reads_numbers_and_inclusive_ranges():
    assert bench_eval_sample.seed_list("0-3,42") == [0, 1, 2, 3, 42]
    assert bench_eval_sample.seed_list("5") == [5]
