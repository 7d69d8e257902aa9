"""Plain functions behind the behavioral checks: cases, running them, the report.

Three kinds of hand-written cases (Ribeiro et al., "Beyond Accuracy:
Behavioral Testing of NLP Models with CheckList", 2020):

* minimum functionality: an obvious input must get a probability in a range;
* invariance: changing a feature that should not matter moves the
  probability by at most ``max_delta`` (max - min over the variants);
* directional: a change must move the probability the expected way by at
  least ``min_delta``.

A predict function maps a list of raw rows (feature name -> value; a missing
feature is absent, None, NaN or "", for every type) to one probability per row.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

Row = dict[str, object]
PredictFn = Callable[[list[Row]], list[float]]

# A short daytime credit-card trip downtown (the README's example request).
BASE_TRIP: Row = {
    "trip_miles": 1.2,
    "fare": 6.5,
    "trip_seconds": 420.0,
    "payment_type": "Credit Card",
    "company": "Taxi Affiliation Services",
    "trip_start_hour": 9,
    "trip_start_day": 3,
    "trip_start_month": 5,
    "pickup_latitude": 41.88,
    "pickup_longitude": -87.63,
    "dropoff_latitude": 41.9,
    "dropoff_longitude": -87.62,
    "pickup_community_area": 32,
    "dropoff_community_area": 8,
    "dropoff_census_tract": 17031081500,
}


@dataclasses.dataclass(frozen=True)
class MinimumFunctionality:
    """``low <= p(row) <= high``."""

    name: str
    changes: Row
    low: float = 0.0
    high: float = 1.0
    kind: str = "minimum functionality"

    def rows(self, base: Row) -> list[Row]:
        return [{**base, **self.changes}]

    def judge(self, probabilities: list[float]) -> tuple[bool, str, str]:
        p = probabilities[0]
        ok = math.isfinite(p) and self.low <= p <= self.high
        return ok, f"{self.low:.2f} <= p <= {self.high:.2f}", f"p = {p:.4f}"


@dataclasses.dataclass(frozen=True)
class Invariance:
    """``max - min`` of p over the variants of ``key`` is at most ``max_delta``."""

    name: str
    key: str
    values: tuple
    max_delta: float
    kind: str = "invariance"

    def rows(self, base: Row) -> list[Row]:
        return [{**base, self.key: value} for value in self.values]

    def judge(self, probabilities: list[float]) -> tuple[bool, str, str]:
        spread = max(probabilities) - min(probabilities)
        got = ", ".join(f"{v!r}: {p:.4f}" for v, p in zip(self.values, probabilities, strict=True))
        ok = all(map(math.isfinite, probabilities)) and spread <= self.max_delta
        return ok, f"spread <= {self.max_delta:.2f}", f"spread = {spread:.4f} ({got})"


@dataclasses.dataclass(frozen=True)
class Directional:
    """``p(base + changes) - p(base)`` has the sign of ``direction`` and size >= ``min_delta``."""

    name: str
    changes: Row
    direction: str  # "lower" or "higher"
    min_delta: float = 0.0
    kind: str = "directional"

    def rows(self, base: Row) -> list[Row]:
        return [dict(base), {**base, **self.changes}]

    def judge(self, probabilities: list[float]) -> tuple[bool, str, str]:
        before, after = probabilities
        delta = after - before
        signed = -delta if self.direction == "lower" else delta
        ok = math.isfinite(delta) and signed >= self.min_delta and signed > 0
        expected = f"p {self.direction} by >= {self.min_delta:.2f}"
        return ok, expected, f"p {before:.4f} -> {after:.4f} (change {delta:+.4f})"


Case = MinimumFunctionality | Invariance | Directional


def default_cases() -> list[Case]:
    """The hand-written cases the pipeline gates on.

    Tolerances are deliberately loose: the gate catches a broken model (wrong
    feature wiring, label leak, inverted payment effect), not a weak one; the
    Evaluator's thresholds judge quality.
    """
    cash = {"payment_type": "Cash"}
    return [
        # Cash tips are not recorded, so a cash trip is (almost) never a big tipper.
        MinimumFunctionality("cash trip is not a big tipper", cash, high=0.5),
        MinimumFunctionality(
            "long cash trip is not a big tipper",
            {**cash, "trip_miles": 15.0, "fare": 40.0, "trip_seconds": 2400.0},
            high=0.5,
        ),
        MinimumFunctionality(
            "all optional features missing still gives a probability",
            {
                "company": "",
                "pickup_latitude": math.nan,
                "pickup_longitude": math.nan,
                "dropoff_latitude": math.nan,
                "dropoff_longitude": math.nan,
                "pickup_community_area": None,
                "dropoff_community_area": None,
                "dropoff_census_tract": math.nan,
                "trip_seconds": None,
            },
        ),
        Directional(
            "cash instead of credit card lowers the tip probability",
            cash,
            "lower",
            min_delta=0.05,
        ),
        Invariance(
            "company name barely matters",
            "company",
            ("Taxi Affiliation Services", "Blue Ribbon Taxi Association Inc.", "Unknown Co", ""),
            max_delta=0.15,
        ),
        Invariance(
            "dropoff census tract barely matters",
            "dropoff_census_tract",
            (17031081500, 17031320100, 17031839100, 17031280100),
            max_delta=0.15,
        ),
    ]


def run_cases(predict: PredictFn, cases: Sequence[Case], base: Row | None = None) -> dict:
    """Runs every case in one batch; returns the JSON-able report.

    Returns:
      ``{"passed": bool, "failed": int, "cases": [{"name", "kind", "passed",
      "expected", "got"}, ...]}``.
    """
    base = dict(BASE_TRIP if base is None else base)
    batches = [case.rows(base) for case in cases]
    flat = [row for rows in batches for row in rows]
    probabilities = [float(p) for p in predict(flat)] if flat else []
    results, start = [], 0
    for case, rows in zip(cases, batches, strict=True):
        ok, expected, got = case.judge(probabilities[start : start + len(rows)])
        start += len(rows)
        results.append(
            {
                "name": case.name,
                "kind": case.kind,
                "passed": bool(ok),
                "expected": expected,
                "got": got,
            }
        )
    failed = sum(not r["passed"] for r in results)
    return {"passed": failed == 0, "failed": failed, "cases": results}


def format_report(report: dict) -> list[str]:
    """One line per failed case (kind, name, expected vs got); empty if all passed."""
    return [
        f"{case['kind']}: {case['name']}: expected {case['expected']}, got {case['got']}"
        for case in report.get("cases", [])
        if not case["passed"]
    ]


def load_predict_fn(saved_model_dir: str, signature: str = "serving_default") -> PredictFn:
    """Predict function over a SavedModel's raw-feature signature.

    Every input of the signature is fed as a [batch] tensor, encoded exactly
    as `serving-client` encodes a request (``serving.client.build_instance``):
    a feature a row lacks is NaN (float inputs, including the taxi model's
    float64 integers) or "" (strings), i.e. missing.
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    from serving.client import build_instance, instance_columns

    fn = tf.saved_model.load(saved_model_dir).signatures[signature]
    specs = fn.structured_input_signature[1]
    dtypes = {
        key: types_pb2.DataType.Name(spec.dtype.as_datatype_enum) for key, spec in specs.items()
    }

    def predict(rows: list[Row]) -> list[float]:
        columns = instance_columns([build_instance(row, dtypes) for row in rows], dtypes)
        inputs = {key: tf.constant(columns[key], specs[key].dtype) for key in specs}
        output = fn(**inputs)["probabilities"]
        return [float(p) for p in np.reshape(output.numpy(), [-1])]

    return predict
