"""Alert rules, de-duplication with a cooldown, and sinks.

A rule compares one signal (a number measured by a check) with a threshold.
A firing rule is one incident, identified by its fingerprint (rule name and
scope). The state file remembers open incidents: an incident is notified
when it opens and again only after `cooldown` seconds while it keeps firing;
when the rule stops firing the incident closes, and the next firing is a new
incident.

Signals: `skew_features`, `drift_features` (features above their threshold,
from a `monitor window` summary), `error_rate`, `p99_latency_ms` (server
metrics), `live_accuracy_drop` (baseline minus live accuracy).

This is the embedded alerting for a laptop or a cron job without Prometheus.
Where Prometheus and Alertmanager run, deploy/prometheus/alert_rules.yml has
the same rules and Alertmanager's grouping, inhibition and repeat interval
replace this module's de-duplication and cooldown (monitoring/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import requests

OPS = {">": lambda v, t: v > t, "<": lambda v, t: v < t}


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    signal: str
    op: str  # ">" or "<"
    threshold: float
    severity: str = "warning"


@dataclasses.dataclass(frozen=True)
class Alert:
    rule: str
    signal: str
    value: float
    threshold: float
    severity: str
    scope: str
    timestamp: float

    @property
    def fingerprint(self) -> str:
        return f"{self.rule}/{self.scope}"

    def message(self) -> str:
        return (
            f"[{self.severity}] {self.rule} ({self.scope}): {self.signal}={self.value:.4g} "
            f"breaches threshold {self.threshold:.4g}"
        )


def evaluate(rules: list[Rule], signals: dict, scope: str, now: float) -> list[Alert]:
    """Firing alerts; rules whose signal is missing (None) do not fire."""
    firing = []
    for rule in rules:
        value = signals.get(rule.signal)
        if value is not None and OPS[rule.op](value, rule.threshold):
            firing.append(
                Alert(
                    rule.name, rule.signal, float(value), rule.threshold, rule.severity, scope, now
                )
            )
    return firing


def load_state(path: str) -> dict:
    """The state file (an empty state when missing or unreadable)."""
    try:
        with open(path) as f:
            state = json.load(f)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(path: str, state: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def deduplicate(
    firing: list[Alert], state: dict, scope: str, cooldown: float, now: float
) -> list[Alert]:
    """Alerts to notify now; updates `state["incidents"]` in place.

    Incidents of `scope` that no longer fire are closed.
    """
    incidents = state.setdefault("incidents", {})
    notify = []
    keys = set()
    for alert in firing:
        keys.add(alert.fingerprint)
        incident = incidents.get(alert.fingerprint)
        if incident is None:
            incidents[alert.fingerprint] = {"opened": now, "notified": now, "count": 1}
            notify.append(alert)
            continue
        incident["count"] += 1
        if now - incident["notified"] >= cooldown:
            incident["notified"] = now
            notify.append(alert)
    for key in [k for k in incidents if k.endswith(f"/{scope}") and k not in keys]:
        del incidents[key]
    return notify


def to_log(path: str, alerts: list[Alert]) -> None:
    """Appends one JSON line per alert."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        for alert in alerts:
            f.write(json.dumps(dict(dataclasses.asdict(alert), message=alert.message())) + "\n")


def to_webhook(url: str, alerts: list[Alert], timeout: float = 5.0) -> str | None:
    """POSTs `{"alerts": [...]}` as JSON; returns an error text instead of raising."""
    body = {
        "alerts": [
            dict(dataclasses.asdict(a), fingerprint=a.fingerprint, message=a.message())
            for a in alerts
        ]
    }
    try:
        response = requests.post(url, json=body, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as e:
        return f"webhook {url} failed: {e}"
    return None


def now() -> float:
    return time.time()
