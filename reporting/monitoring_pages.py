"""HTML pages of the monitoring outputs: one page per request-log window, and an index.

Read from a monitoring output folder (`taxi-monitor window|quality|ab|watch
--out/--report-dir`, searched recursively) and alert logs (JSON lines of
`taxi-monitor alert --log-file` or `taxi-monitor alert-receiver --log-file`):

* `window-<start>-<end>/summary.json`: skew and drift per feature, the
  counts and the anomalous features of the window;
* `quality-<start>-<end>/summary.json`: live accuracy and AUC per version;
  shown on the page of every window it overlaps;
* `shadow.json` of `taxi-monitor shadow` (shadow verdicts per version pair:
  agreement, differences, error rate): shown on every window it overlaps;
* `report.json` of an A/B test (canary verdicts), and alerts: shown on the
  page of the newest window that had started when they were created (checks
  run after their window closes, often several windows later; events older
  than every window are not shown).

Pages are self-contained (inline styles, plots as embedded PNGs, no
JavaScript), like the run report.

Over 400 lines: one page type end to end: collecting the monitoring outputs (windows,
quality, shadow, A/B reports, alerts) onto their windows, then the tables, plots and
HTML of that page, which nothing else uses.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import glob
import html
import json
import os
import re

import jinja2
import pandas as pd
from markupsafe import Markup

from reporting.html_report import figure_to_data_uri, table_html

WINDOW_DIR = re.compile(r"^window-(\d+)-(\d+)$")
QUALITY_DIR = re.compile(r"^quality-(\d+)-(\d+)$")


@dataclasses.dataclass
class Window:
    start: float
    end: float
    summary: dict
    quality: list[dict]
    alerts: list[dict]
    verdicts: list[dict]
    shadows: list[dict] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return f"window-{int(self.start)}-{int(self.end)}"


def _load_json(path: str):
    with open(path) as f:
        return json.load(f)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso_seconds(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def read_alerts(paths: list[str]) -> list[dict]:
    """Alert records of the given JSON-lines logs, as {time, name, severity, status, text}.

    Raises:
      ValueError: a line is not a JSON object of either log format (file and line named).
    """
    alerts = []
    for path in paths:
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if "rule" in record:  # taxi-monitor alert
                        alerts.append(
                            {
                                "time": float(record["timestamp"]),
                                "name": record["rule"],
                                "severity": record["severity"],
                                "status": "firing",
                                "text": record["message"],
                            }
                        )
                    else:  # taxi-monitor alert-receiver
                        labels = record["labels"]
                        alerts.append(
                            {
                                "time": _iso_seconds(record["received"]),
                                "name": record["alertname"],
                                "severity": labels.get("severity", ""),
                                "status": record["status"],
                                "text": record.get("summary", "")
                                + (f" ({record['handled']})" if record.get("handled") else ""),
                            }
                        )
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    raise ValueError(f"{path}:{number}: not an alert log record ({e})") from None
    return alerts


def collect(monitoring_dir: str, alert_logs: list[str] = ()) -> list[Window]:
    """The windows found under `monitoring_dir`, oldest first, with what belongs to each."""
    windows, qualities, verdicts = [], [], []
    for path in sorted(
        glob.glob(os.path.join(monitoring_dir, "**", "summary.json"), recursive=True)
    ):
        folder = os.path.basename(os.path.dirname(path))
        if match := WINDOW_DIR.match(folder):
            windows.append(Window(float(match[1]), float(match[2]), _load_json(path), [], [], []))
        elif match := QUALITY_DIR.match(folder):
            qualities.append(dict(_load_json(path), start=float(match[1]), end=float(match[2])))
    shadows = []
    for path in sorted(
        glob.glob(os.path.join(monitoring_dir, "**", "shadow.json"), recursive=True)
    ):
        report = _load_json(path)
        if isinstance(report, dict) and isinstance(report.get("pairs"), dict):
            shadows.append(report)
    for path in glob.glob(os.path.join(monitoring_dir, "**", "report.json"), recursive=True):
        report = _load_json(path)
        if isinstance(report, dict) and "verdict" in report and "versions" in report:
            verdicts.append(dict(report, path=path))
    alerts = read_alerts(list(alert_logs))
    windows.sort(key=lambda w: (w.start, w.end))
    starts = [w.start for w in windows]

    def owner(moment) -> Window | None:
        """The newest window that had started at `moment` (None: before the first)."""
        index = bisect.bisect_right(starts, float(moment)) - 1 if moment is not None else -1
        return windows[index] if index >= 0 else None

    for alert in sorted(alerts, key=lambda a: a["time"] or 0.0):
        if (window := owner(alert["time"])) is not None:
            window.alerts.append(alert)
    for verdict in verdicts:
        if (window := owner(verdict.get("created"))) is not None:
            window.verdicts.append(verdict)
    for window in windows:
        window.quality = [
            q for q in qualities if q["start"] < window.end and q["end"] > window.start
        ]
        window.shadows = [
            r
            for r in shadows
            if float(r.get("start", 0)) < window.end and float(r.get("end", 0)) > window.start
        ]
    return windows


def feature_table(summary: dict) -> pd.DataFrame:
    """Feature x (skew, drift) distances and thresholds; `exceeded` lists what is above."""
    rows: dict[str, dict] = {}
    for finding in summary.get("findings", []):
        row = rows.setdefault(
            finding["feature"], {"feature": finding["feature"], "measure": finding["measure"]}
        )
        row[f"{finding['kind']}"] = finding["value"]
        row[f"{finding['kind']} threshold"] = finding["threshold"]
        if finding["exceeded"]:
            row["exceeded"] = ", ".join(filter(None, [row.get("exceeded"), finding["kind"]]))
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return frame
    columns = ["feature", "measure"] + [
        c for c in ("skew", "skew threshold", "drift", "drift threshold") if c in frame
    ]
    frame["exceeded"] = frame.get("exceeded", pd.Series(dtype=object)).fillna("")
    return frame[columns + ["exceeded"]].sort_values("feature").reset_index(drop=True)


def quality_table(qualities: list[dict]) -> pd.DataFrame:
    """One row per (quality window, version): labelled, accuracy, AUC."""
    rows = []
    for q in qualities:
        span = f"{_time(q['start'])} .. {_time(q['end'])}"
        for version, values in [*sorted(q["versions"].items()), ("all", q["overall"])]:
            rows.append(
                {
                    "labels window": span,
                    "version": version,
                    "labelled": values["labelled"],
                    "accuracy": values["accuracy"],
                    "AUC": values["auc"],
                }
            )
    return pd.DataFrame(rows)


def plot_features(summary: dict):
    """Matplotlib Figure: distance / threshold per feature for skew and drift (1 = threshold)."""
    from matplotlib.figure import Figure

    findings = summary.get("findings", [])
    kinds = [k for k in ("skew", "drift") if any(f["kind"] == k for f in findings)]
    fig = Figure(figsize=(7, 0.8 + 0.32 * max(1, len({f["feature"] for f in findings}))))
    axes = fig.subplots(1, max(1, len(kinds)), sharey=True, squeeze=False)[0]
    features = sorted({f["feature"] for f in findings})
    for ax, kind in zip(axes, kinds, strict=False):
        ratio = {
            f["feature"]: f["value"] / f["threshold"]
            for f in findings
            if f["kind"] == kind and f["threshold"]
        }
        values = [ratio.get(name, 0.0) for name in features]
        colours = ["#c0392b" if v > 1 else "#3b6fb6" for v in values]
        ax.barh(features, values, color=colours)
        ax.axvline(1.0, color="#1d2330", linestyle="--", linewidth=1)
        ax.set_title(f"{kind}: distance / threshold")
        ax.invert_yaxis()
    if not kinds:
        axes[0].text(0.5, 0.5, "no skew/drift measured", ha="center", va="center")
        axes[0].set_axis_off()
    fig.tight_layout()
    return fig


def plot_quality(qualities: list[dict]):
    """Matplotlib Figure: live accuracy per version (newest labels window)."""
    from matplotlib.figure import Figure

    latest = max(qualities, key=lambda q: q["end"])
    items = [(v, x) for v, x in sorted(latest["versions"].items()) if x["accuracy"] is not None]
    fig = Figure(figsize=(5, 0.8 + 0.45 * max(1, len(items))))
    ax = fig.subplots()
    ax.barh(
        [f"version {v} (n={x['labelled']})" for v, x in items],
        [x["accuracy"] for v, x in items],
        color="#1f8a4c",
    )
    ax.set_xlim(0, 1)
    ax.set_xlabel("live accuracy on late labels")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def plot_trend(windows: list[Window]):
    """Matplotlib Figure: features above their skew/drift thresholds per window."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.6))
    ax = fig.subplots()
    labels = [_time(w.start)[5:16] for w in windows]
    for kind, colour in (("skew", "#c0392b"), ("drift", "#e67e22")):
        counts = [
            len(
                {
                    f["feature"]
                    for f in w.summary.get("findings", [])
                    if f["kind"] == kind and f["exceeded"]
                }
            )
            for w in windows
        ]
        ax.plot(labels, counts, "o-", color=colour, label=kind)
    ax.set_ylabel("features above threshold")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


