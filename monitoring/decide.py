"""Automatic canary decision: promote, roll back (abort) or keep waiting.

`evaluate` is one look at the live canary (the `stable`/`canary` labels of the
server's model config file, its `deploy` execution in ML Metadata):

1. evidence, all read from what happened:
   * live accuracy per version: late labels (CSV `request_id,label`, a file
     or a directory of files) joined to the predictions the server logged
     since the deploy (`quality.join`);
   * the A/B test of `ab.verdict` (one-sided two-proportion z-test, at least
     `min_samples` labelled predictions per version);
   * guard rails from the server's Prometheus metrics (per-version series,
     cumulative since each version loaded): the canary's error rate or p99
     latency much worse than the stable version's (`Policy`), with at least
     `min_requests` canary requests;
2. decision, in this order:
   * a guard rail fires -> `abort` at once (no need to wait for labels);
   * the A/B verdict is `rollback` -> `abort`;
   * the A/B verdict is `promote` -> `promote`;
   * insufficient data: when this is the `max_checks`-th look since the deploy
     (earlier looks are recorded `hold` executions) or `max_seconds` have
     passed since the deploy -> `abort` with reason "insufficient evidence"
     (policy: a canary never becomes stable by default; the stable version
     keeps serving); otherwise `hold`.
3. every decision (also `hold`) is an execution of type `Canary` in ML
   Metadata with the reason and the figures (both versions' n and accuracy,
   z, p, guard-rail values), and an A/B report (monitoring/ab_report.py) is
   written to `<report_dir>/ab-<unix s>-<action>/`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import lineage
from monitoring import (
    ab,
    ab_report,
    canary,
    config,
    quality,
    request_logs,
    rollback,
    server_metrics,
)


@dataclasses.dataclass
class Policy:
    min_samples: int = config.MIN_SAMPLES
    alpha: float = config.ALPHA
    max_checks: int = config.CANARY_MAX_CHECKS
    max_seconds: float = config.CANARY_MAX_SECONDS
    min_requests: int = 50  # canary requests before a guard rail may fire
    error_rate_ratio: float = 2.0  # canary error rate above ratio x stable's ...
    error_rate_margin: float = 0.02  # ... and above stable's + margin
    p99_ratio: float = 2.0  # canary p99 above ratio x stable's ...
    p99_margin_ms: float = 50.0  # ... and above stable's + margin


@dataclasses.dataclass
class Decision:
    action: str  # promote | abort | hold
    reason: str
    figures: dict
    report: dict
    report_paths: dict
    execution_id: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)


def guard_rails(serving: dict, stable: str, candidate: str, policy: Policy) -> list[str]:
    """Reasons to roll back at once from per-version serving metrics (empty: none)."""
    s, c = serving.get(stable), serving.get(candidate)
    if not s or not c or c["requests"] < policy.min_requests:
        return []
    fired = []
    s_rate = s["errors"] / s["requests"] if s["requests"] else 0.0
    c_rate = c["errors"] / c["requests"]
    if c_rate > max(policy.error_rate_ratio * s_rate, s_rate + policy.error_rate_margin):
        fired.append(
            f"canary error rate {c_rate:.4f} vs stable {s_rate:.4f} "
            f"(limit: > {policy.error_rate_ratio}x and > +{policy.error_rate_margin})"
        )
    s_p99, c_p99 = s.get("p99_ms"), c.get("p99_ms")
    if c_p99 is not None and s_p99 is not None and not math.isinf(s_p99):
        if c_p99 > max(policy.p99_ratio * s_p99, s_p99 + policy.p99_margin_ms):
            fired.append(
                f"canary p99 {c_p99:g} ms vs stable {s_p99:g} ms "
                f"(limit: > {policy.p99_ratio}x and > +{policy.p99_margin_ms} ms)"
            )
    return fired


def _figures(result: dict, serving: dict, stable: str, candidate: str) -> dict:
    figures = {"verdict": result["verdict"], "z": result["z"], "p_value": result["p_value"]}
    for role, version in (("stable", stable), ("canary", candidate)):
        figures[f"{role}_version"] = version
        figures[f"{role}_n"] = result[role]["labelled"]
        figures[f"{role}_accuracy"] = result[role]["accuracy"]
        m = serving.get(version, {})
        figures[f"{role}_requests"] = m.get("requests")
        figures[f"{role}_errors"] = m.get("errors")
        figures[f"{role}_p99_ms"] = m.get("p99_ms")
    return figures


def evaluate(
    metadata: str | lineage.Metadata,
    config_file: str,
    model_name: str,
    logs: str,
    labels: str,
    *,
    metrics_text: str | None = None,
    policy: Policy | None = None,
    report_dir: str,
    requested_by: str = "monitor watch",
    now: float | None = None,
) -> Decision | None:
    """One look at the live canary (None: no canary is deployed); see the module doc.

    Raises:
      canary.CanaryError: the decision could not be carried out or recorded.
      OSError: the labels cannot be read.
    """
    policy = policy or Policy()
    now = time.time() if now is None else now
    metadata = rollback.writable(metadata)
    live = canary.deployed(metadata, config_file, model_name)
    if live is None:
        return None
    stable, candidate = str(live["stable"]), str(live["candidate"])
    problems = []
    label_set = quality.read_labels_path(labels)
    window = request_logs.read_window(logs, float("-inf"), float("inf"))
    problems += window.problems
    if not window.files:
        problems.append(f"no request log files match {logs!r}")
    # Log timestamps are whole seconds: the deploy's second belongs to the canary's window.
    start = math.floor(live["deployed_at"])
    joined = quality.join(window.predictions, label_set, start, math.inf)
    problems += joined["problems"]
    counts = dict(joined["counts"], malformed_log_records=window.malformed)
    per_version = joined["versions"]

    def counts_of(version):
        m = per_version.get(version)
        if not m or not m["labelled"]:
            return (0, 0)
        return (round(m["accuracy"] * m["labelled"]), m["labelled"])

    result = ab.verdict(counts_of(stable), counts_of(candidate), policy.min_samples, policy.alpha)
    serving = {}
    if metrics_text is not None:
        try:
            serving = server_metrics.version_summary(metrics_text, model_name)
        except ValueError as e:
            problems.append(f"server metrics: unparsable exposition ({e})")
    fired = guard_rails(serving, stable, candidate, policy)
    looks = len(live["holds"]) + 1
    elapsed = now - live["deployed_at"]
    if fired:
        action, reason = "abort", "guard rail: " + "; ".join(fired)
    elif result["verdict"] == "rollback":
        action = "abort"
        reason = f"A/B: canary accuracy lower (z={result['z']:.3f}, p={result['p_value']:.4f})"
    elif result["verdict"] == "promote":
        action = "promote"
        reason = (
            f"A/B: canary not worse (z={result['z']:.3f}, p={result['p_value']:.4f}, "
            f"n={result['stable']['labelled']}/{result['canary']['labelled']})"
        )
    elif looks >= policy.max_checks or elapsed >= policy.max_seconds:
        action = "abort"
        reason = (
            f"insufficient evidence after {looks} checks and {elapsed:.0f} s "
            f"(labelled stable/canary {result['stable']['labelled']}/"
            f"{result['canary']['labelled']}, need {policy.min_samples} each)"
        )
    else:
        action = "hold"
        reason = (
            f"insufficient data, check {looks} of {policy.max_checks} "
            f"(labelled stable/canary {result['stable']['labelled']}/"
            f"{result['canary']['labelled']}, need {policy.min_samples} each)"
        )
    figures = _figures(result, serving, stable, candidate)
    figures.update(check=looks, elapsed_s=round(elapsed, 1), guard_rails="; ".join(fired) or "none")
    if action == "hold":
        done = canary.hold(metadata, config_file, model_name, reason, requested_by, figures)
    else:
        done = canary.finish(
            metadata, config_file, model_name, action, reason, requested_by, figures
        )
    report = ab_report.build(
        result,
        {"stable": stable, "canary": candidate},
        serving,
        {
            "decision": action,
            "reason": reason,
            "execution_id": done["execution_id"],
            "deploy_execution_id": live["deploy_id"],
            "deployed_at": live["deployed_at"],
            "guard_rails": fired,
            "counts": counts,
            "problems": problems,
        },
    )
    paths = ab_report.write(os.path.join(report_dir, f"ab-{int(now)}-{action}"), report)
    return Decision(action, reason, figures, report, paths, done["execution_id"], problems)
