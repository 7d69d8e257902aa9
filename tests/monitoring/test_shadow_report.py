"""`taxi-monitor shadow`: agreement, |difference|, latency and same-request quality, pinned."""

import json

import numpy as np
import pytest

from monitoring import cli, quality, shadow
from serving.errors import Code, ServingError
from serving.request_log import RequestLogger
from serving.shadow import ShadowMirror

STABLE = [0.2, 0.6, 0.9, 0.4, 0.7]
SHADOW = [0.3, 0.4, 0.95, 0.45]  # the fifth row's shadow batch fails
LABELS = [0, 1, 1, 0, 1]


class Signature:
    key = "serving_default"


class Servable:
    """Answers probabilities [1 - q, q] with q = SHADOW[x] (or fails)."""

    name = "taxi"

    def __init__(self, version, fail=False):
        self.version = version
        self.fail = fail
        self.signatures = {"serving_default": Signature()}

    def enter(self):
        pass

    def exit(self):
        pass

    def run(self, signature, feeds):
        if self.fail:
            raise ServingError(Code.INVALID_ARGUMENT, "shadow broke")
        q = np.array([SHADOW[int(i)] for i in feeds["x"].ravel()], np.float32)
        return {"probabilities": np.stack([1 - q, q], axis=1)}


class Manager:
    def __init__(self, servable):
        self.servable = servable

    def resolve(self, name, version=None, label=None):
        if version != self.servable.version:
            raise ServingError(Code.NOT_FOUND, "no")
        return self.servable


def _write_shadow_logs(prefix):
    """Rows r0..r3 through a working shadow (v2), r4 through a failing one."""
    stable = Servable(1)
    logger = RequestLogger()
    for rows, candidate in ((range(4), Servable(2)), (range(4, 5), Servable(2, fail=True))):
        mirror = ShadowMirror(
            Manager(candidate), 1.0, version=2, request_logger=logger, log_prefix=prefix
        )
        for i in rows:
            p = np.float32(STABLE[i])
            mirror.offer(
                stable,
                "serving_default",
                {"x": np.array([[i]], np.int64)},
                {"probabilities": np.array([[1 - p, p]], np.float32)},
                100.0 * (i + 1),
                b"r%d" % i,
            )
        mirror.close()
    logger.close()


def _labels():
    return quality.Labels({f"r{i}": y for i, y in enumerate(LABELS)})


def test_compare_pins_agreement_difference_latency_and_quality(tmp_path):
    prefix = str(tmp_path / "shadow" / "taxi")
    _write_shadow_logs(prefix)
    found = shadow.read(prefix)
    assert found.malformed == 0 and len(found.rows) == 5
    result = shadow.compare(found.rows, _labels())
    assert list(result) == ["1->2"]
    e = result["1->2"]
    assert (e["rows"], e["compared"], e["shadow_errors"]) == (5, 4, 1)
    assert e["shadow_error_rate"] == pytest.approx(0.2)
    assert (e["dropped"], e["dropped_share"]) == (0, 0.0)
    assert e["agreement"] == pytest.approx(0.75)  # row 1: stable 0.6 positive, shadow 0.4 not
    assert e["mean_abs_diff"] == pytest.approx(0.1, abs=1e-6)
    assert e["max_abs_diff"] == pytest.approx(0.2, abs=1e-6)
    assert e["latency"]["stable"]["p50_ms"] == pytest.approx(0.3)  # 100..500 us
    assert e["latency"]["stable"]["p99_ms"] == pytest.approx(0.496)
    assert e["latency"]["shadow"]["p50_ms"] > 0
    # the same four answered requests for both (r4 has no shadow answer)
    assert e["labelled"] == 4
    assert e["stable_quality"] == {"labelled": 4, "accuracy": 1.0, "auc": 1.0}
    assert e["shadow_quality"] == {"labelled": 4, "accuracy": 0.75, "auc": 0.75}
    rows = sorted(found.rows, key=lambda r: r["request_id"])
    assert rows[4]["error"] == "shadow broke" and rows[4]["shadow"] is None


def test_calls_dropped_on_a_full_shadow_queue_are_reported(tmp_path):
    import threading

    class Held(Servable):
        def __init__(self):
            super().__init__(2)
            self.entered, self.release = threading.Event(), threading.Event()

        def run(self, signature, feeds):
            self.entered.set()
            assert self.release.wait(60)
            return super().run(signature, feeds)

    prefix = str(tmp_path / "shadow" / "taxi")
    candidate, logger = Held(), RequestLogger()
    mirror = ShadowMirror(
        Manager(candidate), 1.0, version=2, request_logger=logger, log_prefix=prefix, queue_size=1
    )

    def offer(i):
        p = np.float32(STABLE[i])
        x, probabilities = np.array([[i]], np.int64), np.array([[1 - p, p]], np.float32)
        mirror.offer(
            Servable(1), "serving_default", {"x": x}, {"probabilities": probabilities}, 1.0
        )

    offer(0)
    assert candidate.entered.wait(60)  # the shadow holds r0: r1 queues, r2 and r3 are dropped
    for i in (1, 2, 3):
        offer(i)
    candidate.release.set()
    mirror.close()
    logger.close()
    e = shadow.compare(shadow.read(prefix).rows)["1->2"]
    assert (e["rows"], e["dropped"], e["dropped_share"]) == (2, 2, 0.5)
    report = shadow.markdown(
        {"pairs": {"1->2": {**e, "verdict": "pass", "why": ""}}, "threshold": 0.5, "problems": []}
    )
    assert "dropped on a full shadow queue: 2 (50.00%)" in report


@pytest.mark.parametrize(
    "policy, expected",
    [
        (shadow.Policy(5, 0.25, 4, 0.3), "pass"),
        (shadow.Policy(5, 0.25, 4, 0.2), "reject"),  # 0.75 < 1.0 - 0.2
        (shadow.Policy(5, 0.1, 4, 0.3), "reject"),  # error rate 0.2 > 0.1
        (shadow.Policy(6, 0.25, 4, 0.3), "insufficient data"),
        (shadow.Policy(5, 0.25, 5, 0.3), "insufficient data"),
    ],
)
def test_verdict(tmp_path, policy, expected):
    prefix = str(tmp_path / "taxi")
    _write_shadow_logs(prefix)
    entry = shadow.compare(shadow.read(prefix).rows, _labels())["1->2"]
    assert shadow.verdict(entry, policy)[0] == expected


def test_cli_writes_the_report_and_exits_by_verdict(tmp_path, capsys):
    prefix = str(tmp_path / "shadow" / "taxi")
    _write_shadow_logs(prefix)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\n" + "".join(f"r{i},{y}\n" for i, y in enumerate(LABELS)))
    argv = ["shadow", "--logs", prefix, "--labels", str(labels), "--out", str(tmp_path / "out")]
    argv += ["--min-rows", "5", "--min-labelled", "4", "--max-error-rate", "0.25"]
    assert cli.main(argv) == 1  # shadow accuracy 0.75 < stable 1.0 - 0.02
    summary = json.loads((tmp_path / "out" / "shadow.json").read_text())
    entry = summary["pairs"]["1->2"]
    assert entry["verdict"] == "reject" and entry["agreement"] == 0.75
    assert "| shadow 2 |" in (tmp_path / "out" / "shadow.md").read_text()
    assert cli.main([*argv, "--max-accuracy-drop", "0.3"]) == 0
    missing = ["shadow", "--logs", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]
    assert cli.main(missing) == 2
    assert "no shadow log files match" in capsys.readouterr().err