STYLE = """body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1d2330; }
h2 { border-bottom: 2px solid #dde3ee; padding-bottom: 4px; margin-top: 28px; }
.muted { color: #667; font-size: 13px; }
.badge { display: inline-block; padding: 3px 10px; border-radius: 12px; font-weight: 600; color: #fff; }
.ok { background: #1f8a4c; } .fail { background: #c0392b; } .neutral { background: #6b7280; }
table.tbl { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
table.tbl th, table.tbl td { border: 1px solid #dde3ee; padding: 3px 8px; text-align: right; }
table.tbl th { background: #f1f4f9; text-align: left; } table.left td { text-align: left; }
img.plot { max-width: 100%; border: 1px solid #dde3ee; }"""

WINDOW_PAGE = jinja2.Template(
    """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Monitoring {{ w.name }}</title><style>{{ style }}</style></head><body>
<p><a href="index.html">all windows</a></p>
<h1>Request-log window {{ start }} .. {{ end }}</h1>
<p>{% if exceeded %}<span class="badge fail">{{ exceeded }} feature{{ "s" if exceeded != 1 }} above threshold</span>
{% else %}<span class="badge ok">no skew or drift</span>{% endif %}
<span class="muted">&nbsp; served version {{ s.get("served version", "–") }} · {{ s.get("rows", 0) }} rows ·
{{ s.get("counts", {}).get("malformed", 0) }} malformed records · previous window {{ s.get("previous window rows", "–") }} rows ·
training span {{ s.get("training span", "–") }}</span></p>
<h2>Skew and drift per feature</h2>
{% if features_plot %}<img class="plot" alt="Skew and drift per feature" src="{{ features_plot }}">{% endif %}
{{ features_html }}
<p class="muted">Skew: against the served version's training statistics; drift: against the previous window of the same length.
Anomalous features (TFDV, SERVING environment): {{ s.get("anomalous_features")|join(", ") or "none" }}.</p>
{% if s.get("problems") %}<p><b>Problems:</b> {{ s.problems|join("; ") }}</p>{% endif %}
<h2>Live quality per version</h2>
{% if quality_plot %}<img class="plot" alt="Live accuracy per version" src="{{ quality_plot }}">{{ quality_html }}
{% else %}<p class="muted">No late labels joined for this window.</p>{% endif %}
<h2>Alerts</h2>
{{ alerts_html if w.alerts else Markup('<p class="muted">No alerts.</p>') }}
<h2>Canary verdicts</h2>
{{ verdicts_html if w.verdicts else Markup('<p class="muted">No canary decision.</p>') }}
<h2>Shadow verdicts</h2>
{{ shadows_html if w.shadows else Markup('<p class="muted">No shadow comparison.</p>') }}
</body></html>""",
    autoescape=True,
)

