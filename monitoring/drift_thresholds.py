"""Skew and drift thresholds that account for the size of a window.

A window of a few hundred served rows is a small sample: its histogram
differs from the training histogram by sampling noise alone, and TFDV's
distances (L-infinity for categorical features, Jensen-Shannon divergence
for numeric ones) grow as the window shrinks. A fixed threshold therefore
raises alarms on perfectly normal traffic (measured on the bundled data: with
0.1 for every feature and TFDV's default histograms, 100% of 400-row windows
drawn from the training distribution itself alerted).

The null distribution of each distance is measured by resampling: windows of
``n`` rows drawn from held-out rows of the training spans are compared with
the statistics of the other training rows (skew) and with another such
window (drift, window vs previous window). A feature's threshold at size
``n`` is ``max(base, q(n))``, where ``q(n)`` is set from the null
distances at that size so that a null window alerts on any feature with
probability at most ``FAMILY_RATE`` (:func:`null_table`), interpolated in ``1/sqrt(n)`` between the measured
sizes (and scaled by ``sqrt(n0/n)`` outside them, as sampling noise does);
``base`` (0.1) stays the floor, so a large window still alerts only on a
change that matters. The measured table is a JSON file written and read here
(``NULL_TABLE``, made from the bundled spans by
``python -m monitoring.drift_thresholds``); re-run it for other data.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import sys
import zlib

from tensorflow_metadata.proto.v0 import schema_pb2

from core import resources
from monitoring import config, drift
from monitoring.features import is_categorical

NULL_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drift_null.json")
DEFAULT_SIZES = (100, 400, 1600)
FAMILY_RATE = 0.05  # null windows with any skew or drift distance over its threshold
TAIL_SHARE = 0.2  # the share of null distances the tail model is fitted to
HOLDOUT_BUCKETS = 2  # of 10: rows whose hash bucket is below this are held out
KINDS = ("skew", "drift")


def is_held_out(index: int) -> bool:
    """The fixed held-out share (20%) of training rows, chosen by a hash of the row index."""
    return zlib.crc32(str(index).encode()) % 10 < HOLDOUT_BUCKETS


def split_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(fit, held_out) rows: the statistics side and the side windows are drawn from."""
    fit, held = [], []
    for i, row in enumerate(rows):
        (held if is_held_out(i) else fit).append(row)
    return fit, held


def distances(validation: drift.Validation, kind: str) -> dict[str, float]:
    """feature -> distance of one kind in a validation."""
    return {f.feature: f.value for f in validation.findings if f.kind == kind}


def measure_null(
    rows: list[dict], schema, sizes=DEFAULT_SIZES, windows: int = 200, seed: int = 0
) -> dict:
    """Null distances of every serving feature at each window size.

    Returns ``{size: [{"skew"|"drift": {feature: distance}} per window]}``:
    each window's skew (against the statistics of the rows not held out) and
    drift (against another window of the same size). The schema must carry
    comparators; their thresholds do not matter (only values are kept).
    """
    fit, held = split_rows(rows)
    training = drift.statistics_from_rows(fit, schema)
    rng = random.Random(seed)
    result = {}
    for size in sizes:
        result[size] = []
        for _ in range(windows):
            # Drawn with replacement: each window is an i.i.d. sample of the training
            # distribution, however small the held-out set is.
            sample = rng.choices(held, k=2 * size)
            current = drift.statistics_from_rows(sample[:size], schema)
            previous = drift.statistics_from_rows(sample[size:], schema)
            validation = drift.validate(current, schema, training=training, previous=previous)
            result[size].append({kind: distances(validation, kind) for kind in KINDS})
    return result


def tail_threshold(values: list[float], rate: float, tail: float = TAIL_SHARE) -> float:
    """The value a null distance exceeds with probability ``rate``.

    Rates far below ``1 / len(values)`` lie beyond the largest measured
    window, so the tail is extrapolated (peaks over a threshold): above its
    ``1 - tail`` quantile ``u``, a distance's excess is taken as exponential
    with the mean measured excess ``b`` (a light, chi-square-like tail as JSD
    and L-infinity have under sampling noise), giving
    ``u + b * ln(tail / rate)``; capped at 1, the largest possible distance.
    """
    ordered = sorted(values)
    position = (1 - tail) * (len(ordered) - 1)  # numpy's "linear" quantile
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    u = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    excess = [v - u for v in ordered if v > u]
    b = statistics.fmean(excess) if excess else 0.0
    return min(1.0, u + b * math.log(tail / rate)) if rate < tail else u


