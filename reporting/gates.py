"""The evidence behind each gate of a training run, as tables and plots.

Read from the run's artifacts (found through ML Metadata): the Tuner's trials
(`TunerResults`), ModelSelection's cross-validation (per fold, with the
confidence intervals and the paired comparison that chose the family), the
held-out test split by slice (TestEvaluator), the behavioral cases
(BehavioralChecks) and the serving canary's probes (InfraCanary). A gate that
did not run in this run is None.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pandas as pd

from lineage import runs as runs_lib
from reporting import model_analysis

TUNER_FILE = "tuner_results.json"
CV_FILE = "cv_result.json"
BEHAVIORAL_FILE = "behavioral_report.json"
CANARY_FILE = "canary_report.json"


@dataclasses.dataclass
class Gates:
    """Evidence of one run; each field is None when that step did not run."""

    tuner: pd.DataFrame | None
    selection: dict | None
    test: pd.DataFrame | None  # TestEvaluator's metrics (model_analysis.load_metrics rows)
    behavioral: dict | None
    canary: dict | None


def _json(artifact, name: str):
    if artifact is None:
        return None
    try:
        with open(os.path.join(artifact.uri, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def tuner_trials(trials: list[dict]) -> pd.DataFrame:
    """One row per trial, best score first (the Tuner maximises the score)."""
    frame = pd.DataFrame(trials)
    if frame.empty:
        return frame
    return frame.sort_values("score", ascending=False).set_index("trial_id")


def fold_table(result: dict) -> pd.DataFrame:
    """Family x fold rows with each fold's metrics."""
    rows = [
        {"family": family, **fold}
        for family, info in result["families"].items()
        for fold in info["folds"]
    ]
    return pd.DataFrame(rows).set_index(["family", "fold"])


def summary_table(result: dict) -> pd.DataFrame:
    """Per family: mean and 95% CI of each metric over the folds."""
    rows = []
    for family, info in result["families"].items():
        row = {"family": family}
        for metric, stats in info["summary"].items():
            row[f"{metric} mean"] = stats["mean"]
            row[f"{metric} 95% CI"] = f"[{stats['ci_low']:.4f}, {stats['ci_high']:.4f}]"
        row["chosen"] = "yes" if family == result["chosen_family"] else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("family")


def comparison_table(result: dict) -> pd.DataFrame:
    """The paired per-fold AUC differences between families."""
    rows = [
        {
            "candidate": c["candidate"],
            "against": c["against"],
            "per-fold differences": ", ".join(f"{d:+.4f}" for d in c["differences"]),
            "mean": c["mean"],
            "95% CI": f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
            "significant": "yes" if c["significant"] else "no",
        }
        for c in result.get("comparisons", [])
    ]
    return pd.DataFrame(rows)


def canary_table(report: dict) -> pd.DataFrame:
    """Probe kind (e.g. rest_predict) -> probes, passed, failed, first failure."""
    rows: dict[str, dict] = {}
    for check in report.get("checks", []):
        kind = re.sub(r"_\d+$", "", check["name"])
        row = rows.setdefault(kind, {"probe": kind, "probes": 0, "passed": 0, "failed": 0})
        row["probes"] += 1
        row["passed" if check["ok"] else "failed"] += 1
        if not check["ok"] and "first failure" not in row:
            row["first failure"] = f"{check['name']}: {check['detail']}"
    return pd.DataFrame(list(rows.values()))


def for_run(store: runs_lib.RunStore, run: runs_lib.Run) -> Gates:
    """The gates' evidence of `run`."""
    trials = _json(store.output(run, "Tuner", "TunerResults"), TUNER_FILE)
    test_evaluation = store.output(run, "TestEvaluator", "ModelEvaluation")
    test = None
    if test_evaluation is not None:
        try:
            test = model_analysis.load_metrics(test_evaluation.uri)
        except (OSError, ValueError):
            test = None
    return Gates(
        tuner=tuner_trials(trials) if isinstance(trials, list) else None,
        selection=_json(store.output(run, "ModelSelection", "taxi.CrossValidationResult"), CV_FILE),
        test=test,
        behavioral=_json(
            store.output(run, "BehavioralChecks", "taxi.BehavioralBlessing"), BEHAVIORAL_FILE
        ),
        canary=_json(store.output(run, "InfraCanary", "InfraBlessing"), CANARY_FILE),
    )


def plot_folds(result: dict):
    """Matplotlib Figure: AUC per fold for each family, with the mean and 95% CI."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    families = list(result["families"])
    fig = Figure(figsize=(6.5, 0.9 + 0.6 * len(families)))
    ax = fig.subplots()
    for y, family in enumerate(families):
        info = result["families"][family]
        aucs = [fold["auc"] for fold in info["folds"]]
        stats = info["summary"]["auc"]
        chosen = family == result["chosen_family"]
        colour = "#1f8a4c" if chosen else "#6b7280"
        ax.plot(aucs, [y] * len(aucs), "o", color=colour, alpha=0.6)
        ax.errorbar(
            stats["mean"],
            y,
            xerr=[[stats["mean"] - stats["ci_low"]], [stats["ci_high"] - stats["mean"]]],
            fmt="s",
            color=colour,
            capsize=5,
        )
    ax.set_yticks(
        range(len(families)),
        [f + (" (chosen)" if f == result["chosen_family"] else "") for f in families],
    )
    ax.set_xlabel("AUC (dots: folds; square and bar: mean and 95% CI)")
    ax.set_ylim(-0.6, len(families) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_trials(trials: pd.DataFrame):
    """Matplotlib Figure: the score of each Tuner trial, best first."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 0.9 + 0.35 * len(trials)))
    ax = fig.subplots()
    labels = [f"trial {t}" for t in trials.index]
    ax.barh(labels[::-1], trials["score"].to_numpy()[::-1], color="#3b6fb6")
    low = float(trials["score"].min())
    ax.set_xlim(max(0.0, low - 0.02), min(1.0, float(trials["score"].max()) + 0.01))
    ax.set_xlabel("objective (validation AUC)")
    fig.tight_layout()
    return fig
