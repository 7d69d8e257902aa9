"""One self-contained HTML file per run: data, drift, metrics, blessing, lineage.

No network is needed to view it: styles are inline and the plot is an
embedded base64 PNG; there is no JavaScript.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os

import jinja2
import pandas as pd
from markupsafe import Markup

import lineage
from lineage import runs as runs_lib
from reporting import data_validation, gates, lineage_view, model_analysis


def figure_to_data_uri(fig) -> str:
    """PNG data URI of a matplotlib Figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def table_html(
    frame: pd.DataFrame, index: bool = True, float_format: str = "{:.4g}", left: bool = False
) -> str:
    """A DataFrame as an escaped HTML table (``left``: left-aligned text cells)."""
    if frame is None or frame.empty:
        return '<p class="muted">(empty)</p>'
    return frame.to_html(
        classes=["tbl", "left"] if left else ["tbl"],
        index=index,
        border=0,
        na_rep="–",
        escape=True,
        float_format=lambda v: float_format.format(v),
    )


def drift_matrix(drift: pd.DataFrame) -> pd.DataFrame:
    """Feature x span-pair table of drift values, with the measure."""
    if drift.empty:
        return drift
    frame = drift.copy()
    frame["pair"] = frame["previous_span"].astype(str) + " → " + frame["span"].astype(str)
    values = frame.pivot_table(
        index=["feature", "measure"], columns="pair", values="value", aggfunc="first"
    )
    return values.reindex(columns=sorted(values.columns))


def drift_matrix_html(drift: pd.DataFrame) -> str:
    """The drift matrix with cells above their threshold highlighted."""
    if drift.empty:
        return '<p class="muted">Fewer than two spans with statistics: nothing to compare.</p>'
    matrix = drift_matrix(drift)
    flagged = {(r.feature, r.previous_span, r.span) for r in drift.itertuples() if r.drifted}
    thresholds = drift.groupby("measure")["threshold"].first().to_dict()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in matrix.columns)
    body = []
    for (feature, measure), row in matrix.iterrows():
        cells = []
        for pair, value in row.items():
            prev, cur = (int(p) for p in pair.split(" → "))
            cls = ' class="bad"' if (feature, prev, cur) in flagged else ""
            cells.append(f"<td{cls}>{'–' if pd.isna(value) else f'{value:.3f}'}</td>")
        body.append(
            f"<tr><th>{html.escape(feature)}</th><td>{html.escape(measure)}</td>{''.join(cells)}</tr>"
        )
    legend = ", ".join(f"{html.escape(m)} &gt; {t:g}" for m, t in thresholds.items())
    return (
        f'<table class="tbl drift"><thead><tr><th>feature</th><th>measure</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        f'<p class="muted">Highlighted: drift above the threshold ({legend}). Computed by TFDV\'s drift '
        "comparators on the train split of each span's StatisticsGen output.</p>"
    )


