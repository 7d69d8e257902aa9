"""Automatic canary decisions: A/B verdict, guard rails, insufficient evidence, MLMD."""

import json
import time

import pytest

import lineage
from lineage import metadata_store
from monitoring import canary, cli, decide, rollback, watch
from serving.metrics import ServingMetrics


@pytest.fixture
def live_canary(tmp_path, fake_store):
    """A model config with stable 1 / canary 2 and its deploy recorded in MLMD."""
    base = tmp_path / "models"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'taxi' base_path: '{base}' "
        "model_platform: 'tensorflow' model_version_policy { specific { versions: [1, 2] } } "
        "version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } } }"
    )
    canary._record(rollback.writable(metadata), "deploy", "taxi", 1, 2, "test", "pytest")
    return metadata, str(config)


def _traffic(write_log, make_rows, make_log, tmp_path, n, accuracy, seq=1):
    """n requests per version after now; labels: version 1 always right, version 2 `accuracy`."""
    rows = make_rows(1)
    records, labels = [], ["request_id,label"]
    moment = int(time.time()) + 1
    for version in (1, 2):
        for i in range(n):
            request_id = f"s{seq}-v{version}-{i}"
            records.append(make_log(rows, moment, version, request_id, [0.9]))
            right = version == 1 or i < accuracy * n
            labels.append(f"{request_id},{1 if right else 0}")
    write_log(records, seq)
    path = tmp_path / "labels" / f"labels-{seq}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(labels) + "\n")
    return str(tmp_path / "labels")


def _actions(metadata):
    store = rollback.writable_store(metadata)
    return [
        e.properties["action"].string_value
        for e in store.get_executions_by_type(canary.EXECUTION_TYPE)
    ]


def _evaluate(live_canary, log_prefix, labels, tmp_path, **kwargs):
    metadata, config = live_canary
    policy = decide.Policy(min_samples=kwargs.pop("min_samples", 50), max_checks=3)
    return decide.evaluate(
        metadata,
        config,
        "taxi",
        log_prefix,
        labels,
        policy=policy,
        report_dir=str(tmp_path / "reports"),
        **kwargs,
    )


def test_promote_recorded_with_figures_and_report(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 0.97)
    decision = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert decision.action == "promote" and decision.problems == []
    metadata, config = live_canary
    assert "canary: 2" not in open(config).read() and "versions: 2" in open(config).read()
    store = rollback.writable_store(metadata)
    execution = store.get_executions_by_id([decision.execution_id])[0]
    props = {k: v.string_value for k, v in execution.properties.items()}
    assert props["action"] == "promote" and props["stable_n"] == "60" and props["canary_n"] == "60"
    assert float(props["canary_accuracy"]) == pytest.approx(59 / 60) and props["p_value"]
    report = json.loads(open(decision.report_paths["json"]).read())
    assert report["verdict"] == "promote" and report["execution_id"] == decision.execution_id
    assert report["versions"]["canary"]["ci95"][0] < 59 / 60
    assert "| 2 (canary) |" in open(decision.report_paths["md"]).read()
    assert _evaluate(live_canary, log_prefix, labels, tmp_path) is None  # no canary any more


def test_worse_canary_is_aborted(live_canary, write_log, make_rows, make_log, log_prefix, tmp_path):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 0.6)
    decision = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert decision.action == "abort" and decision.reason.startswith("A/B: canary accuracy lower")
    assert "versions: 1" in open(live_canary[1]).read()
    assert _actions(live_canary[0]) == ["deploy", "abort"]


def test_hold_then_insufficient_evidence(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 10, 1.0)
    first = _evaluate(live_canary, log_prefix, labels, tmp_path)
    second = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert first.action == second.action == "hold" and "check 2 of 3" in second.reason
    third = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert third.action == "abort" and third.reason.startswith("insufficient evidence after 3")
    assert _actions(live_canary[0]) == ["deploy", "hold", "hold", "abort"]


def test_guard_rail_aborts_before_labels(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 5, 1.0)
    metrics = ServingMetrics()
    for _ in range(100):
        metrics.record_request("taxi", 1, "predict", "REST", "OK", 800.0)
        metrics.record_request("taxi", 2, "predict", "REST", "INTERNAL", 800.0)
    decision = _evaluate(
        live_canary, log_prefix, labels, tmp_path, metrics_text=metrics.render().decode()
    )
    assert decision.action == "abort" and "guard rail: canary error rate 1.0000" in decision.reason