INDEX_PAGE = jinja2.Template(
    """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Monitoring</title><style>{{ style }}</style></head><body>
<h1>Monitoring: {{ windows|length }} request-log window{{ "s" if windows|length != 1 }}</h1>
<p class="muted">From {{ source }}; generated {{ generated }}.</p>
{% if trend_plot %}<img class="plot" alt="Features above threshold per window" src="{{ trend_plot }}">{% endif %}
{{ table_html }}
</body></html>""",
    autoescape=True,
)


def _exceeded(summary: dict) -> int:
    return len({f["feature"] for f in summary.get("findings", []) if f["exceeded"]})


def render_window(window: Window) -> str:
    """The page of one window."""
    features = feature_table(window.summary)
    alerts = pd.DataFrame(
        [dict(a, time=_time(a["time"])) for a in window.alerts],
        columns=["time", "name", "severity", "status", "text"],
    )
    verdicts = pd.DataFrame(
        [
            {
                "decided": _time(v.get("created")),
                "stable": v["versions"]["stable"]["version"],
                "canary": v["versions"]["canary"]["version"],
                "stable accuracy": v["versions"]["stable"]["accuracy"],
                "canary accuracy": v["versions"]["canary"]["accuracy"],
                "p-value": v.get("p_value"),
                "verdict": v["verdict"],
                "decision": v.get("decision", ""),
            }
            for v in window.verdicts
        ]
    )
    shadows = pd.DataFrame(
        [
            {
                "mirrored": f"{_time(r.get('start'))} .. {_time(r.get('end'))}",
                "stable": e.get("stable_version"),
                "shadow": e.get("shadow_version"),
                "rows": e.get("rows"),
                "agreement": e.get("agreement"),
                "mean |diff|": e.get("mean_abs_diff"),
                "max |diff|": e.get("max_abs_diff"),
                "shadow error rate": e.get("shadow_error_rate"),
                "verdict": e.get("verdict", ""),
                "why": e.get("why", ""),
            }
            for r in window.shadows
            for e in r["pairs"].values()
        ]
    )
    return WINDOW_PAGE.render(
        w=window,
        s=window.summary,
        style=Markup(STYLE),
        Markup=Markup,
        start=_time(window.start),
        end=_time(window.end),
        exceeded=_exceeded(window.summary),
        features_plot=figure_to_data_uri(plot_features(window.summary))
        if not features.empty
        else "",
        features_html=Markup(table_html(features, index=False, left=True)),
        quality_plot=figure_to_data_uri(plot_quality(window.quality)) if window.quality else "",
        quality_html=Markup(table_html(quality_table(window.quality), index=False)),
        alerts_html=Markup(table_html(alerts, index=False, left=True)),
        verdicts_html=Markup(table_html(verdicts, index=False, left=True)),
        shadows_html=Markup(table_html(shadows, index=False, left=True)),
    )


