"""Constants and helpers shared by the reporting tests and their conftest.

(A module of its own: ``from conftest import ...`` is ambiguous once
``tests/conftest.py`` exists too.)
"""

from __future__ import annotations

import csv
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAD_PAYMENT_TYPE = "Bitcoin"
BAD_HOUR = "30"


def write_anomalous_span(source_csv: str, target_csv: str) -> None:
    """A copy of ``source_csv`` with a bad payment type and hour in many rows."""
    with open(source_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    os.makedirs(os.path.dirname(target_csv), exist_ok=True)
    with open(target_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for i, row in enumerate(rows):
            if i % 3 == 0:
                row["payment_type"] = BAD_PAYMENT_TYPE
            if i % 4 == 0:
                row["trip_start_hour"] = BAD_HOUR
            writer.writerow(row)
