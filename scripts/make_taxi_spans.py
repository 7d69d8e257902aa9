"""Rebuilds ``data/taxi/span-<year>/data.csv`` from the taxi sample in the tfx wheel.

The sample (15,002 rows, 2013-2016) ships inside the installed ``tfx``
package. Rows are grouped by the calendar year of ``trip_start_timestamp``
(UTC) and sorted by timestamp, so the spans are chronological. Run it with the
project's venv: ``python scripts/make_taxi_spans.py [--out data/taxi]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os

import tfx


def source_csv() -> str:
    return os.path.join(
        os.path.dirname(tfx.__file__),
        "examples/chicago_taxi_pipeline/data/simple/data.csv",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/taxi")
    args = parser.parse_args()
    with open(source_csv(), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        ts = header.index("trip_start_timestamp")
        rows = sorted(reader, key=lambda r: int(r[ts]))
    by_year: dict[int, list[list[str]]] = {}
    for row in rows:
        year = datetime.datetime.fromtimestamp(int(row[ts]), datetime.timezone.utc).year
        by_year.setdefault(year, []).append(row)
    for year, year_rows in by_year.items():
        folder = os.path.join(args.out, f"span-{year}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "data.csv"), "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(year_rows)
        print(f"{folder}: {len(year_rows)} rows")


if __name__ == "__main__":
    main()