def test_guard_rails_latency():
    policy = decide.Policy(min_requests=10)
    fast = {"requests": 100, "errors": 0, "p99_ms": 5.0}
    slow = {"requests": 100, "errors": 0, "p99_ms": 250.0}
    assert decide.guard_rails({"1": fast, "2": slow}, "1", "2", policy)[0].startswith("canary p99")
    assert decide.guard_rails({"1": fast, "2": fast}, "1", "2", policy) == []
    few = dict(slow, requests=5)
    assert decide.guard_rails({"1": fast, "2": few}, "1", "2", policy) == []


def test_bad_labels_are_counted_and_reported(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 10, 1.0)
    (tmp_path / "labels" / "late.csv").write_text("request_id,label\nnobody,1\ns1-v1-0,x\n")
    decision = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert decision.action == "hold"
    counts = decision.report["counts"]
    assert counts["unknown_request_ids"] == 1 and counts["malformed_labels"] == 1
    assert any("unknown request ids: 'nobody'" in p for p in decision.problems)


def test_watch_decides_instead_of_retraining(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path, monkeypatch
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 0.97)
    metadata, config = live_canary
    opened, loaded = [], []
    open_store, load = metadata_store.open_store, lineage.Graph.load
    monkeypatch.setattr(
        metadata_store, "open_store", lambda *a, **k: opened.append(a) or open_store(*a, **k)
    )
    monkeypatch.setattr(lineage.Graph, "load", lambda store: loaded.append(store) or load(store))
    monkeypatch.setattr(
        watch.server_metrics,
        "fetch",
        lambda url: (_ for _ in ()).throw(watch.server_metrics.requests.ConnectionError("down")),
    )
    check = watch.check_once(
        str(tmp_path / "data"),
        metadata,
        ["false"],
        server_url="http://127.0.0.1:9",
        model_config=config,
        logs=log_prefix,
        labels=labels,
        policy=decide.Policy(min_samples=50),
        report_dir=str(tmp_path / "reports"),
    )
    assert not check.ran_pipeline and check.decision.action == "promote"
    assert check.reasons == ["canary 2 live (stable 1)"]
    assert "no guard rails this check" in check.problems[0]
    # The check opened ML Metadata once and read its graph once (to record the promotion).
    assert len(opened) == 1 and len(loaded) == 1
    missing = watch.check_once(
        str(tmp_path / "data"), metadata, ["false"], server_url="x", model_config=config
    )
    assert missing.decision is None  # promoted: nothing live, no data dir: nothing new


def test_watch_command_without_labels_reports(live_canary, tmp_path, capsys):
    metadata, config = live_canary
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.sqlite").write_bytes(open(metadata, "rb").read())
    argv = ["watch", "--data-dir", str(tmp_path), "--output-dir", str(out)]
    argv += ["--server", "http://127.0.0.1:9", "--model-config", config]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "watch needs --logs and --labels" in capsys.readouterr().err


def _rails(stable, canary, **policy):
    return decide.guard_rails({"1": stable, "2": canary}, "1", "2", decide.Policy(**policy))


@pytest.mark.parametrize(
    "stable_errors, at_limit",
    [
        (50, 100),  # stable 5%: 2x stable (10%) is the larger limit
        (10, 30),  # stable 1%: stable + 0.02 (3%) is the larger limit
    ],
)
def test_error_rate_rail_at_and_just_past_its_limit(stable_errors, at_limit):
    stable = {"requests": 1000, "errors": stable_errors, "p99_ms": 10.0}
    at = {"requests": 1000, "errors": at_limit, "p99_ms": 10.0}
    past = dict(at, errors=at_limit + 1)
    assert _rails(stable, at) == []
    [fired] = _rails(stable, past)
    assert fired.startswith(f"canary error rate {(at_limit + 1) / 1000:.4f} vs stable")


@pytest.mark.parametrize(
    "stable_p99, at_limit",
    [
        (100.0, 200.0),  # 2x stable is the larger limit
        (20.0, 70.0),  # stable + 50 ms is the larger limit
    ],
)
def test_p99_rail_at_and_just_past_its_limit(stable_p99, at_limit):
    stable = {"requests": 1000, "errors": 0, "p99_ms": stable_p99}
    assert _rails(stable, dict(stable, p99_ms=at_limit)) == []
    [fired] = _rails(stable, dict(stable, p99_ms=at_limit + 0.5))
    assert fired.startswith(f"canary p99 {at_limit + 0.5:g} ms vs stable {stable_p99:g} ms")


def test_rails_need_min_requests_of_the_canary():
    stable = {"requests": 1000, "errors": 0, "p99_ms": 10.0}
    broken = {"requests": 50, "errors": 50, "p99_ms": 900.0}
    assert len(_rails(stable, broken, min_requests=50)) == 2
    assert _rails(stable, dict(broken, requests=49, errors=49), min_requests=50) == []


def _deployed_at(live_canary):
    metadata, config = live_canary
    return canary.deployed(metadata, config, "taxi")["deployed_at"]


