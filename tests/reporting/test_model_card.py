"""Model card of the pushed version, on the session's ``taxi_run``."""

import os
import re
import subprocess
import sys

import pytest
from taxi_runs import REPO_ROOT

from reporting import model_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_runner_wrote_the_card_outside_the_serving_dir(taxi_run):
    [version] = os.listdir(taxi_run["serving_dir"])
    markdown = model_card.card_path(taxi_run["output_dir"], version, "md")
    page = model_card.card_path(taxi_run["output_dir"], version, "html")
    assert os.path.isfile(markdown) and os.path.isfile(page)
    assert f"model card: {markdown} (+ .html)" in taxi_run["stdout"]
    # The serving dir holds SavedModels only.
    assert os.listdir(taxi_run["serving_dir"]) == [version]
    served = [name for _, _, files in os.walk(taxi_run["serving_dir"]) for name in files]
    assert "saved_model.pb" in served and not any("model_card" in name for name in served)


def test_card_content_from_mlmd_tfdv_tfma(taxi_run):
    card = model_card.build_card(taxi_run["output_dir"])
    assert card["version"] == os.listdir(taxi_run["serving_dir"])[0]
    assert list(card["data"].index) == [2013, 2014, 2015]
    assert set(card["data"].columns) == {"train", "eval", "test", "total"}
    assert (card["data"]["total"] == 400).all()  # 400 rows per sample span
    for split in ("eval", "test"):
        table = card[split]
        assert table.index[0] == "Overall" and "auc" in table.columns
        assert any(label.startswith("payment_type:") for label in table.index)
    assert card["test"].loc["Overall", "example_count"] == card["data"]["test"].sum()
    assert card["blessed"] is True and card["blessing"].startswith("BLESSED")
    assert set(card["thresholds"]["metric"]) == {"auc", "calibration"}
    assert card["behavioral"]["passed"]
    assert card["lineage"]["spans"] == [2013, 2014, 2015]
    # 3 x 400 rows: the hour slices are small, and the card says so.
    assert any(x.startswith("test trip_start_hour:") for x in card["small_slices"])

    text = model_card.render_markdown(card)
    for heading in (
        "## Data",
        "## Metrics on the eval split",
        "## Metrics on the held-out test split",
        "## Thresholds and blessing",
        "## Behavioral checks",
        "## Limits",
        "## Lineage",
    ):
        assert heading in text
    assert "Cash tips are not recorded" in text
    page = model_card.render_html(card)
    assert page.startswith("<!DOCTYPE html>") and "<table" in page
    assert not re.search(r"<script|<link|src=\"http|href=\"http", page)  # self-contained


def test_cli_writes_a_named_version(taxi_run, copy_of):
    output_dir = copy_of(taxi_run["output_dir"], "out")  # the CLI writes into it
    [version] = os.listdir(taxi_run["serving_dir"])
    markdown = model_card.card_path(output_dir, version, "md")
    page = model_card.card_path(output_dir, version, "html")
    for path in (markdown, page):  # the runner's cards, copied: the CLI must write its own
        os.remove(path)

    def cli(version):
        return subprocess.run(
            [sys.executable, "-m", "reporting.model_card", "--output-dir", output_dir]
            + ["--version", version],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = cli(version)
    assert result.returncode == 0, result.stderr[-2000:]
    assert page in result.stdout
    # The written card is this version's card, as built from MLMD, TFDV and TFMA.
    with open(markdown) as f:
        written = f.read()
    generated = re.search(r"Generated (\S+) from", written).group(1)
    card = dict(model_card.build_card(output_dir, version), generated=generated)
    assert card["version"] == version
    assert written == model_card.render_markdown(card)
    with open(page) as f:
        assert f.read() == model_card.render_html(card)
    bad = cli("1")
    assert bad.returncode == 1 and "no pushed model with version 1" in bad.stderr