def null_table(null: dict, family_rate: float = FAMILY_RATE) -> dict:
    """``{kind: {feature: {size: threshold}}}`` from :func:`measure_null`'s windows.

    One window checks every feature twice (skew and drift): with ``K`` such
    comparisons, each gets the false-alarm rate ``family_rate / K``
    (Bonferroni), so that a null window alerts on any of them with probability
    at most ``family_rate``; :func:`tail_threshold` turns that rate into a
    distance.
    """
    table = {kind: {} for kind in KINDS}
    for size, windows in sorted(null.items()):
        measured = {}
        for window in windows:
            for kind in KINDS:
                for feature, value in window[kind].items():
                    measured.setdefault((kind, feature), []).append(value)
        rate = family_rate / len(measured)
        for (kind, feature), values in sorted(measured.items()):
            threshold = tail_threshold(values, rate)
            table[kind].setdefault(feature, {})[str(size)] = round(threshold, 4)
    return table


def write_table(table: dict, path: str, provenance: dict) -> None:
    """Writes the null table (with how it was made) as JSON, atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"provenance": provenance, "thresholds": table}, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_table(path: str = NULL_TABLE) -> dict:
    """The ``{kind: {feature: {size: q}}}`` table of a file written by :func:`write_table`."""
    with open(path) as f:
        content = json.load(f)
    try:
        table = content["thresholds"]
        return {
            kind: {
                feature: {int(size): float(q) for size, q in by_size.items()}
                for feature, by_size in table[kind].items()
            }
            for kind in KINDS
        }
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a drift null table ({e!r})") from e


def null_quantile(by_size: dict[int, float], n: int) -> float:
    """The null quantile at window size ``n``, interpolated in ``1/sqrt(n)``."""
    if n < 1:
        raise ValueError(f"window size must be >= 1, got {n}")
    sizes = sorted(by_size)
    if n <= sizes[0]:
        return by_size[sizes[0]] * math.sqrt(sizes[0] / n)
    if n >= sizes[-1]:
        return by_size[sizes[-1]] * math.sqrt(sizes[-1] / n)
    for low, high in zip(sizes, sizes[1:], strict=False):
        if low <= n <= high:
            x, x0, x1 = (1 / math.sqrt(v) for v in (n, low, high))
            return by_size[low] + (by_size[high] - by_size[low]) * (x - x0) / (x1 - x0)
    raise AssertionError("unreachable")


def thresholds(table: dict, kind: str, n: int, base: dict[str, float]) -> dict[str, float]:
    """feature -> ``max(base, null quantile at n)`` for the features of ``base``.

    A feature without a measured null distribution keeps its base threshold.
    """
    measured = table.get(kind, {})
    return {
        feature: round(max(floor, null_quantile(measured[feature], n)), 4)
        if feature in measured
        else floor
        for feature, floor in base.items()
    }


def window_comparator_schema(
    schema: schema_pb2.Schema,
    window_rows: int,
    previous_rows: int,
    linf: float = config.LINF_THRESHOLD,
    jsd: float = config.JSD_THRESHOLD,
    table: dict | None = None,
) -> schema_pb2.Schema:
    """`drift.comparator_schema` with thresholds for a window of `window_rows` rows.

    Skew (window vs training) uses the null distances at `window_rows`, drift
    (window vs the previous window) those at the smaller of the two windows;
    `linf` / `jsd` are the floors. `table` defaults to the bundled null table.
    """
    table = read_table() if table is None else table
    base = {f.name: (linf if is_categorical(f) else jsd) for f in drift.serving_features(schema)}
    per_kind = {
        "skew": thresholds(table, "skew", max(window_rows, 1), base),
        "drift": thresholds(
            table, "drift", max(min(window_rows, previous_rows or window_rows), 1), base
        ),
    }
    return drift.comparator_schema(schema, linf, jsd, thresholds=per_kind)


def _read_csv_rows(data_root: str, spans: list[int]) -> list[dict]:
    rows = []
    for span in spans:
        with open(os.path.join(data_root, f"span-{span}", "data.csv"), newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def main(argv=None) -> int:
    """Measures the null table of the bundled training spans and writes it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-root", default=resources.data_root())
    parser.add_argument("--schema", default=os.path.join(resources.schema_dir(), "schema.pbtxt"))
    parser.add_argument("--spans", default="2013,2014", help="training spans, comma-separated")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=NULL_TABLE)
    parser.add_argument("--raw", help="also write the measured distances here (JSON)")
    parser.add_argument("--from-raw", help="make the table from distances written by --raw")
    args = parser.parse_args(argv)
    spans = [int(s) for s in args.spans.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    schema = drift.comparator_schema(drift.load_schema(args.schema))
    rows = _read_csv_rows(args.data_root, spans)
    if args.from_raw:
        with open(args.from_raw) as f:
            null = {int(size): windows for size, windows in json.load(f).items()}
    else:
        null = measure_null(rows, schema, sizes, args.windows, args.seed)
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(null, f)
    table = null_table(null)
    provenance = {
        "spans": spans,
        "rows": len(rows),
        "sizes": sizes,
        "windows": args.windows,
        "seed": args.seed,
        "family_rate": FAMILY_RATE,
        "histograms": "TFDV quantile histograms (JSD), top values (L-infinity)",
    }
    write_table(table, args.output, provenance)
    print(f"wrote {args.output}: {len(rows)} rows of spans {spans}, sizes {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