def test_time_based_abort_at_max_seconds(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 10, 1.0)  # too few to decide
    deployed = _deployed_at(live_canary)
    metadata, config = live_canary
    policy = decide.Policy(min_samples=50, max_checks=100, max_seconds=600)

    def look(now):
        return decide.evaluate(
            metadata,
            config,
            "taxi",
            log_prefix,
            labels,
            policy=policy,
            report_dir=str(tmp_path / "reports"),
            now=now,
        )

    first = look(deployed + 599)
    assert first.action == "hold" and first.figures["elapsed_s"] == 599.0
    second = look(deployed + 600)
    assert second.action == "abort"
    assert second.reason.startswith("insufficient evidence after 2 checks and 600 s")
    assert "versions: 1" in open(config).read() and "canary" not in open(config).read()
    assert _actions(metadata) == ["deploy", "hold", "abort"]


@pytest.mark.parametrize("max_seconds, action", [("0", "abort"), ("3600", "hold")])
def test_watch_command_canary_max_seconds(
    live_canary,
    write_log,
    make_rows,
    make_log,
    log_prefix,
    tmp_path,
    monkeypatch,
    capsys,
    max_seconds,
    action,
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 10, 1.0)
    metadata, config = live_canary
    out = tmp_path / "out"
    out.mkdir()
    (out / "metadata.sqlite").write_bytes(open(metadata, "rb").read())
    monkeypatch.setattr(
        watch.server_metrics, "fetch", lambda url: ServingMetrics().render().decode()
    )
    argv = ["watch", "--data-dir", str(tmp_path / "data"), "--output-dir", str(out)]
    argv += ["--server", "http://127.0.0.1:9", "--model-config", config, "--logs", log_prefix]
    argv += ["--labels", labels, "--min-samples", "50", "--canary-max-checks", "100"]
    cli.main(argv + ["--canary-max-seconds", max_seconds])
    printed = capsys.readouterr().out
    assert f"-> {action} (MLMD execution" in printed, printed
    if action == "abort":
        assert "insufficient evidence after 1 checks" in printed
    assert _actions(str(out / "metadata.sqlite")) == ["deploy", action]


def test_rails_with_missing_or_empty_series():
    policy = decide.Policy(min_requests=10)
    canary_ = {"requests": 100, "errors": 5, "p99_ms": 900.0}
    assert decide.guard_rails({"2": canary_}, "1", "2", policy) == []  # no stable series
    assert decide.guard_rails({"1": canary_}, "1", "2", policy) == []  # no canary series
    # A stable version without requests has error rate 0: 5% > 0 + 0.02 fires.
    idle = {"requests": 0, "errors": 0, "p99_ms": None}
    [fired] = decide.guard_rails({"1": idle, "2": canary_}, "1", "2", policy)
    assert fired.startswith("canary error rate 0.0500 vs stable 0.0000")
    # No p99 on either side (no latency recorded): no latency rail.
    fine = {"requests": 100, "errors": 0, "p99_ms": 10.0}
    assert _rails(fine, dict(fine, p99_ms=None), min_requests=10) == []
    assert _rails(dict(fine, p99_ms=None), dict(fine, p99_ms=900.0), min_requests=10) == []


def test_decision_records_the_figures_of_both_versions(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 0.97)  # canary 59/60 right
    metrics = ServingMetrics()
    for _ in range(100):
        metrics.record_request("taxi", 1, "predict", "REST", "OK", 800.0)
    for _ in range(59):
        metrics.record_request("taxi", 2, "predict", "REST", "OK", 3000.0)
    metrics.record_request("taxi", 2, "predict", "REST", "INTERNAL")
    deployed_at = _deployed_at(live_canary)
    now = deployed_at + 42.26
    decision = _evaluate(
        live_canary, log_prefix, labels, tmp_path, metrics_text=metrics.render().decode(), now=now
    )
    # 60/60 vs 59/60: pooled 119/120, z = (59/60 - 1) / sqrt(p (1 - p) (2 / 60)) = -1.00419.
    assert decision.action == "promote"
    assert decision.reason == "A/B: canary not worse (z=-1.004, p=0.1576, n=60/60)"
    assert decision.figures == {
        "verdict": "promote",
        "z": pytest.approx(-1.004193, abs=1e-6),
        "p_value": pytest.approx(0.157643, abs=1e-6),
        "stable_version": "1",
        "stable_n": 60,
        "stable_accuracy": 1.0,
        "stable_requests": 100,
        "stable_errors": 0,
        "stable_p99_ms": pytest.approx(1.102),  # the latency histogram's bucket ends
        "canary_version": "2",
        "canary_n": 60,
        "canary_accuracy": pytest.approx(59 / 60),
        "canary_requests": 60,
        "canary_errors": 1,
        "canary_p99_ms": pytest.approx(3.57047),
        "check": 1,
        "elapsed_s": 42.3,
        "guard_rails": "none",
    }
    report = decision.report  # what the A/B report files say about the decision
    assert (report["decision"], report["reason"], report["problems"]) == (
        "promote",
        decision.reason,
        [],
    )
    assert (report["deploy_execution_id"], report["deployed_at"]) == (1, deployed_at)
    folder = tmp_path / "reports" / f"ab-{int(now)}-promote"
    assert decision.report_paths["json"] == str(folder / "report.json")
    store = rollback.writable_store(live_canary[0])
    [execution] = store.get_executions_by_id([decision.execution_id])
    assert execution.properties["requested_by"].string_value == "monitor watch"
    assert decision.report["counts"] == {
        "labels": 120,
        "malformed_labels": 0,
        "unknown_request_ids": 0,
        "outside_window": 0,
        "joined": 120,
        "no_prediction_value": 0,
        "predictions_in_window": 120,
        "predictions_without_id": 0,
        "malformed_log_records": 0,
    }