def write_pages(monitoring_dir: str, output_dir: str, alert_logs: list[str] = ()) -> list[str]:
    """Writes `index.html` and one `window-<start>-<end>.html` per window; returns the paths.

    Raises:
      ValueError: no window summary under `monitoring_dir`, or a bad alert log line.
    """
    windows = collect(monitoring_dir, alert_logs)
    if not windows:
        raise ValueError(f"no window-<start>-<end>/summary.json under {monitoring_dir}")
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    rows = []
    for window in windows:
        path = os.path.join(output_dir, f"{window.name}.html")
        _write(path, render_window(window))
        paths.append(path)
        accuracy = [
            q["overall"]["accuracy"] for q in window.quality if q["overall"]["accuracy"] is not None
        ]
        rows.append(
            {
                "window": Markup(
                    f'<a href="{html.escape(window.name)}.html">{html.escape(_time(window.start))}</a>'
                ),
                "end": html.escape(_time(window.end)),
                "rows": window.summary.get("rows", 0),
                "features above threshold": _exceeded(window.summary),
                "live accuracy": accuracy[-1] if accuracy else None,
                "alerts": len(window.alerts),
                "canary verdicts": html.escape(
                    ", ".join(str(v["verdict"]) for v in window.verdicts)
                ),
            }
        )
    table = pd.DataFrame(rows).to_html(
        classes=["tbl", "left"], index=False, border=0, escape=False, na_rep="–"
    )
    index = os.path.join(output_dir, "index.html")
    _write(
        index,
        INDEX_PAGE.render(
            windows=windows,
            style=Markup(STYLE),
            source=os.path.abspath(monitoring_dir),
            generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            trend_plot=figure_to_data_uri(plot_trend(windows)),
            table_html=Markup(table),
        ),
    )
    return [index, *paths]


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
