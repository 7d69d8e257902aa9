"""The canary's closed loop on known answers, against a real server.

A real `serving.server` serves two real SavedModels of the taxi task; the
canary is deployed through the model config file (`canary.deploy`), bundled
2015 trips are sent with request ids, the server's request logs and
Prometheus metrics are read, late labels arrive, and `decide.evaluate`
decides. Known answers: the stable and canary models are

* the tip rule: "a big tip iff paid by credit card" (probability 0.9, else 0.1),
  right on 105 of the 120 trips sent to the stable label and 106 of the 120
  sent to the canary label (`SAMPLE`, computed in `_expected`);
* the same rule made worse after blessing: a wrapper SavedModel whose
  serving signature answers 1 - p (tests/saved_model_faults.py
  `save_inverted`), as a new version dir next to the stable one; right on 15
  and 14 of the same trips;
* the same rule broken after blessing (`save_failing`): it loads, but every
  call fails, which the error-rate guard rail sees in the server's metrics.

Trips go to the `stable`/`canary` labels explicitly (even/odd trips): the
server's own share split is random, and these tests pin exact counts; the
split is tested in tests/serving/test_canary_routing.py. After a decision the
server must serve the kept version only, to requests naming no version.
"""

import csv
import os
import random
import time

import pytest
import requests
from saved_model_faults import save_failing, save_inverted

from components.features import TIP_FRACTION
from monitoring import canary, decide, quality, request_logs, rollback, server_metrics

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "taxi"
SAMPLE = 240  # trips of span-2015 (random.Random(12)): even ones to stable, odd to canary
INPUTS = {
    "payment_type": tf.string,
    "company": tf.string,
    "fare": tf.float32,
    "trip_miles": tf.float32,
    "trip_seconds": tf.float64,
    "trip_start_hour": tf.float64,
}
# Latency on a shared 2-core machine is not what these tests decide on: the p99
# rail gets a margin no request reaches (the error-rate rail keeps its default).
POLICY = dict(min_samples=100, max_checks=10, p99_margin_ms=60_000.0)


class _TipRule(tf.Module):
    @tf.function(input_signature=[{k: tf.TensorSpec([None], t, name=k) for k, t in INPUTS.items()}])
    def serve(self, feats):
        card = tf.equal(feats["payment_type"], "Credit Card")
        return {"probabilities": tf.where(card, 0.9, 0.1)[:, None]}


def save_tip_rule(export_dir: str) -> str:
    module = _TipRule()
    tf.saved_model.save(
        module, export_dir, signatures={"serving_default": module.serve.get_concrete_function()}
    )
    return export_dir


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def big_tipper(row: dict) -> int:
    """The pipeline's label: tips > 20% of the fare."""
    return int(float(row["tips"] or 0) > TIP_FRACTION * float(row["fare"] or 0))


