"""One run of the embedded alerting: signals -> rules -> incidents -> sinks.

Signals come from a `window` check's summary.json (skew and drift features
above threshold), the server's Prometheus metrics (error rate and p99
latency since the previous run, whose snapshot the state file keeps) and a
`quality` summary.json (live accuracy drop from a baseline). The rules,
incidents and sinks are monitoring/alerts.py; the thresholds default to
monitoring/config.py.
"""

from __future__ import annotations

import dataclasses
import json

from core.constants import MODEL_NAME
from monitoring import alerts, config, outcome, server_metrics


@dataclasses.dataclass(frozen=True)
class Limits:
    """The alert rules' thresholds (see monitoring/config.py)."""

    max_skew_features: float = config.MAX_SKEW_FEATURES
    max_drift_features: float = config.MAX_DRIFT_FEATURES
    max_error_rate: float = config.MAX_ERROR_RATE
    max_p99_ms: float = config.MAX_P99_MS
    max_accuracy_drop: float = config.MAX_ACCURACY_DROP


def rules(limits: Limits) -> list[alerts.Rule]:
    """The five rules: skew, drift, error rate, p99 latency, live quality drop."""
    return [
        alerts.Rule(
            "training-serving skew", "skew_features", ">", limits.max_skew_features, "critical"
        ),
        alerts.Rule("serving drift", "drift_features", ">", limits.max_drift_features),
        alerts.Rule("error rate", "error_rate", ">", limits.max_error_rate, "critical"),
        alerts.Rule("p99 latency", "p99_latency_ms", ">", limits.max_p99_ms),
        alerts.Rule(
            "live quality drop", "live_accuracy_drop", ">", limits.max_accuracy_drop, "critical"
        ),
    ]


def collect_signals(
    state: dict,
    problems: list[str],
    *,
    summary: str | None = None,
    metrics_url: str | None = None,
    metrics_file: str | None = None,
    quality: str | None = None,
    baseline_accuracy: float | None = None,
    scope: str = MODEL_NAME,
) -> dict:
    """Signals for the rules; what cannot be read is a problem (appended), not a crash.

    Updates `state["metrics"]` (the server's counters, for the next run's delta).
    """
    signals = {}
    if summary:
        try:
            with open(summary) as f:
                exceeded = [x for x in json.load(f).get("findings", []) if x.get("exceeded")]
            for kind in ("skew", "drift"):
                signals[f"{kind}_features"] = len(
                    {x["feature"] for x in exceeded if x["kind"] == kind}
                )
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"monitor summary {summary}: {e}")
    text = None
    try:
        text = server_metrics.read(metrics_url, metrics_file)
    except (OSError, server_metrics.requests.RequestException) as e:
        problems.append(f"server metrics: {e}")
    if text is not None:
        try:
            current = server_metrics.snapshot(text, scope)
        except ValueError as e:
            problems.append(f"server metrics: unparsable exposition ({e})")
        else:
            window = server_metrics.delta(current, state.get("metrics"))
            state["metrics"] = current
            signals["error_rate"] = server_metrics.error_rate(window)
            signals["p99_latency_ms"] = server_metrics.latency_quantile_ms(window, 0.99)
            signals["requests"] = window["requests"]
    if quality:
        try:
            with open(quality) as f:
                accuracy = json.load(f)["overall"]["accuracy"]
            if baseline_accuracy is None:
                problems.append("--quality needs --baseline-accuracy")
            elif accuracy is not None:
                signals["live_accuracy"] = accuracy
                signals["live_accuracy_drop"] = baseline_accuracy - accuracy
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"live quality summary {quality}: {e}")
    return signals


@dataclasses.dataclass
class AlertRun:
    signals: dict
    firing: list[alerts.Alert]
    notified: list[alerts.Alert]  # the firing alerts sent now (the others: open incidents)
    problems: list[str]

    @property
    def outcome(self) -> int:
        return outcome.of(bool(self.firing), bool(self.problems))


def run(
    state_path: str,
    *,
    scope: str = MODEL_NAME,
    limits: Limits = Limits(),
    cooldown: float = config.ALERT_COOLDOWN_SECONDS,
    log_file: str | None = None,
    webhook: str | None = None,
    **sources,
) -> AlertRun:
    """Evaluates the rules on the signals of `sources` (`collect_signals`' keywords)
    and notifies new incidents (and open ones after `cooldown` seconds).

    The state file is saved unless a sink failed (the alerts are then sent
    again on the next run).
    """
    state = alerts.load_state(state_path)
    problems: list[str] = []
    signals = collect_signals(state, problems, scope=scope, **sources)
    moment = alerts.now()
    firing = alerts.evaluate(rules(limits), signals, scope, moment)
    notify = alerts.deduplicate(firing, state, scope, cooldown, moment)
    sink_failed = False
    if notify and log_file:
        try:
            alerts.to_log(log_file, notify)
        except OSError as e:
            problems.append(f"alert log {log_file}: {e}")
            sink_failed = True
    if notify and webhook:
        error = alerts.to_webhook(webhook, notify)
        if error:
            problems.append(error)
            sink_failed = True
    if not sink_failed:
        alerts.save_state(state_path, state)
    return AlertRun(signals, firing, notify, problems)
