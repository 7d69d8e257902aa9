"""The data scaler: deterministic, same columns, k passes, every copy in its source row's split."""

import csv
import filecmp
import os
import sys

import numpy as np
import pyarrow as pa
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))

import scale_taxi_spans as scaler  # noqa: E402

from components.example_gen import executor as example_gen  # noqa: E402

ROWS = 60
pytestmark = pytest.mark.slow


@pytest.fixture
def source(tmp_path):
    """Two spans of the first ``ROWS`` bundled rows each."""
    for span in (2015, 2016):
        with open(os.path.join(REPO_ROOT, "data", "taxi", f"span-{span}", "data.csv")) as f:
            lines = f.readlines()[: ROWS + 1]
        folder = tmp_path / "src" / f"span-{span}"
        folder.mkdir(parents=True)
        (folder / "data.csv").write_text("".join(lines))
    return str(tmp_path / "src")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_deterministic_and_same_columns(source, tmp_path):
    first = scaler.scale_spans(source, str(tmp_path / "a"), factor=3, seed=7, processes=1)
    # Two worker processes, one span each: the same bytes as one process.
    assert scaler.scale_spans(source, str(tmp_path / "b"), factor=3, seed=7, processes=2) == first
    other = tmp_path / "c"
    scaler.scale_spans(source, str(other), factor=3, seed=8)
    assert first == {2015: 3 * ROWS, 2016: 3 * ROWS}
    for span in first:
        name = f"span-{span}/data.csv"
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
        assert not filecmp.cmp(tmp_path / "a" / name, other / name, shallow=False)
        src, out = _rows(os.path.join(source, name)), _rows(tmp_path / "a" / name)
        assert out[0] == src[0]
        assert out[1 : ROWS + 1] == src[1:]  # pass 0: the source rows as they are
        header = src[0]
        fixed = [i for i, k in enumerate(header) if k not in ("fare", "tips", "trip_miles")]
        fare = header.index("fare")
        changed = 0
        for copy in (1, 2):
            for i, row in enumerate(out[1 + copy * ROWS : 1 + (copy + 1) * ROWS]):
                original = src[1 + i]
                assert [row[j] for j in fixed] == [original[j] for j in fixed]
                if original[fare]:
                    ratio = float(row[fare]) / float(original[fare]) if float(original[fare]) else 1
                    assert 0.89 <= ratio <= 1.11
                changed += row[fare] != original[fare]
        assert changed > ROWS  # most copies are jittered, not duplicated


def test_every_copy_in_its_source_rows_split(source, tmp_path):
    scaler.scale_spans(source, str(tmp_path / "out"), factor=4, seed=0)
    buckets = [8, 9, 10]
    for span in (2015, 2016):
        path = str(tmp_path / "out" / f"span-{span}" / "data.csv")
        header = _rows(path)[0]
        blocks = list(example_gen.read_blocks(path, header))
        table = pa.Table.from_batches(blocks).to_batches()[0]
        types = example_gen.infer_file_types(path, header)
        splits = np.array(
            [example_gen.split_index(r, buckets) for r in example_gen.encode_block(table, types)]
        ).reshape(4, ROWS)
        assert (splits == splits[0]).all()
        assert len(set(splits[0])) >= 2  # a real hash split, not one bucket


def test_bad_factor(source, tmp_path):
    with pytest.raises(ValueError, match="factor must be >= 1"):
        scaler.scale_spans(source, str(tmp_path / "x"), factor=0)
