"""``taxi-model-card``: the model card of a pushed version, from ML Metadata, TFDV and TFMA.

Not a TFX component: it reads MLMD after the run (it needs the Pusher's
output), so the runner calls ``write_card``, and this command does it for
any pushed version. Everything is read through the existing helpers:
``lineage`` (``version_lineage``, runs and artifacts), the artifact modules
of the custom components (behavioral report, CV result),
``reporting.data_validation`` (TFDV statistics) and ``reporting.model_analysis``
(TFMA metrics, thresholds, blessing explanation).

Cards go to ``<output-dir>/model_cards/<version>/model_card.{md,html}``,
never into the serving directory (which holds SavedModels only).

Examples::

    taxi-model-card --output-dir tfx_runs                        # newest pushed version
    taxi-model-card --output-dir tfx_runs --version 1795627508
"""

from __future__ import annotations

import argparse
import datetime
import html
import os
import sys

import pandas as pd

import lineage
from components import features
from components.behavioral.artifact import BehavioralBlessing, read_report
from components.model_selection.artifact import CrossValidationResult, read_result, rows_text
from core import resources
from lineage import runs as runs_lib

CARDS_DIR = "model_cards"
MIN_SLICE_EXAMPLES = 50  # slices smaller than this are flagged as unreliable

LIMITS = (
    "Cash tips are not recorded in the data, so cash trips are labelled as not big "
    "tippers: the model predicts the recorded tip, not the tipping behaviour of cash riders.",
    "Trained and evaluated on the bundled Chicago taxi sample (a few thousand trips per "
    "year, 2013-2016), not on the full public dataset; metrics have wide error bars, "
    "especially per slice.",
    "Spans are calendar years: no seasonality or drift within a year is validated.",
    "Splits are a hash of each row (80/10/10), not by time: test metrics measure "
    "in-period generalisation, not performance on future trips.",
)


def card_path(output_dir: str, version: str, extension: str) -> str:
    """``<output_dir>/model_cards/<version>/model_card.<extension>``."""
    return os.path.join(output_dir, CARDS_DIR, str(version), f"model_card.{extension}")


def _data_section(store, run_store, spans: list[int]) -> pd.DataFrame:
    """Span x split row counts from the newest TFDV statistics of each span."""
    from reporting import data_validation

    by_span = run_store.statistics_by_span()
    rows = []
    for span in spans:
        artifact = by_span.get(span)
        if artifact is None:
            continue
        counts = data_validation.example_counts(data_validation.load_statistics(artifact))
        rows.append({"span": span, **counts, "total": sum(counts.values())})
    frame = pd.DataFrame(rows)
    return frame.set_index("span") if not frame.empty else frame


def _behavioral(run_store, run) -> dict | None:
    blessing = run_store.output(run, "BehavioralChecks", BehavioralBlessing.TYPE_NAME)
    if blessing is None:
        return None
    try:
        return read_report(blessing.uri)
    except (OSError, ValueError):
        return None


def _selection(run_store, run) -> dict | None:
    """ModelSelection's CV result, if the Trainer's hyperparameters came from one."""
    graph = run_store.graph
    for hparams in run_store.inputs(run, "Trainer", "HyperParameters"):
        producer = graph.producer(hparams.id)
        if producer is None or graph.node_of(producer) != "ModelSelection":
            continue
        for artifact_id in graph.linked([producer], graph.outputs, CrossValidationResult.TYPE_NAME):
            try:
                return read_result(graph.artifacts[artifact_id].uri)
            except (OSError, ValueError):
                return None
    return None


def _selection_blocks(result: dict | None) -> list:
    if result is None:
        return ["No model selection in this model's lineage: wide & deep by default."]
    rows = []
    for family, info in result["families"].items():
        row = {"family": family}
        for metric, stats in info["summary"].items():
            row[f"{metric} mean"] = stats["mean"]
            if metric == "auc":
                row["auc 95% CI"] = f"[{stats['ci_low']:.4f}, {stats['ci_high']:.4f}]"
        rows.append(row)
    return [
        f"{result['folds']}-fold cross-validation on the train split ({rows_text(result)}, "
        f"{result['steps']} steps per fold) chose `{result['chosen_family']}`: "
        f"{result['reason']}.",
        pd.DataFrame(rows).set_index("family"),
        f"Rule: {result['rule']}",
    ]