def test_policy_alpha_is_the_level_of_the_test(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 0.97)  # p = 0.1576
    metadata, config = live_canary
    decision = decide.evaluate(
        metadata,
        config,
        "taxi",
        log_prefix,
        labels,
        policy=decide.Policy(min_samples=50, alpha=0.2),
        report_dir=str(tmp_path / "reports"),
    )
    assert decision.action == "abort"
    assert decision.reason == "A/B: canary accuracy lower (z=-1.004, p=0.1576)"


def test_a_canary_without_labels_counts_zero_of_zero(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 60, 1.0)
    path = tmp_path / "labels" / "labels-1.csv"
    path.write_text("".join(x for x in path.read_text().splitlines(True) if "-v2-" not in x))
    decision = _evaluate(live_canary, log_prefix, labels, tmp_path)
    assert decision.action == "hold"
    assert decision.reason == (
        "insufficient data, check 1 of 3 (labelled stable/canary 60/0, need 50 each)"
    )
    assert (decision.figures["canary_n"], decision.figures["canary_accuracy"]) == (0, None)
    canary_report = decision.report["versions"]["canary"]
    assert (canary_report["correct"], canary_report["labelled"]) == (0, 0)


def test_both_rails_and_every_problem_are_reported(
    live_canary, write_log, make_rows, make_log, log_prefix, tmp_path
):
    labels = _traffic(write_log, make_rows, make_log, tmp_path, 5, 1.0)
    (tmp_path / "labels" / "late.csv").write_text("request_id,label\nnobody,1\n")
    # No log files and an unparsable exposition: both named, with the labels' problem.
    missing = str(tmp_path / "no-such-logs")
    held = _evaluate(live_canary, missing, labels, tmp_path, metrics_text="taxi{")
    assert held.problems[:2] == [
        f"no request log files match {missing!r}",
        "11 labels for unknown request ids: 's1-v1-0', 's1-v1-1', 's1-v1-2', 's1-v1-3', "
        "'s1-v1-4' and 6 more",  # no predictions to join: every label is unknown
    ]
    assert held.problems[2].startswith("server metrics: unparsable exposition (")
    store = rollback.writable_store(live_canary[0])
    [execution] = store.get_executions_by_id([held.execution_id])
    recorded = {k: v.string_value for k, v in execution.properties.items()}
    assert (recorded["action"], recorded["reason"]) == ("hold", held.reason)
    assert (recorded["requested_by"], recorded["stable_n"]) == ("monitor watch", "0")
    metrics = ServingMetrics()
    for _ in range(100):
        metrics.record_request("taxi", 1, "predict", "REST", "OK", 800.0)
    for _ in range(60):
        metrics.record_request("taxi", 2, "predict", "REST", "OK", 900_000.0)
    for _ in range(40):
        metrics.record_request("taxi", 2, "predict", "REST", "INTERNAL")
    decision = _evaluate(
        live_canary, log_prefix, labels, tmp_path, metrics_text=metrics.render().decode()
    )
    [error_rail, latency_rail] = decision.report["guard_rails"]
    assert error_rail.startswith("canary error rate 0.4000") and latency_rail.startswith(
        "canary p99"
    )
    assert decision.reason == f"guard rail: {error_rail}; {latency_rail}"
    assert decision.figures["guard_rails"] == f"{error_rail}; {latency_rail}"
    assert decision.problems == ["1 labels for unknown request ids: 'nobody'"]
    [execution] = store.get_executions_by_id([decision.execution_id])
    assert execution.properties["reason"].string_value == decision.reason
