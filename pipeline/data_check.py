"""Checks raw span folders before any TFX component sees them.

ExampleGen's own errors on bad CSV are Beam stack traces; these checks name
the file, line and column instead. Arrow's CSV reader checks a file first, a
block at a time (about 1 s per million rows); only a file it finds fault with
is read again row by row in Python, for the exact line and column.
"""

from __future__ import annotations

import csv
import math
import os
import re

from tensorflow_metadata.proto.v0 import schema_pb2

SPAN_DIR = re.compile(r"^span-(\d+)$")


class DataError(ValueError):
    """Raw data that cannot be ingested; the message says what and where."""


def list_spans(data_root: str) -> dict[int, str]:
    """Maps span number -> folder for every ``span-<N>`` folder in ``data_root``."""
    if not os.path.exists(data_root):
        raise DataError(f"data dir does not exist: {data_root}")
    if not os.path.isdir(data_root):
        raise DataError(f"data dir is not a directory: {data_root}")
    try:
        names = os.listdir(data_root)
    except OSError as e:
        raise DataError(f"data dir is not readable: {data_root} ({e.strerror})") from e
    spans = {}
    for name in names:
        match = SPAN_DIR.match(name)
        if match and os.path.isdir(os.path.join(data_root, name)):
            spans[int(match.group(1))] = os.path.join(data_root, name)
    if not spans:
        raise DataError(f"no span-<N> folders in data dir {data_root}")
    return dict(sorted(spans.items()))


def span_files(folder: str) -> list[str]:
    """The CSV files of one span folder, sorted."""
    try:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".csv"))
    except OSError as e:
        raise DataError(f"span folder is not readable: {folder} ({e.strerror})") from e
    if not files:
        raise DataError(f"no .csv file in span folder {folder}")
    return [os.path.join(folder, f) for f in files]


def _parses_as(value: str, feature_type: int) -> bool:
    if feature_type == schema_pb2.INT:
        try:
            int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return False
            return math.isfinite(number) and number.is_integer()
        return True
    if feature_type == schema_pb2.FLOAT:
        try:
            float(value)
        except ValueError:
            return False
        return True
    return True


def _arrow_rows(path: str, header: list[str], typed: list[tuple[int, str, int]]) -> int | None:
    """Data rows of ``path`` if Arrow finds no fault (``check_csv``'s rules), else None.

    None also when Arrow cannot parse the file (field counts, encoding,
    quoting): the Python reader then finds and names the problem. Every value
    Arrow accepts here, the Python rules accept too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pa_csv

    numeric = [(i, kind) for i, _, kind in typed if kind in (schema_pb2.INT, schema_pb2.FLOAT)]
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(
                column_names=[f"c{i}" for i in range(len(header))], skip_rows=1
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"c{i}": pa.string() for i in range(len(header))},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        rows = 0
        for block in reader:
            rows += block.num_rows
            filled = pa.array([0] * block.num_rows, pa.int64())
            for column in block.columns:
                filled = pc.add(filled, pc.cast(pc.is_valid(column), pa.int64()))
            if block.num_rows and pc.min(filled).as_py() == 0:
                return None  # a blank line (Arrow reads it as a row of empty cells)
            for i, kind in numeric:
                numbers = pc.cast(block.column(i).drop_null(), pa.float64())
                ok = pc.is_finite(numbers) if kind == schema_pb2.INT else None
                if ok is not None:
                    ok = pc.and_(ok, pc.equal(pc.floor(numbers), numbers))
                    if pc.all(ok).as_py() is False:
                        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, OSError):
        return None
    return rows


def check_csv(path: str, schema: schema_pb2.Schema, max_errors: int = 10) -> int:
    """Validates one CSV file's structure against ``schema``.

    Checks that the file is readable and non-empty, the header has every
    column the schema requires in the TRAINING environment (the label source
    included), every row has as many fields as the header, and numeric
    columns hold numbers.

    Returns:
      The number of data rows.

    Raises:
      DataError: naming the file, line and column of up to ``max_errors``
        problems.
    """
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from e
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: file is empty (no header row)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}: line 1: unreadable header ({e})") from e
        known = {feature.name: feature for feature in schema.feature}
        missing = [
            name
            for name, feature in known.items()
            if name not in header and _required_in_training(feature)
        ]
        if missing:
            raise DataError(f"{path}: header lacks required column(s) {', '.join(missing)}")
        typed = [(i, name, known[name].type) for i, name in enumerate(header) if name in known]
        rows = _arrow_rows(path, header, typed)
        if rows is not None:
            if rows == 0:
                raise DataError(f"{path}: no data rows after the header")
            return rows
        errors, rows = [], 0
        try:
            for row in reader:
                rows += 1
                line = reader.line_num
                if len(row) != len(header):
                    errors.append(
                        f"{path}: line {line}: {len(row)} fields, header has {len(header)}"
                    )
                else:
                    for i, name, feature_type in typed:
                        value = row[i]
                        if value != "" and not _parses_as(value, feature_type):
                            kind = schema_pb2.FeatureType.Name(feature_type)
                            errors.append(
                                f"{path}: line {line}, column '{name}': {value!r} is not {kind}"
                            )
                if len(errors) >= max_errors:
                    break
        except (csv.Error, UnicodeDecodeError) as e:
            errors.append(f"{path}: line {reader.line_num}: unreadable ({e})")
    if errors:
        raise DataError("malformed CSV:\n  - " + "\n  - ".join(errors))
    if rows == 0:
        raise DataError(f"{path}: no data rows after the header")
    return rows


def _required_in_training(feature: schema_pb2.Feature) -> bool:
    in_training = "TRAINING" not in feature.not_in_environment
    return in_training and feature.presence.min_fraction >= 1.0


def check_span(folder: str, schema: schema_pb2.Schema) -> int:
    """Checks every CSV of a span folder; returns the row count."""
    return sum(check_csv(path, schema) for path in span_files(folder))
