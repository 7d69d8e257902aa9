"""Notebooks and the HTML report against a real pipeline run (see conftest)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

import nbformat
import pytest
from nbclient import NotebookClient
from reporting_support import BAD_HOUR, BAD_PAYMENT_TYPE, REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOTEBOOKS = os.path.join(REPO_ROOT, "notebooks")


def execute_notebook(name: str, monkeypatch, run_dir: str, run_id: str | None = None) -> str:
    """Runs ``notebooks/<name>.ipynb`` headless; returns all its outputs as text."""
    monkeypatch.setenv("TAXI_RUN_DIR", run_dir)
    if run_id:
        monkeypatch.setenv("TAXI_RUN_ID", run_id)
    else:
        monkeypatch.delenv("TAXI_RUN_ID", raising=False)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    )
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    ).execute()
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", (
                f"{name}: {output.get('ename')}: {output.get('evalue')}"
            )
            if output.output_type == "stream":
                texts.append(output.text)
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in output.get("data", {}):
                    texts.append(output["data"][mime])
            if "image/png" in output.get("data", {}):
                texts.append("<<image/png>>")
    return "\n".join(texts)


def test_runs_are_found_through_mlmd(pipeline_runs):
    from lineage import runs

    store = runs.RunStore(pipeline_runs.run_dir)
    good, bad = store.get_run(pipeline_runs.good_run_id), store.get_run()
    assert bad.run_id == pipeline_runs.bad_run_id
    assert bad.failed_nodes == ["AnomaliesGate"] and bad.kind == "stopped"
    assert good.kind == "train" and good.succeeded
    assert store.get_run(good.executions["Trainer"]).run_id == good.run_id
    assert store.span_of_run(bad) == 2017
    assert store.trained_spans(good) == [2013, 2014, 2015, 2016]
    assert sorted(store.statistics_by_span()) == [2013, 2014, 2015, 2016, 2017]


def test_data_validation_notebook_explains_injected_anomalies(pipeline_runs, monkeypatch):
    text = execute_notebook(
        "data_validation", monkeypatch, pipeline_runs.run_dir
    )  # newest = anomalous run
    assert f"inspecting run {pipeline_runs.bad_run_id}" in text
    assert "span: 2017 | previous span: 2016" in text
    assert BAD_PAYMENT_TYPE in text  # TFDV's description names the unexpected value
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in text and "INT_TYPE_BIG_INT" in text
    assert f"Unexpectedly large value: {BAD_HOUR}" in text
    assert (
        "not in the schema&#x27;s domain" in text or "not in the schema's domain" in text
    )  # explanation
    # Drift of the anomalous span: a third of the payment types changed.
    assert re.search(r"features above the drift threshold: .*payment_type", text)


def test_data_validation_notebook_on_a_clean_run_by_id(pipeline_runs, monkeypatch):
    text = execute_notebook(
        "data_validation", monkeypatch, pipeline_runs.run_dir, pipeline_runs.good_run_id
    )
    assert f"inspecting run {pipeline_runs.good_run_id}" in text
    assert "span: 2016 | previous span: 2015" in text
    assert "No anomalies" in text
    assert "'payment_type'" in text and "'Credit Card'" in text  # the curated schema's domain


def test_model_analysis_notebook(pipeline_runs, monkeypatch):
    text = execute_notebook("model_analysis", monkeypatch, pipeline_runs.run_dir)
    # The newest run has no evaluation: the notebook picks the newest one that has.
    assert f"inspecting run {pipeline_runs.good_run_id}" in text
    assert "BLESSED" in text
    assert "auc" in text and "calibration" in text
    assert "trip_start_hour:23" in text and "payment_type:Cash" in text
    assert "<<image/png>>" in text
    assert "validation_ok: true" in text


def test_lineage_notebook(pipeline_runs, monkeypatch):
    versions = sorted(os.listdir(pipeline_runs.serving_dir))
    text = execute_notebook("lineage", monkeypatch, pipeline_runs.run_dir)
    assert f"served version: {versions[-1]}" in text
    assert f"version {versions[-1]} was trained on spans [2013, 2014, 2015, 2016]" in text
    assert "span 2016: 1 model(s), pushed as" in text
    assert pipeline_runs.good_run_id in text and pipeline_runs.bad_run_id in text
    assert "failed at AnomaliesGate" in text


@pytest.fixture(scope="module")
def reports(pipeline_runs, tmp_path_factory) -> dict[str, str]:
    from reporting import cli

    out = tmp_path_factory.mktemp("reports")
    assert cli.main(["--run-dir", pipeline_runs.run_dir, "--all", "--output-dir", str(out)]) == 0
    paths = {}
    for run_id in (pipeline_runs.good_run_id, pipeline_runs.bad_run_id):
        path = out / ("run-" + run_id.replace(":", "-") + ".html")
        assert path.exists(), sorted(os.listdir(out))
        paths[run_id] = str(path)
    # 4 backfills (the newest span among them), the training run, the anomalous run
    assert len(os.listdir(out)) == 6
    return paths


def _no_network_references(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "@import" not in html and "<link" not in html.lower()


def test_report_of_training_run(pipeline_runs, reports):
    html = open(reports[pipeline_runs.good_run_id], encoding="utf-8").read()
    _no_network_references(html)
    for section in (
        "Data summary",
        "Anomalies",
        "Drift between spans",
        "Model analysis",
        "Lineage",
    ):
        assert section in html
    assert "No anomalies" in html
    assert "2015 → 2016" in html and "Jensen-Shannon" in html and "L-infinity" in html
    assert re.search(
        r'<img class="plot" alt="AUC per slice" src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"',
        html,
    )
    assert "trip_start_hour:12" in html and "payment_type:Credit Card" in html
    assert "Blessing decision" in html and "BLESSED" in html
    assert "Pushed model back to its data" in html and "span 2013" in html


def test_report_shows_each_gates_evidence(pipeline_runs, reports):
    from lineage import runs as runs_lib
    from reporting import gates, model_analysis

    html = open(reports[pipeline_runs.good_run_id], encoding="utf-8").read()
    store = runs_lib.RunStore(pipeline_runs.run_dir)
    g = gates.for_run(store, store.get_run(pipeline_runs.good_run_id))
    assert g.tuner is not None and g.selection and g.behavioral and g.canary
    assert g.test is not None and not g.test.empty
    section = html[html.index('<h2 id="gates">') : html.index('<h2 id="lineage">')]
    for alt in ("Tuner trials", "AUC per fold", "Test AUC per slice"):
        assert re.search(
            rf'alt="{alt}" src="data:image/png;base64,[A-Za-z0-9+/=]{{1000,}}"', section
        )
    assert f"{len(g.tuner)} trial" in section
    best = g.tuner.iloc[0]
    assert f"<th>{best.name}</th>" in section and f"{best['score']:.4g}" in section
    cv = g.selection
    assert f"chose <b>{cv['chosen_family']}</b>" in section
    for info in cv["families"].values():
        auc = info["summary"]["auc"]
        assert f"[{auc['ci_low']:.4f}, {auc['ci_high']:.4f}]" in section  # the CI
        for fold in info["folds"]:
            assert f"{fold['auc']:.4g}" in section  # each fold's AUC
    overall_test_auc = model_analysis.sliced_metrics(g.test).loc["Overall", "auc"]
    assert f"{overall_test_auc:.4g}" in section and "trip_start_hour:12" in section
    for case in g.behavioral["cases"]:
        assert case["name"] in section
    probes = len(g.canary["checks"])
    assert probes > 3 and "rest_predict" in section and "grpc_predict" in section


def test_report_of_anomalous_run(pipeline_runs, reports):
    html = open(reports[pipeline_runs.bad_run_id], encoding="utf-8").read()
    _no_network_references(html)
    assert "stopped at AnomaliesGate" in html
    assert BAD_PAYMENT_TYPE in html and "INT_TYPE_BIG_INT" in html
    assert "2016 → 2017" in html
    row = re.search(r"<tr><th>payment_type</th><td>L-infinity</td>.*?</tr>", html).group(0)
    assert re.search(r'<td class="bad">0\.3\d\d</td></tr>$', row), (
        row
    )  # a third of the rows became Bitcoin
    assert "No model: the run stopped at AnomaliesGate before training." in html
    assert "No Tuner in this run." in html and "No serving canary in this run." in html


def test_report_cli_single_run_and_errors(pipeline_runs, tmp_path, capsys):
    from reporting import cli

    target = tmp_path / "one.html"
    assert (
        cli.main(
            [
                "--run-dir",
                pipeline_runs.run_dir,
                "--run",
                pipeline_runs.good_run_id,
                "--output",
                str(target),
            ]
        )
        == 0
    )
    assert target.stat().st_size > 10_000
    assert cli.main(["--run-dir", pipeline_runs.run_dir, "--run", "no-such-run"]) == 1
    assert "no run or execution 'no-such-run'" in capsys.readouterr().err
    assert cli.main(["--run-dir", pipeline_runs.run_dir, "--list"]) == 0
    assert pipeline_runs.bad_run_id in capsys.readouterr().out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_screenshot_in_headless_chromium(pipeline_runs, reports, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Debian's chromium package is not installed (apt-get install -y chromium)")
    import numpy as np
    from PIL import Image

    for run_id, path in reports.items():
        shot = tmp_path / f"{len(os.listdir(tmp_path))}.png"
        profile = tempfile.mkdtemp(dir=tmp_path)
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1280,2000",
                "file://" + path,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
        assert pixels.shape[:2] == (2000, 1280)
        non_white = (pixels.min(axis=2) < 235).mean()
        colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
        assert non_white > 0.03, f"{run_id}: screenshot is almost blank ({non_white:.3%} non-white)"
        assert colours > 50, f"{run_id}: only {colours} colours"
        # The red 'stopped' / green 'blessed' badge is rendered near the top.
        top = pixels[:200]
        red = ((top[..., 0] > 150) & (top[..., 1] < 90) & (top[..., 2] < 90)).sum()
        green = ((top[..., 1] > 110) & (top[..., 0] < 80) & (top[..., 2] < 110)).sum()
        assert (red if run_id == pipeline_runs.bad_run_id else green) > 200, json.dumps(
            {"red": int(red), "green": int(green)}
        )
