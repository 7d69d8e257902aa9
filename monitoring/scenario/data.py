"""The scenario's data: the history spans, the live traffic parts and the drifted span.

What is written where and the injected drift are described in the package
docstring (monitoring/scenario/__init__.py).
"""

from __future__ import annotations

import csv
import os
import random

from monitoring.scenario.settings import ScenarioError, Settings


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def big_tipper(row: dict) -> int:
    """The pipeline's label: tips > 20% of the fare."""
    return int(float(row["tips"] or 0) > 0.2 * float(row["fare"] or 0))


def inject_drift(rows: list[dict], seed: int = 7) -> list[dict]:
    """The documented drift (module docstring); returns new rows."""
    rng = random.Random(seed)
    drifted = []
    for row in rows:
        row = dict(row)
        if row["trip_miles"]:
            row["trip_miles"] = f"{float(row['trip_miles']) * 1.609:.2f}"
        for column in ("fare", "tips"):
            if row[column]:
                row[column] = f"{float(row[column]) * 1.5:.2f}"
        if row["payment_type"] == "Credit Card" and rng.random() < 0.5:
            row["payment_type"] = "Cash"
        drifted.append(row)
    return drifted


def prepare_data(work: str, settings: Settings, source: str) -> dict:
    """Writes the history spans into `<work>/data`; returns the traffic parts and new span."""
    rng = random.Random(42)
    data = os.path.join(work, "data")
    for span in (2013, 2014):
        rows = read_rows(os.path.join(source, f"span-{span}", "data.csv"))
        if settings.history_rows:
            rows = rng.sample(rows, min(settings.history_rows, len(rows)))
        write_rows(os.path.join(data, f"span-{span}", "data.csv"), rows)
    rows_2015 = read_rows(os.path.join(source, "span-2015", "data.csv"))
    order = list(range(len(rows_2015)))
    rng.shuffle(order)
    a, b = settings.normal_rows, settings.normal_rows + settings.drift_rows
    c = b + settings.canary_rows
    if len(order) < c:
        raise ScenarioError(f"span-2015 has {len(order)} rows, {c} needed")
    live = [rows_2015[i] for i in order[:c]]
    # The labelled data of the drifted period: the 2016 rows and the 2015 rows not
    # sent as traffic, all with the drift.
    traffic = set(order[:c])
    unused = [r for i, r in enumerate(rows_2015) if i not in traffic]
    new_span = inject_drift(
        read_rows(os.path.join(source, "span-2016", "data.csv")) + unused, seed=8
    )
    return {
        "normal": live[:a],
        "drift": inject_drift(live[a:b]),
        "canary": inject_drift(live[b:c], seed=9),
        "new_span": new_span,
    }