def _sample() -> list[dict]:
    with open(os.path.join(REPO, "data", "taxi", "span-2015", "data.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return random.Random(12).sample(rows, SAMPLE)


def _expected(rows: list[dict], inverted: bool) -> int:
    """Trips the (inverted) tip rule gets right, computed here without the server."""
    return sum(
        ((r["payment_type"] == "Credit Card") != inverted) == bool(big_tipper(r)) for r in rows
    )


class Loop:
    """A server with stable version 1 and canary version 2 deployed, request logging on."""

    def __init__(self, tmp_path, start_server, fake_store, stable_saver, canary_saver):
        self.tmp = tmp_path
        base = tmp_path / "models"
        stable_saver(str(base / "1"))
        canary_saver(str(base / "2"))
        self.metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])
        self.logs = str(tmp_path / "logs" / MODEL)
        self.config = str(tmp_path / "models.config")
        with open(self.config, "w") as f:
            f.write(
                f"model_config_list {{ config {{ name: '{MODEL}' base_path: '{base}' "
                "model_platform: 'tensorflow' model_version_policy { specific { versions: 1 } } "
                f"logging_config {{ log_collector_config {{ filename_prefix: '{self.logs}' }} "
                "sampling_config { sampling_rate: 1.0 } } } }"
            )
        monitoring = tmp_path / "monitoring.config"
        monitoring.write_text(
            'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
        )
        self.server = start_server(
            [
                f"--model_config_file={self.config}",
                "--model_config_file_poll_wait_seconds=1",
                f"--monitoring_config_file={monitoring}",
                "--canary_traffic_share=0.5",
            ],
            ready_model=MODEL,
        )
        self.deploy = canary.deploy(
            self.metadata, self.config, MODEL, 2, self.server.url, "test", "pytest", timeout=120
        )
        self.labels = str(tmp_path / "labels.csv")
        with open(self.labels, "w") as f:
            f.write("request_id,label\n")

    def post(self, row: dict, label: str | None = None, request_id: str = ""):
        path = f"/labels/{label}" if label else ""
        instance = {
            k: row[k] if t == tf.string else float(row[k] or "nan") for k, t in INPUTS.items()
        }
        return requests.post(
            f"{self.server.url}/v1/models/{MODEL}{path}:predict",
            json={"instances": [instance]},
            headers={"x-request-id": request_id} if request_id else {},
            timeout=30,
        )

    def predict(self, row: dict) -> float:
        """The probability served to a request naming no version or label."""
        response = self.post(row)
        response.raise_for_status()
        return response.json()["predictions"][0][0]

    def send(self, rows: list[dict]) -> dict:
        """Even rows to `stable`, odd to `canary`, one request each; returns the
        (request id, label) pairs and the error responses, once every answered
        request is in the request logs."""
        pairs, errors = [], []
        for i, row in enumerate(rows):
            request_id = f"trip-{i}"
            response = self.post(row, "stable" if i % 2 == 0 else "canary", request_id)
            if response.ok:
                pairs.append((request_id, big_tipper(row)))
            else:
                errors.append((request_id, response.status_code, response.text))
        ids = {request_id for request_id, _ in pairs}
        deadline = time.monotonic() + 120  # the server's log writer flushes every 0.2 s
        while time.monotonic() < deadline:
            window = request_logs.read_window(self.logs, float("-inf"), float("inf"))
            if ids <= {p["request_id"] for p in window.predictions}:
                return {"pairs": pairs, "errors": errors}
            time.sleep(0.2)
        raise TimeoutError(f"not all {len(ids)} requests in the request logs {self.logs}")

    def label(self, pairs) -> None:
        with open(self.labels, "a") as f:
            f.writelines(f"{request_id},{label}\n" for request_id, label in pairs)

    def decide(self) -> decide.Decision:
        metrics = server_metrics.fetch(f"{self.server.url}/monitoring/prometheus/metrics")
        return decide.evaluate(
            self.metadata,
            self.config,
            MODEL,
            self.logs,
            self.labels,
            metrics_text=metrics,
            policy=decide.Policy(**POLICY),
            report_dir=str(self.tmp / "reports"),
            requested_by="pytest",
        )

    def serves_only(self, version: int, rows: list[dict], expected: list[float]) -> None:
        """Waits (bounded) until only `version` is AVAILABLE; then requests naming no
        version or label get `expected`."""
        deadline = time.monotonic() + 120  # the server reads the config file every 1 s
        while time.monotonic() < deadline:
            if canary.available_versions(self.server.url, MODEL) == [version]:
                break
            time.sleep(0.2)
        assert canary.available_versions(self.server.url, MODEL) == [version]
        got = [self.predict(row) for row in rows]
        assert got == pytest.approx(expected, abs=1e-6)

    def actions(self) -> list[str]:
        store = rollback.writable_store(self.metadata)
        return [
            e.properties["action"].string_value
            for e in store.get_executions_by_type(canary.EXECUTION_TYPE)
        ]


def _rule(row: dict) -> float:
    return 0.9 if row["payment_type"] == "Credit Card" else 0.1


def _faulty_saver(tmp_path, save_faulty):
    """Saves the tip rule made faulty after blessing by `save_faulty`."""

    def save(export_dir):
        return save_faulty(save_tip_rule(str(tmp_path / "rule")), export_dir)

    return save


def test_the_known_answers():
    rows = _sample()
    assert (_expected(rows[0::2], False), _expected(rows[1::2], False)) == (105, 106)
    assert (_expected(rows[0::2], True), _expected(rows[1::2], True)) == (15, 14)


