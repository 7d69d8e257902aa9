"""Lineage views: the served model back to its data spans, and a table of runs.

The graph walk is ``lineage.version_lineage``; this module only
shapes its answers into tables for notebooks and the HTML report.
"""

from __future__ import annotations

import pandas as pd

import lineage
from lineage import runs as runs_lib

RUN_COLUMNS = [
    "run_id",
    "kind",
    "span",
    "status",
    "trained_spans",
    "auc",
    "calibration",
    "baseline_auc",
    "blessed",
    "pushed_version",
]


def pushed_versions(store: runs_lib.RunStore) -> list[str]:
    """Serving versions pushed so far, oldest first."""
    return sorted(lineage.pushed_versions(store.graph), key=lambda v: (len(v), v))


def served_version(store: runs_lib.RunStore) -> str | None:
    """The newest pushed version (what a model server on the serving dir loads)."""
    versions = pushed_versions(store)
    return versions[-1] if versions else None


def version_chain(store: runs_lib.RunStore, version: str | None = None) -> dict:
    """``lineage.version_lineage`` of ``version`` (default: the served one).

    Raises:
      lineage.LineageError: nothing was pushed, or not that version.
    """
    version = version or served_version(store)
    if version is None:
        raise lineage.LineageError(f"no model was pushed yet in {store.metadata_path}")
    return lineage.version_lineage(store.graph, version)


def _run_of_execution(store: runs_lib.RunStore, execution_id: int | None) -> str:
    if execution_id is None:
        return ""
    try:
        return store.get_run(execution_id).run_id
    except runs_lib.RunNotFoundError:
        return ""


def chain_table(store: runs_lib.RunStore, chain: dict) -> pd.DataFrame:
    """The chain as rows from the served model back to the data spans."""
    rows = [
        (
            "served model",
            f"version {chain['version']}",
            chain.get("destination") or "",
            _exec_text(chain.get("pusher")),
            _run_of_execution(store, (chain.get("pusher") or {}).get("execution_id")),
        )
    ]
    for blessing in chain["blessing"]:
        rows.append(
            (
                "blessing",
                "BLESSED" if blessing["blessed"] else "NOT BLESSED",
                blessing["uri"],
                "Evaluator",
                "",
            )
        )
    for uri in chain["evaluation"]:
        rows.append(("evaluation", "TFMA metrics and validation", uri, "Evaluator", ""))
    for uri in chain.get("baseline_model", []):
        rows.append(("baseline model", "compared against", uri, "", ""))
    for uri in chain["model"]:
        trainer = chain.get("trainer") or {}
        rows.append(
            (
                "model",
                "trained",
                uri,
                _exec_text(trainer),
                _run_of_execution(store, trainer.get("execution_id")),
            )
        )
    for uri in chain["transform_graph"]:
        transform = chain.get("transform") or {}
        rows.append(("transform graph", "preprocessing", uri, _exec_text(transform), ""))
    for uri in chain["schema"]:
        rows.append(("schema", "curated schema", uri, "ImportSchemaGen", ""))
    span_by_uri = {
        store.artifact(a).uri: lineage.prop(store.artifact(a), "span")
        for a in store.graph.artifacts
        if store.graph.type_of(a) == "Examples"
        and lineage.prop(store.artifact(a), "span") is not None
    }
    for uri in chain["examples"]:
        span = span_by_uri.get(uri)
        ingest_run = ""
        for artifact_id, artifact in store.graph.artifacts.items():
            if artifact.uri == uri:
                ingest_run = _run_of_execution(store, store.graph.producer(artifact_id))
                break
        rows.append(("data span", f"span {span}", uri, "CsvExampleGen", ingest_run))
    return pd.DataFrame(rows, columns=["step", "what", "uri", "produced by", "run"])


def _exec_text(execution: dict | None) -> str:
    if not execution:
        return ""
    return f"{execution['node']} (execution {execution['execution_id']})"


def runs_table(store: runs_lib.RunStore) -> pd.DataFrame:
    """One row per run (oldest first) with its span, outcome and overall metrics."""
    from reporting import model_analysis

    rows = []
    for run in store.runs():
        row = dict.fromkeys(RUN_COLUMNS)
        row.update(
            run_id=run.run_id,
            kind=run.kind,
            span=store.span_of_run(run),
            status="ok"
            if run.succeeded
            else ("failed at " + ", ".join(run.failed_nodes) if run.failed_nodes else "incomplete"),
            trained_spans=", ".join(map(str, store.trained_spans(run))) or None,
        )
        evaluation = store.output(run, "Evaluator", "ModelEvaluation")
        if evaluation is not None:
            metrics = model_analysis.load_metrics(evaluation.uri)
            overall = metrics[(metrics["slice"] == model_analysis.OVERALL) & ~metrics["is_diff"]]
            values = {(r.model, r.metric): r.value for r in overall.itertuples()}
            row.update(
                auc=values.get(("candidate", "auc")),
                calibration=values.get(("candidate", "calibration")),
                baseline_auc=values.get(("baseline", "auc")),
            )
        blessing = store.output(run, "Evaluator", "ModelBlessing")
        if blessing is not None:
            row["blessed"] = lineage.prop(blessing, "blessed") == 1
        for pushed in store.outputs(run, "Pusher", "PushedModel"):
            if lineage.prop(pushed, "pushed") == 1:
                row["pushed_version"] = str(lineage.prop(pushed, "pushed_version"))
        rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def run_lineage_summary(store: runs_lib.RunStore, run: runs_lib.Run) -> list[tuple[str, str]]:
    """Short (label, value) facts about what a run consumed and produced."""
    facts = [("run", run.run_id), ("kind", run.kind)]
    span = store.span_of_run(run)
    facts.append(("ingested span", str(span) if span is not None else "-"))
    trained = store.trained_spans(run)
    if trained:
        facts.append(("trained on spans", ", ".join(map(str, trained))))
    for node, type_name, label in (
        ("ImportSchemaGen", "Schema", "schema"),
        ("StatisticsGen", "ExampleStatistics", "statistics"),
        ("ExampleValidator", "ExampleAnomalies", "anomalies"),
        ("Transform", "TransformGraph", "transform graph"),
        ("Trainer", "Model", "model"),
        ("Evaluator", "ModelEvaluation", "evaluation"),
    ):
        artifact = store.output(run, node, type_name)
        if artifact is not None:
            facts.append((label, artifact.uri))
    baseline = [
        a
        for a in store.inputs(run, "Evaluator", "Model")
        if a.id not in {m.id for m in store.outputs(run, "Trainer", "Model")}
    ]
    if baseline:
        facts.append(("baseline model", baseline[-1].uri))
    pushed = [
        p for p in store.outputs(run, "Pusher", "PushedModel") if lineage.prop(p, "pushed") == 1
    ]
    if pushed:
        facts.append(
            (
                "pushed",
                f"version {lineage.prop(pushed[-1], 'pushed_version')} -> {lineage.prop(pushed[-1], 'pushed_destination')}",
            )
        )
    elif run.has("Pusher"):
        facts.append(("pushed", "nothing (not blessed)"))
    elif run.has("Trainer") or run.failed_nodes:
        facts.append(("pushed", "nothing"))
    if run.failed_nodes:
        facts.append(("failed at", ", ".join(run.failed_nodes)))
    facts.append(("node states", ", ".join(f"{n}: {s}" for n, s in run.states.items())))
    return facts
