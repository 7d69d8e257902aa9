"""Raw-data checks: every kind of bad input gets an error naming file/line/column."""

import os
import shutil

import pytest

from pipeline import data_check
from pipeline.run_summary import load_schema

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = load_schema(os.path.join(REPO_ROOT, "data", "schema"))
GOOD = os.path.join(REPO_ROOT, "data", "taxi", "span-2016", "data.csv")


def _lines(n=20):
    with open(GOOD) as f:
        return [next(f) for _ in range(n + 1)]


def _with_value(lines, line_index, column, value):
    """``lines`` with ``column`` of line ``line_index`` set to ``value``."""
    header = lines[0].rstrip("\n").split(",")
    row = lines[line_index].rstrip("\n").split(",")
    row[header.index(column)] = value
    return [*lines[:line_index], ",".join(row) + "\n", *lines[line_index + 1 :]]


def _write(tmp_path, lines, name="data.csv"):
    span = tmp_path / "span-1"
    span.mkdir(exist_ok=True)
    (span / name).write_text("".join(lines))
    return str(span / name)


def test_bundled_spans_are_clean():
    spans = data_check.list_spans(os.path.join(REPO_ROOT, "data", "taxi"))
    assert list(spans) == [2013, 2014, 2015, 2016]
    assert sum(data_check.check_span(folder, SCHEMA) for folder in spans.values()) == 15002


def test_row_with_wrong_field_count_names_file_and_line(tmp_path):
    lines = _lines()
    lines[5] = lines[5].rstrip("\n") + ",extra\n"
    path = _write(tmp_path, lines)
    with pytest.raises(data_check.DataError, match=r"data.csv: line 6: 19 fields, header has 18"):
        data_check.check_csv(path, SCHEMA)


def test_string_in_numeric_column_names_column(tmp_path):
    path = _write(tmp_path, _with_value(_lines(), 3, "fare", "twelve"))
    with pytest.raises(data_check.DataError, match=r"line 4, column 'fare': 'twelve' is not FLOAT"):
        data_check.check_csv(path, SCHEMA)


def test_fractional_value_in_int_column(tmp_path):
    lines = _with_value(_lines(), 2, "trip_start_hour", "3.5")
    with pytest.raises(data_check.DataError, match="column 'trip_start_hour': '3.5' is not INT"):
        data_check.check_csv(_write(tmp_path, lines), SCHEMA)


@pytest.mark.parametrize("column", ["fare", "tips"])
def test_missing_required_column(tmp_path, column):
    lines = _lines()
    index = lines[0].rstrip("\n").split(",").index(column)
    lines = [
        ",".join(v for i, v in enumerate(line.rstrip("\n").split(",")) if i != index) + "\n"
        for line in lines
    ]
    with pytest.raises(data_check.DataError, match=f"header lacks required column.*{column}"):
        data_check.check_csv(_write(tmp_path, lines), SCHEMA)


def test_empty_file(tmp_path):
    with pytest.raises(data_check.DataError, match="file is empty"):
        data_check.check_csv(_write(tmp_path, []), SCHEMA)


def test_header_only(tmp_path):
    with pytest.raises(data_check.DataError, match="no data rows"):
        data_check.check_csv(_write(tmp_path, _lines(0)), SCHEMA)


def test_missing_data_dir(tmp_path):
    with pytest.raises(data_check.DataError, match="data dir does not exist"):
        data_check.list_spans(str(tmp_path / "nope"))


def test_data_dir_without_spans(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(data_check.DataError, match="no span-<N> folders"):
        data_check.list_spans(str(tmp_path))


def test_span_without_csv(tmp_path):
    (tmp_path / "span-3").mkdir()
    with pytest.raises(data_check.DataError, match="no .csv file"):
        data_check.check_span(str(tmp_path / "span-3"), SCHEMA)


def test_unreadable_data_dir(tmp_path, monkeypatch):
    # Tests run as root in CI, where chmod cannot make a folder unreadable.
    def deny(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "listdir", deny)
    with pytest.raises(data_check.DataError, match="data dir is not readable.*Permission denied"):
        data_check.list_spans(str(tmp_path))


def test_unreadable_file_is_reported(tmp_path):
    path = _write(tmp_path, _lines())
    shutil.rmtree(path, ignore_errors=True)
    os.remove(path)
    os.mkdir(path)  # a directory where a CSV file should be
    with pytest.raises(data_check.DataError, match="cannot open"):
        data_check.check_csv(path, SCHEMA)


def test_clean_files_are_checked_by_arrow_without_the_row_loop(monkeypatch):
    # A clean file never reaches the per-value Python rules...
    def not_called(*_):
        raise AssertionError("the Python row loop ran on a clean file")

    monkeypatch.setattr(data_check, "_parses_as", not_called)
    assert data_check.check_csv(GOOD, SCHEMA) == 833


@pytest.mark.parametrize(
    ("value", "ok"),
    [("7", True), ("7.0", True), (" 7", True), ("7.5", False), ("nan", False), ("inf", False)],
)
def test_arrow_and_python_agree_on_int_values(tmp_path, value, ok):
    # ... and a file Arrow doubts gets the Python verdict (" 7" is an int to Python).
    path = _write(tmp_path, _with_value(_lines(), 2, "trip_start_hour", value))
    if ok:
        assert data_check.check_csv(path, SCHEMA) == 20
    else:
        with pytest.raises(data_check.DataError, match="'trip_start_hour'.* is not INT"):
            data_check.check_csv(path, SCHEMA)


def test_blank_line_is_an_error_as_before(tmp_path):
    lines = _lines()
    lines.insert(4, "\n")
    with pytest.raises(data_check.DataError, match="line 5: 0 fields, header has 18"):
        data_check.check_csv(_write(tmp_path, lines), SCHEMA)