TEMPLATE = jinja2.Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Taxi pipeline run {{ run.run_id }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #1d2330; background: #fff; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { border-bottom: 2px solid #dde3ee; padding-bottom: 4px; margin-top: 32px; }
h3 { margin-bottom: 6px; }
.muted { color: #667; font-size: 13px; }
.badge { display: inline-block; padding: 3px 10px; border-radius: 12px; font-weight: 600; color: #fff; }
.ok { background: #1f8a4c; } .fail { background: #c0392b; } .neutral { background: #6b7280; }
table.tbl { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
table.tbl th, table.tbl td { border: 1px solid #dde3ee; padding: 3px 8px; text-align: right; vertical-align: top; }
table.tbl th { background: #f1f4f9; text-align: left; }
table.tbl td.bad, .bad { background: #fde2df; color: #8a1c12; font-weight: 600; }
table.facts td, table.facts th { text-align: left; }
table.left td { text-align: left; }
.box { border-left: 4px solid #c0392b; background: #fdf3f2; padding: 8px 14px; margin: 10px 0; }
.box.good { border-color: #1f8a4c; background: #f0faf4; }
nav a { margin-right: 14px; }
img.plot { max-width: 100%; border: 1px solid #dde3ee; }
</style></head>
<body>
<h1>Taxi pipeline run <code>{{ run.run_id }}</code></h1>
<p>
{% if run.failed_nodes %}<span class="badge fail">stopped at {{ run.failed_nodes|join(", ") }}</span>
{% elif analysis and analysis.blessed %}<span class="badge ok">blessed</span>
{% elif analysis %}<span class="badge fail">not blessed</span>
{% else %}<span class="badge neutral">{{ run.kind }}</span>{% endif %}
<span class="muted">&nbsp; {{ run.kind }} run · span {{ dv.span if dv.span is not none else "–" }} · metadata {{ metadata_path }} · report generated {{ generated }}</span>
</p>
<nav><a href="#data">Data</a><a href="#anomalies">Anomalies</a><a href="#drift">Drift</a><a href="#model">Model</a><a href="#gates">Gates</a><a href="#lineage">Lineage</a></nav>

<h2 id="data">Data summary</h2>
{% if dv.statistics %}
<p>Span {{ dv.span }}: {% for split, n in counts.items() %}<b>{{ split }}</b> {{ n }} examples{% if not loop.last %}, {% endif %}{% endfor %}.
Statistics: <code>{{ dv.statistics_uri }}</code></p>
<h3>Features (train split)</h3>
{{ features_html }}
{% else %}<p class="muted">This run has no StatisticsGen output.</p>{% endif %}

<h2 id="anomalies">Anomalies</h2>
{% if anomalies_count %}
<div class="box"><b>{{ anomalies_count }} anomal{{ "y" if anomalies_count == 1 else "ies" }}</b> against the curated schema
(<code>{{ dv.schema_uri }}</code>). Data that does not match the schema stops the run at the AnomaliesGate; nothing is trained or pushed.</div>
{{ anomalies_html }}
{% elif dv.anomalies %}<div class="box good">No anomalies: every split matches the curated schema.</div>
{% else %}<p class="muted">This run has no ExampleValidator output.</p>{% endif %}

<h2 id="drift">Drift between spans</h2>
{{ drift_html }}

<h2 id="model">Model analysis</h2>
{% if analysis %}
<div class="box {{ 'good' if analysis.blessed else '' }}"><b>Blessing decision:</b> {{ analysis.explanation }}</div>
<h3>Thresholds</h3>
{{ checks_html }}
<h3>Overall: candidate vs baseline</h3>
{% if not analysis.has_baseline %}<p class="muted">No baseline: this is the first model evaluated against the thresholds.</p>{% endif %}
{{ comparison_html }}
<h3>Sliced metrics</h3>
<img class="plot" alt="AUC per slice" src="{{ plot_uri }}">
{{ sliced_html }}
<p class="muted">Evaluation: <code>{{ analysis.evaluation_uri }}</code></p>
{% else %}<p class="muted">{{ no_model_reason }}</p>{% endif %}

<h2 id="gates">Gates: the evidence</h2>
<h3>Tuner trials</h3>
{% if g.tuner is not none %}<p>{{ g.tuner|length }} trial{{ "s" if g.tuner|length != 1 }} of KerasTuner (objective: validation AUC); the best one's hyperparameters are the wide &amp; deep candidate of model selection.</p>
<img class="plot" alt="Tuner trials" src="{{ tuner_plot }}">
{{ tuner_html }}
{% else %}<p class="muted">No Tuner in this run.</p>{% endif %}
<h3>Model selection (cross-validation)</h3>
{% if g.selection %}{% set cv = g.selection %}
<div class="box good">{{ cv.folds }}-fold cross-validation on the {{ cv.split }} split ({{ cv.rows }} rows, {{ cv.steps }} steps per fold) chose <b>{{ cv.chosen_family }}</b>: {{ cv.reason }}.</div>
<img class="plot" alt="AUC per fold" src="{{ folds_plot }}">
{{ selection_summary_html }}
<p class="muted">Per fold:</p>
{{ folds_html }}
{{ comparison_html_cv }}
<p class="muted">Rule: {{ cv.rule }}</p>
{% else %}<p class="muted">No model selection in this run.</p>{% endif %}
<h3>Held-out test split, by slice (TestEvaluator; reported, not a gate)</h3>
{% if test_html %}<img class="plot" alt="Test AUC per slice" src="{{ test_plot }}">
{{ test_html }}{% else %}<p class="muted">No test evaluation in this run.</p>{% endif %}
<h3>Behavioral checks</h3>
{% if g.behavioral %}<p><span class="badge {{ 'ok' if g.behavioral.passed else 'fail' }}">{{ "passed" if g.behavioral.passed else "failed: " ~ g.behavioral.failed }}</span>
&nbsp;{{ g.behavioral.cases|length }} hand-written cases ({{ g.behavioral.cases|map(attribute="kind")|unique|join(", ") }}) on the trained model.</p>
{{ behavioral_html }}
{% else %}<p class="muted">No behavioral checks in this run.</p>{% endif %}
<h3>Serving canary (InfraCanary)</h3>
{% if g.canary %}<p><span class="badge {{ 'ok' if g.canary.passed else 'fail' }}">{{ "passed" if g.canary.passed else "failed" }}</span>
&nbsp;the candidate served by the model server, probed over REST and gRPC before the push.</p>
{{ canary_html }}
{% if not g.canary.passed %}<pre class="muted">{{ g.canary.server_log_tail }}</pre>{% endif %}
{% else %}<p class="muted">No serving canary in this run.</p>{% endif %}

<h2 id="lineage">Lineage</h2>
<table class="tbl facts">{% for label, value in facts %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
{% if chain_html %}<h3>Pushed model back to its data</h3>{{ chain_html }}{% endif %}
</body></html>
""",
    autoescape=True,
)


def render(store: runs_lib.RunStore, run: runs_lib.Run) -> str:
    """The HTML report of ``run``."""
    dv = data_validation.for_run(store, run)
    counts = data_validation.example_counts(dv.statistics)
    features = (
        data_validation.feature_summary(dv.statistics["train"])
        if "train" in dv.statistics
        else None
    )
    anomalies = dv.anomalies_table
    analysis, plot_uri, no_model_reason = None, None, ""
    try:
        analysis = model_analysis.for_run(store, run)
        plot_uri = figure_to_data_uri(model_analysis.plot_sliced_metric(analysis.metrics, "auc"))
    except model_analysis.NoEvaluationError:
        if run.failed_nodes:
            no_model_reason = (
                f"No model: the run stopped at {', '.join(run.failed_nodes)} before training."
            )
        elif run.ingest_only:
            no_model_reason = "No model: this run only ingested and validated a span (backfill)."
        else:
            no_model_reason = "No model evaluation was recorded for this run."
    chain_html = ""
    pushed = [
        p for p in store.outputs(run, "Pusher", "PushedModel") if lineage.prop(p, "pushed") == 1
    ]
    if pushed:
        chain = lineage_view.version_chain(store, str(lineage.prop(pushed[-1], "pushed_version")))
        chain_html = table_html(lineage_view.chain_table(store, chain), index=False, left=True)
    g = gates.for_run(store, run)
    markup = Markup
    return TEMPLATE.render(
        g=g,
        **_gate_fragments(g),
        run=run,
        dv=dv,
        counts=counts,
        metadata_path=store.metadata_path,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        features_html=markup(table_html(features)),
        anomalies_count=len(anomalies),
        anomalies_html=markup(table_html(anomalies, index=False, left=True)),
        drift_html=markup(drift_matrix_html(dv.drift_table())),
        analysis=analysis,
        checks_html=markup(table_html(analysis.checks_table, index=False, left=True))
        if analysis
        else "",
        comparison_html=markup(table_html(analysis.comparison())) if analysis else "",
        sliced_html=markup(table_html(analysis.sliced())) if analysis else "",
        plot_uri=plot_uri,
        no_model_reason=no_model_reason,
        facts=lineage_view.run_lineage_summary(store, run),
        chain_html=markup(chain_html),
    )


def _gate_fragments(g: gates.Gates) -> dict:
    """Tables (Markup) and plots (data URIs) of the gates section."""
    out = {}
    if g.tuner is not None:
        out["tuner_plot"] = figure_to_data_uri(gates.plot_trials(g.tuner))
        out["tuner_html"] = Markup(table_html(g.tuner))
    if g.selection:
        out["folds_plot"] = figure_to_data_uri(gates.plot_folds(g.selection))
        out["selection_summary_html"] = Markup(table_html(gates.summary_table(g.selection)))
        out["folds_html"] = Markup(table_html(gates.fold_table(g.selection)))
        out["comparison_html_cv"] = Markup(
            table_html(gates.comparison_table(g.selection), index=False, left=True)
        )
    if g.test is not None and not g.test.empty:
        out["test_plot"] = figure_to_data_uri(model_analysis.plot_sliced_metric(g.test, "auc"))
        out["test_html"] = Markup(table_html(model_analysis.sliced_metrics(g.test)))
    if g.behavioral:
        cases = pd.DataFrame(g.behavioral["cases"])
        out["behavioral_html"] = Markup(
            table_html(cases[["kind", "name", "passed", "expected", "got"]], index=False, left=True)
        )
    if g.canary:
        out["canary_html"] = Markup(
            table_html(gates.canary_table(g.canary), index=False, left=True)
        )
    return out


def write_report(store: runs_lib.RunStore, run: runs_lib.Run, path: str) -> str:
    """Writes the report of ``run`` to ``path`` (atomically); returns the path."""
    content = render(store, run)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.replace(tmp, path)
    return path


def report_filename(run: runs_lib.Run) -> str:
    """File name of a run's report: ``run-<id with : replaced>.html``."""
    return "run-" + run.run_id.replace(":", "-") + ".html"