def build_card(output_dir: str, version: str | None = None) -> dict:
    """Every fact of the card for pushed ``version`` (default: newest pushed).

    Returns:
      A dict with ``version``, ``lineage`` (``version_lineage``), ``data``
      (span x split rows), ``eval`` and ``test`` (slice x metric tables),
      ``thresholds`` (table), ``blessing`` (sentence), ``behavioral`` (report
      or None), ``small_slices`` and ``limits``.

    Raises:
      lineage.LineageError: no such pushed version.
    """
    from reporting import model_analysis

    run_store = runs_lib.RunStore(output_dir)
    store = run_store.store
    if version is None:
        versions = lineage.pushed_versions(run_store.graph)
        if not versions:
            raise lineage.LineageError(f"no pushed model in {run_store.metadata_path}")
        version = max(versions, key=int)
    info = lineage.version_lineage(run_store.graph, str(version))
    run = run_store.get_run(info["pusher"]["execution_id"])
    analysis = model_analysis.for_run(run_store, run)
    test_evaluation = run_store.output(run, "TestEvaluator", "ModelEvaluation")
    test = (
        model_analysis.sliced_metrics(model_analysis.load_metrics(test_evaluation.uri))
        if test_evaluation is not None
        else pd.DataFrame()
    )
    evaluation = analysis.sliced()
    small = []
    for split, table in (("eval", evaluation), ("test", test)):
        if "example_count" in table:
            for label, count in table["example_count"].items():
                if pd.notna(count) and int(count) < MIN_SLICE_EXAMPLES:
                    small.append(f"{split} {label} ({int(count)} examples)")
    return {
        "version": str(version),
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "lineage": info,
        "run_id": run.run_id,
        "data": _data_section(store, run_store, info["spans"]),
        "eval": evaluation,
        "test": test,
        "thresholds": analysis.checks_table[
            ["metric", "slice", "kind", "bound", "actual", "status"]
        ],
        "blessed": analysis.blessed,
        "blessing": analysis.explanation,
        "behavioral": _behavioral(run_store, run),
        "selection": _selection(run_store, run),
        "small_slices": small,
        "limits": list(LIMITS),
    }


def _sections(card: dict) -> list[tuple[str, list]]:
    """Card content as (title, blocks); a block is a str paragraph, list of bullets, or table."""
    info = card["lineage"]
    behavioral = card["behavioral"]
    selection = card.get("selection")
    family = (
        "Logistic regression (one sigmoid unit over indicators of the categorical ids and "
        "the z-scored numerics)"
        if selection and selection["chosen_family"] == "logistic"
        else "Wide & deep tf-keras network"
    )
    model = [
        f"Binary classifier `{features.LABEL_KEY}`: tips > {features.TIP_FRACTION:.0%} of the "
        f"fare. {family} over Transform features (z-scores, quantile buckets, vocabularies).",
        [
            f"version {card['version']} served from `{info['destination']}`",
            f"model artifact `{', '.join(info['model'])}`",
            "inputs: " + ", ".join(f"`{k}`" for k in features.model_feature_keys()),
        ],
    ]
    if behavioral is None:
        checks = ["No behavioral checks were recorded for this run."]
    else:
        verdict = "passed" if behavioral["passed"] else f"FAILED ({behavioral['failed']})"
        checks = [
            f"Hand-written cases: {verdict}.",
            pd.DataFrame(behavioral["cases"])[["kind", "name", "passed", "expected", "got"]],
        ]
    limits = list(card["limits"])
    if card["small_slices"]:
        limits.append(
            f"Slices with fewer than {MIN_SLICE_EXAMPLES} examples (unreliable metrics): "
            + "; ".join(card["small_slices"])
        )
    return [
        ("Model", model),
        ("Model selection (cross-validation)", _selection_blocks(selection)),
        (
            "Data",
            [
                "Training, eval and test rows per span (TFDV statistics of each span's "
                "ingestion; train 80% / eval 10% / test 10% hash split). Transform and "
                "the Trainer read train (and eval for the Trainer's own evaluation); "
                "test is only read by TestEvaluator.",
                card["data"],
            ],
        ),
        (
            "Metrics on the eval split (gating Evaluator), overall and by slice",
            [card["eval"]],
        ),
        (
            "Metrics on the held-out test split (TestEvaluator, report only)",
            [card["test"] if not card["test"].empty else "No test evaluation in this run."],
        ),
        ("Thresholds and blessing", [card["blessing"], card["thresholds"]]),
        ("Behavioral checks", checks),
        ("Limits", [limits]),
        (
            "Lineage",
            [
                [
                    f"spans: {', '.join(map(str, info['spans']))}",
                    f"raw examples: {', '.join(info['examples'])}",
                    f"schema: {', '.join(info['schema'])}",
                    f"transform graph: {', '.join(info['transform_graph'])}",
                    f"trainer execution: {info['trainer']['execution_id']}",
                    f"evaluation: {', '.join(info['evaluation'])}",
                    f"baseline model: {', '.join(info['baseline_model']) or 'none (first model)'}",
                    f"pipeline run: {card['run_id']}",
                ]
            ],
        ),
    ]


