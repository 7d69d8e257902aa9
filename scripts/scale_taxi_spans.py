"""Writes k-times copies of the taxi spans: same columns, jittered fares and miles.

For a benchmark of how the pipeline scales with data volume. Each output
span ``span-<N>/data.csv`` holds ``factor`` passes over the source span's
rows, in source order: pass 0 is the source rows unchanged (so the 1x output
is the source data), every later pass jitters each row's ``fare`` and
``tips`` by one factor in [0.9, 1.1] (the big-tip label, tips > 20% of the
fare, mostly survives) and its ``trip_miles`` by another, rounded to cents.

Every copy of a source row lands in the source row's split: ExampleGen splits
by a hash of the whole record (``components.example_gen.executor.split_index``),
so a jittered copy is redrawn until its hash falls in the same split (a copy
that misses 200 times stays an exact duplicate, which always does). Without
this, near-duplicates of training rows would sit in eval and test, and a
model trained for epochs on the scaled data would be graded on rows it has
memorised.

Deterministic: the same source, factor and seed give the same bytes. Memory
holds one source span (rows are written as they are made). Usage::

    python scripts/scale_taxi_spans.py --factor 10 --out /tmp/taxi-10x [--src data/taxi]
"""

from __future__ import annotations

import core.env  # noqa: F401 - first: legacy Keras before TensorFlow (scripts/ is no package)

# isort: split

import argparse
import csv
import multiprocessing
import os
import time

import numpy as np
import pyarrow as pa

from components.example_gen import executor as example_gen
from core import resources
from pipeline import configs, data_check

PRICE_COLUMNS = ("fare", "tips")  # scaled together: the tip share stays
DISTANCE_COLUMNS = ("trip_miles",)
JITTER = 0.1
MAX_DRAWS = 200


def _buckets() -> list[int]:
    return list(np.cumsum(list(configs.SPLIT_BUCKETS.values())))


def _jittered(values: list, factors: np.ndarray) -> list:
    """String numbers times ``factors``, rounded to cents; empty cells stay empty."""
    return [
        None if v is None else f"{max(0.0, float(v) * f):.2f}"
        for v, f in zip(values, factors, strict=True)
    ]


def _splits(columns: dict[str, list], types: dict, buckets: list[int]) -> np.ndarray:
    """ExampleGen's split of every row of ``columns`` (string cells, None = empty)."""
    block = pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return np.array(
        [example_gen.split_index(r, buckets) for r in example_gen.encode_block(block, types)]
    )


def scaled_passes(source: dict[str, list], factor: int, seed: int, span: int):
    """Yields ``factor`` passes over ``source`` (column -> string cells), pass 0 unchanged.

    In every pass each row is in the same split as its source row (see the
    module docstring).
    """
    buckets = _buckets()
    names = list(source)
    block = pa.RecordBatch.from_pydict({k: pa.array(v, pa.string()) for k, v in source.items()})
    types = example_gen.merge_types([{k: example_gen.column_type(block.column(k)) for k in names}])
    jittered = [
        k
        for k in (*PRICE_COLUMNS, *DISTANCE_COLUMNS)
        if k in source and types[k] == example_gen.ColumnType.FLOAT
    ]
    target = _splits(source, types, buckets)
    n = len(target)
    yield source
    for copy in range(1, factor):
        rng = np.random.default_rng([seed, span, copy])
        out = {k: list(v) for k, v in source.items()}
        pending = np.arange(n)
        for _ in range(MAX_DRAWS):
            if not len(pending):
                break
            price = rng.uniform(1 - JITTER, 1 + JITTER, len(pending))
            distance = rng.uniform(1 - JITTER, 1 + JITTER, len(pending))
            draw = {k: [source[k][i] for i in pending] for k in names}
            for k in jittered:
                draw[k] = _jittered(draw[k], price if k in PRICE_COLUMNS else distance)
            kept = _splits(draw, types, buckets) == target[pending]
            for k in jittered:
                for i, value, ok in zip(pending, draw[k], kept, strict=True):
                    if ok:
                        out[k][i] = value
            pending = pending[~kept]
        # Rows still pending keep their source values: an exact copy, same split.
        yield out


def read_span(path: str) -> tuple[list[str], dict[str, list]]:
    """(header, column -> string cells with None for empty) of one CSV file."""
    from components.example_gen.executor import read_blocks

    with open(path, newline="") as f:
        header = next(csv.reader(f))
    table = pa.Table.from_batches(list(read_blocks(path, header)))
    return header, {k: table.column(k).to_pylist() for k in header}


def _write_span(job: tuple[str, int, str, int, int]) -> tuple[int, int]:
    """Writes one scaled span (``(source file, span, out, factor, seed)``); (span, rows)."""
    path, span, out, factor, seed = job
    header, columns = read_span(path)
    target = os.path.join(out, f"span-{span}")
    os.makedirs(target, exist_ok=True)
    rows = 0
    tmp = os.path.join(target, "data.csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for chunk in scaled_passes(columns, factor, seed, span):
            cells = zip(*(chunk[k] for k in header), strict=True)
            writer.writerows(["" if v is None else v for v in row] for row in cells)
            rows += len(chunk[header[0]])
    os.replace(tmp, os.path.join(target, "data.csv"))
    return span, rows


def scale_spans(
    src: str, out: str, factor: int, seed: int = 0, processes: int = 1
) -> dict[int, int]:
    """Writes ``out/span-<N>/data.csv`` for every span of ``src``; returns span -> rows.

    Spans are independent (each pass is seeded by seed, span and pass), so
    with ``processes`` > 1 they are written by that many worker processes, the
    largest source first; the bytes do not depend on the number of workers.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    jobs = []
    for span, folder in data_check.list_spans(src).items():
        [path] = data_check.span_files(folder)
        jobs.append((path, span, out, factor, seed))
    jobs.sort(key=lambda job: -os.path.getsize(job[0]))
    processes = min(len(jobs), processes)
    if processes <= 1:
        done = [_write_span(job) for job in jobs]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            done = pool.map(_write_span, jobs, chunksize=1)
    return dict(sorted(done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, required=True, help="copies of every source row")
    parser.add_argument("--out", required=True, help="folder for span-<N>/data.csv")
    parser.add_argument("--src", default=resources.data_root())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="spans written side by side"
    )
    args = parser.parse_args()
    started = time.time()
    spans = scale_spans(args.src, args.out, args.factor, args.seed, args.processes)
    for span, rows in spans.items():
        print(f"{args.out}/span-{span}: {rows} rows")
    print(f"{time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
