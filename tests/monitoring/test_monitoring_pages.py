"""`taxi-report --monitoring`: a page per request-log window (real `window`/`quality` outputs)."""

import json
import os
import re
import shutil
import subprocess

import pytest

from monitoring import ab_report, alerts, cli
from reporting import cli as report_cli
from reporting import monitoring_pages

pytestmark = pytest.mark.slow  # TFDV statistics of three windows


@pytest.fixture
def monitoring_out(tmp_path, write_log, log_prefix, make_rows, make_log):
    """Windows [1500, 2500) (normal) and [2500, 3500) (shifted fares/payments), quality of the
    second (150 of 200 predictions right), an alert log of both formats and an A/B report."""
    write_log([make_log(make_rows(200, seed=1), 1000)], seq=1)
    write_log([make_log(make_rows(200, seed=2), 2000)], seq=2)
    write_log(
        [make_log(make_rows(200, seed=3, shift=True), 3000, version=2, request_id="r3")], seq=3
    )
    out = tmp_path / "out"
    for start, end in (("1500", "2500"), ("2500", "3500")):
        argv = ["window", "--logs", log_prefix, "--start", start, "--end", end, "--out", str(out)]
        assert cli.main(argv) in (cli.EXIT_OK, cli.EXIT_FOUND)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\n" + "".join(f"r3/{i},{int(i < 50)}\n" for i in range(200)))
    argv = [
        "quality",
        "--logs",
        log_prefix,
        "--labels",
        str(labels),
        "--start",
        "2500",
        "--end",
        "3500",
    ]
    assert cli.main(argv + ["--out", str(out)]) == cli.EXIT_OK
    log = tmp_path / "alerts.jsonl"
    alerts.to_log(
        str(log),
        [
            alerts.Alert("serving drift", "drift_features", 2, 0, "warning", "taxi", 3600.0),
            # checked much later: still the newest window's; before every window: no page
            alerts.Alert("p99 latency", "p99_latency_ms", 300, 100, "warning", "taxi", 9999.0),
            alerts.Alert("startup check", "error_rate", 0.5, 0.01, "critical", "taxi", 100.0),
        ],
    )

    with open(log, "a") as f:
        record = {
            "received": "1970-01-01T00:58:20+00:00",  # 3500 s
            "status": "firing",
            "alertname": "TaxiModelHighErrorRate",
            "labels": {"severity": "critical"},
            "summary": "taxi: 50% of requests fail",
            "handled": "rolled back taxi 2 -> 1",
        }
        f.write(json.dumps(record) + "\n")
    report = ab_report.build(
        {
            "stable": {"labelled": 300, "correct": 240, "accuracy": 0.8, "ci95": [0.75, 0.84]},
            "canary": {"labelled": 300, "correct": 200, "accuracy": 0.6667, "ci95": [0.61, 0.72]},
            "test": "z-test",
            "alpha": 0.05,
            "min_samples": 200,
            "z": -3.7,
            "p_value": 0.0001,
            "verdict": "rollback",
        },
        {"stable": 1, "canary": 2},
        {},
        {"decision": "abort"},
    )
    report["created"] = 3550.0
    ab_report.write(str(out / "ab-3550-abort"), report)
    shadow = {  # `taxi-monitor shadow --out` (shadow.json)
        "start": 2600.0,
        "end": 3400.0,
        "pairs": {
            "1->2": {
                "stable_version": 1,
                "shadow_version": 2,
                "rows": 180,
                "agreement": 0.9,
                "mean_abs_diff": 0.04,
                "max_abs_diff": 0.31,
                "shadow_error_rate": 0.0,
                "verdict": "reject",
                "why": "shadow accuracy 0.6000 < stable 0.8000 - 0.05",
            }
        },
        "problems": [],
    }
    (out / "shadow-2600-3400").mkdir()
    (out / "shadow-2600-3400" / "shadow.json").write_text(json.dumps(shadow))
    return out, log


def test_pages(monitoring_out, tmp_path):
    out, log = monitoring_out
    pages = tmp_path / "pages"
    assert (
        report_cli.main(
            ["--monitoring", str(out), "--alerts", str(log), "--output-dir", str(pages)]
        )
        == 0
    )
    assert sorted(os.listdir(pages)) == [
        "index.html",
        "window-1500-2500.html",
        "window-2500-3500.html",
    ]
    index = (pages / "index.html").read_text()
    assert 'href="window-2500-3500.html"' in index and "rollback" in index
    assert re.search(
        r'alt="Features above threshold per window" src="data:image/png;base64,[^"]{1000,}"', index
    )

    calm = (pages / "window-1500-2500.html").read_text()
    assert "no skew or drift" in calm and "No alerts." in calm and "No canary decision." in calm
    assert "No late labels joined for this window." in calm

    page = (pages / "window-2500-3500.html").read_text()
    summary = json.loads((out / "window-2500-3500" / "summary.json").read_text())
    drifted = sorted(
        {f["feature"] for f in summary["findings"] if f["kind"] == "drift" and f["exceeded"]}
    )
    assert "fare" in drifted and "payment_type" in drifted
    assert f"{len(drifted)} features above threshold" in page
    for feature in drifted:
        assert re.search(
            rf"<td>{feature}</td>(?:(?!</tr>).)*<td>[a-z, ]*drift[a-z, ]*</td>", page, re.S
        )
    assert re.search(
        r'alt="Skew and drift per feature" src="data:image/png;base64,[^"]{1000,}"', page
    )
    assert re.search(r"<td>2</td>\s*<td>200</td>\s*<td>0.75</td>", page)  # version 2: 150/200 right
    assert (
        "serving drift" in page
        and "TaxiModelHighErrorRate" in page
        and "rolled back taxi 2 -&gt; 1" in page
    )
    assert "<td>rollback</td>" in page and "<td>abort</td>" in page
    assert "p99 latency" in page and "startup check" not in page + calm
    assert "<td>reject</td>" in page and "shadow accuracy 0.6000 &lt; stable 0.8000" in page
    assert "No shadow comparison." in calm
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page


def test_bad_input(monitoring_out, tmp_path, capsys):
    out, log = monitoring_out
    with open(log, "a") as f:
        f.write('{"nonsense": 1}\n')
    assert report_cli.main(["--monitoring", str(out), "--alerts", str(log)]) == 2
    assert f"{log}:5: not an alert log record" in capsys.readouterr().err
    assert report_cli.main(["--monitoring", str(tmp_path / "empty")]) == 2
    assert "no window-<start>-<end>/summary.json" in capsys.readouterr().err


def test_window_page_in_headless_chromium(monitoring_out, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium package is not installed (apt-get install -y chromium)")
    import numpy as np
    from PIL import Image

    out, log = monitoring_out
    (page,) = [
        p
        for p in monitoring_pages.write_pages(str(out), str(tmp_path / "pages"), [str(log)])
        if "2500-3500" in p
    ]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            "file://" + page,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (1600, 1280)
    assert (pixels.min(axis=2) < 235).mean() > 0.03  # not blank
    top = pixels[:250]
    red = ((top[..., 0] > 150) & (top[..., 1] < 90) & (top[..., 2] < 90)).sum()
    assert red > 200  # the red "features above threshold" badge