def _plain_index(frame: pd.DataFrame) -> bool:
    """A 0..n-1 row number index, not worth showing."""
    return isinstance(frame.index, pd.RangeIndex)


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return "(empty)"
    return frame.to_markdown(floatfmt=".4g", index=not _plain_index(frame))


def render_markdown(card: dict) -> str:
    """The card as Markdown."""
    out = [
        f"# Model card: taxi, version {card['version']}",
        "",
        f"Generated {card['generated']} from ML Metadata, TFDV statistics and TFMA results.",
    ]
    for title, blocks in _sections(card):
        out += ["", f"## {title}", ""]
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                out.append(_markdown_table(block))
            elif isinstance(block, list):
                out += [f"- {item}" for item in block]
            else:
                out.append(block)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
    ".tbl{border-collapse:collapse;font-size:90%}.tbl td,.tbl th{border:1px solid #ccc;"
    "padding:2px 6px;text-align:right}.tbl.left td{text-align:left}code{background:#f4f4f4}"
)


def render_html(card: dict) -> str:
    """The card as one self-contained HTML page (inline style, no scripts, no links)."""
    from reporting.html_report import table_html

    def inline(text: str) -> str:
        parts = html.escape(str(text)).split("`")
        return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

    title = f"Model card: taxi, version {card['version']}"
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>Generated {html.escape(card['generated'])} from ML Metadata, TFDV statistics "
        "and TFMA results.</p>",
    ]
    for section, blocks in _sections(card):
        out.append(f"<h2>{html.escape(section)}</h2>")
        for block in blocks:
            if isinstance(block, pd.DataFrame):
                out.append(table_html(block, index=not _plain_index(block), left=True))
            elif isinstance(block, list):
                out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block) + "</ul>")
            else:
                out.append(f"<p>{inline(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_card(output_dir: str, version: str | None = None) -> tuple[str, str]:
    """Builds and writes the Markdown and HTML card; returns their paths."""
    card = build_card(output_dir, version)
    paths = []
    for extension, text in (("md", render_markdown(card)), ("html", render_html(card))):
        path = card_path(output_dir, card["version"], extension)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taxi-model-card",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output-dir",
        default=resources.default_run_dir(),
        help="the pipeline's --output-dir (default: $TAXI_RUN_DIR, else ./tfx_runs)",
    )
    parser.add_argument("--version", help="pushed version (default: the newest)")
    args = parser.parse_args(argv)
    try:
        markdown, page = write_card(os.path.abspath(args.output_dir), args.version)
    except (lineage.LineageError, runs_lib.RunNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"model card: {markdown}\nmodel card: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