def test_the_faults_injected_after_blessing(tmp_path):
    rule_dir = save_tip_rule(str(tmp_path / "rule"))
    rows = _sample()[:20]
    feats = {
        k: tf.constant([r[k] if t == tf.string else float(r[k] or "nan") for r in rows], t)
        for k, t in INPUTS.items()
    }

    def probabilities(export_dir):
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        return list(serve(**feats)["probabilities"].numpy()[:, 0])

    assert probabilities(rule_dir) == pytest.approx([_rule(r) for r in rows])
    inverted = save_inverted(rule_dir, str(tmp_path / "inverted"))
    assert probabilities(inverted) == pytest.approx([1 - _rule(r) for r in rows])
    unchanged = save_inverted(rule_dir, str(tmp_path / "unchanged"), signatures=[])
    assert probabilities(unchanged) == pytest.approx([_rule(r) for r in rows])
    failing = save_failing(rule_dir, str(tmp_path / "failing"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="injected fault"):
        probabilities(failing)


def _check_figures(decision, stable_correct, canary_correct, z, p_value):
    f = decision.figures
    assert (f["stable_version"], f["canary_version"]) == ("1", "2")
    assert (f["stable_n"], f["canary_n"]) == (120, 120)
    assert f["stable_accuracy"] == pytest.approx(stable_correct / 120)
    assert f["canary_accuracy"] == pytest.approx(canary_correct / 120)
    assert f["z"] == pytest.approx(z, abs=1e-3)
    assert f["p_value"] == pytest.approx(p_value, abs=1e-4)
    # The server's per-version metrics: every trip sent was counted, none failed.
    assert (f["stable_requests"], f["canary_requests"]) == (120, 120)
    assert (f["stable_errors"], f["canary_errors"]) == (0, 0)
    assert f["guard_rails"] == "none"


def test_a_canary_made_worse_after_blessing_is_aborted(tmp_path, start_server, fake_store):
    loop = Loop(
        tmp_path, start_server, fake_store, save_tip_rule, _faulty_saver(tmp_path, save_inverted)
    )
    rows = _sample()
    loop.label(loop.send(rows)["pairs"])
    decision = loop.decide()
    # Pooled one-sided z-test: 105/120 vs 14/120.
    _check_figures(decision, 105, 14, z=-11.748, p_value=0.0)
    assert decision.action == "abort"
    assert decision.reason == "A/B: canary accuracy lower (z=-11.748, p=0.0000)"
    assert loop.actions() == ["deploy", "abort"]
    loop.serves_only(1, rows[:20], [_rule(r) for r in rows[:20]])


def test_a_clearly_better_canary_is_promoted(tmp_path, start_server, fake_store):
    loop = Loop(
        tmp_path, start_server, fake_store, _faulty_saver(tmp_path, save_inverted), save_tip_rule
    )
    rows = _sample()
    loop.label(loop.send(rows)["pairs"])
    decision = loop.decide()
    _check_figures(decision, 15, 106, z=11.748, p_value=1.0)
    assert decision.action == "promote"
    assert decision.reason == "A/B: canary not worse (z=11.748, p=1.0000, n=120/120)"
    assert loop.actions() == ["deploy", "promote"]
    loop.serves_only(2, rows[:20], [_rule(r) for r in rows[:20]])


def test_late_labels_hold_the_decision_until_enough_arrive(tmp_path, start_server, fake_store):
    # Stable and canary are the same rule (two versions): equal, so promoted once
    # 100 labelled trips per version are in, held before.
    loop = Loop(tmp_path, start_server, fake_store, save_tip_rule, save_tip_rule)
    rows = _sample()
    pairs = loop.send(rows)["pairs"]
    no_labels = loop.decide()
    assert no_labels.action == "hold"
    assert no_labels.reason == (
        "insufficient data, check 1 of 10 (labelled stable/canary 0/0, need 100 each)"
    )
    loop.label(pairs[:198])  # 99 trips of each version
    few = loop.decide()
    assert few.action == "hold" and (few.figures["stable_n"], few.figures["canary_n"]) == (99, 99)
    assert few.figures["z"] is None and few.reason.startswith("insufficient data, check 2 of 10")
    # Nothing changed while holding: both versions serve, the labels are in place.
    assert canary.available_versions(loop.server.url, MODEL) == [1, 2]
    assert canary.deployed(loop.metadata, loop.config, MODEL)["candidate"] == 2
    loop.label(pairs[198:])
    decision = loop.decide()
    # 105/120 vs 106/120: z = 0.198, one-sided p = 0.578 (pooled variance).
    _check_figures(decision, 105, 106, z=0.198, p_value=0.5785)
    assert decision.action == "promote"
    assert loop.actions() == ["deploy", "hold", "hold", "promote"]
    loop.serves_only(2, rows[:20], [_rule(r) for r in rows[:20]])
    joined = quality.join(
        request_logs.read_window(loop.logs, float("-inf"), float("inf")).predictions,
        quality.read_labels(loop.labels),
        float("-inf"),
        float("inf"),
    )
    assert joined["counts"]["joined"] == SAMPLE and joined["counts"]["unknown_request_ids"] == 0


def test_a_canary_failing_its_requests_is_aborted_before_any_label(
    tmp_path, start_server, fake_store
):
    # Every call of the canary fails (it loads, but cannot answer): the error-rate
    # guard rail aborts at the first look, labels or not.
    loop = Loop(
        tmp_path, start_server, fake_store, save_tip_rule, _faulty_saver(tmp_path, save_failing)
    )
    rows = _sample()
    sent = loop.send(rows)
    assert len(sent["pairs"]) == 120 and len(sent["errors"]) == 120
    assert {error[0] for error in sent["errors"]} == {f"trip-{i}" for i in range(1, SAMPLE, 2)}
    assert "injected fault" in sent["errors"][0][2]
    decision = loop.decide()
    assert decision.action == "abort"
    assert decision.reason == (
        "guard rail: canary error rate 1.0000 vs stable 0.0000 (limit: > 2.0x and > +0.02)"
    )
    f = decision.figures
    assert (f["stable_requests"], f["stable_errors"]) == (120, 0)
    assert (f["canary_requests"], f["canary_errors"]) == (120, 120)
    assert (f["stable_n"], f["canary_n"]) == (0, 0)  # no label had arrived
    assert loop.actions() == ["deploy", "abort"]
    loop.serves_only(1, rows[:20], [_rule(r) for r in rows[:20]])
