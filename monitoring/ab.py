"""A/B verdict for a canary against the stable version on live accuracy.

Test (stated): one-sided two-proportion z-test with pooled variance of
H0 "the canary's accuracy is not lower than the stable version's" against
H1 "it is lower", at level `alpha` (default 0.05). Verdicts:

* `insufficient data`: either version has fewer than `min_samples` labelled
  predictions (default 200) - keep the canary running;
* `rollback`: H0 rejected (z < -z_{1-alpha}): the canary is worse;
* `promote`: not shown worse with the minimum sample.

Accuracy intervals are Wilson 95% score intervals.
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist

from monitoring import config


def wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion, None for n = 0."""
    if n == 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(
    stable: tuple[int, int],
    canary: tuple[int, int],
    min_samples: int = config.MIN_SAMPLES,
    alpha: float = config.ALPHA,
) -> dict:
    """`stable`/`canary` are (correct, labelled). Returns the verdict and its numbers."""
    (cs, ns), (cc, nc) = stable, canary
    result = {
        "stable": {
            "correct": cs,
            "labelled": ns,
            "accuracy": cs / ns if ns else None,
            "ci95": wilson(cs, ns),
        },
        "canary": {
            "correct": cc,
            "labelled": nc,
            "accuracy": cc / nc if nc else None,
            "ci95": wilson(cc, nc),
        },
        "test": "one-sided two-proportion z-test (pooled), H1: canary accuracy lower",
        "alpha": alpha,
        "min_samples": min_samples,
        "z": None,
        "p_value": None,
    }
    if ns < min_samples or nc < min_samples:
        result["verdict"] = "insufficient data"
        return result
    pooled = (cs + cc) / (ns + nc)
    se = math.sqrt(pooled * (1 - pooled) * (1 / ns + 1 / nc))
    difference = cc / nc - cs / ns
    z = (
        difference / se
        if se > 0
        else (0.0 if difference == 0 else math.copysign(math.inf, difference))
    )
    p_value = NormalDist().cdf(z)
    result.update(z=z, p_value=p_value, verdict="rollback" if p_value < alpha else "promote")
    return result


def counts_from_quality(path: str, stable: str, canary: str) -> dict[str, tuple[int, int]]:
    """role -> (correct, labelled) of the stable and canary versions in a `quality` summary.json.

    Raises:
      OSError, ValueError, KeyError, TypeError: unreadable, or a version without labels.
    """
    with open(path) as f:
        versions = json.load(f)["versions"]
    counts = {}
    for role, version in (("stable", str(stable)), ("canary", str(canary))):
        if version not in versions or not versions[version]["labelled"]:
            raise ValueError(f"no labelled predictions of version {version}")
        m = versions[version]
        counts[role] = (round(m["accuracy"] * m["labelled"]), m["labelled"])
    return counts
