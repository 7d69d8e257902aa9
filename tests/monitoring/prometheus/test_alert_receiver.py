"""`taxi-monitor alert-receiver`: payload checks, one action per alert episode, HTTP answers."""

import json
import threading

import pytest
import requests
from ml_metadata import errors as mlmd_errors

from monitoring import alert_receiver, canary, cli, rollback


def _config(path, base, policy="", labels=""):
    path.write_text(
        f"model_config_list {{ config {{ name: 'taxi' base_path: '{base}' "
        f"model_platform: 'tensorflow' {policy} {labels} }} }}"
    )
    return str(path)


def _alert(
    name="TaxiModelHighErrorRate",
    status="firing",
    starts="2026-12-01T10:00:00Z",
    fp="f00d",
    **labels,
):
    labels = {"alertname": name, "model_name": "taxi", **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} summary"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fp,
    }


def _payload(*alerts) -> bytes:
    return json.dumps(
        {"version": "4", "status": "firing", "receiver": "taxi-action", "alerts": list(alerts)}
    ).encode()


@pytest.fixture
def served(tmp_path, fake_store):
    """(metadata, model config) with blessed versions 1, 2, 3 on disk, `latest` policy."""
    base = tmp_path / "models"
    for version in (1, 2, 3):
        (base / str(version)).mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2, 3])
    return metadata, _config(tmp_path / "models.config", base), base


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "body is not JSON"),
        (b"[]", 'expected a JSON object with an "alerts" list'),
        (b'{"alerts": [{"status": "firing"}]}', "alerts[0] has no labels object"),
        (
            b'{"alerts": [{"labels": {}, "status": "odd", "startsAt": "x"}]}',
            "alerts[0].status is 'odd'",
        ),
        (b'{"alerts": [{"labels": {}, "status": "firing"}]}', "alerts[0] has no startsAt"),
    ],
)
def test_bad_payloads(body, message):
    with pytest.raises(alert_receiver.PayloadError) as e:
        alert_receiver.parse_payload(body)
    assert message in str(e.value)


def test_fingerprint_from_labels_when_missing():
    alert = dict(_alert(), fingerprint="")
    (a,) = alert_receiver.parse_payload(_payload(alert))
    (b,) = alert_receiver.parse_payload(
        _payload(dict(alert, annotations={"summary": "other text"}))
    )
    (c,) = alert_receiver.parse_payload(_payload(dict(_alert(model_name="x"), fingerprint="")))
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def test_rollback_once_per_episode(served, tmp_path):
    metadata, config, _ = served
    log_file = tmp_path / "alerts.jsonl"
    receiver = alert_receiver.Receiver(metadata, config, str(log_file))
    alert = _alert(action="rollback", severity="critical")
    (first,) = receiver.handle(alert_receiver.parse_payload(_payload(alert)))
    assert first["handled"].startswith("rolled back taxi 3 -> 2 (MLMD execution")
    # Alertmanager repeats the notification; the receiver restarts: nothing more happens.
    (repeat,) = receiver.handle(alert_receiver.parse_payload(_payload(alert)))
    restarted = alert_receiver.Receiver(metadata, config, str(log_file))
    (again,) = restarted.handle(alert_receiver.parse_payload(_payload(alert)))
    assert repeat["handled"] == again["handled"] == "already done for this episode"
    # Resolved, and an alert without an action: logged only.
    resolved, plain = receiver.handle(
        alert_receiver.parse_payload(
            _payload(dict(alert, status="resolved"), _alert("TaxiServingDrift"))
        )
    )
    assert "handled" not in resolved and "handled" not in plain
    # A new episode (new startsAt) rolls back again.
    (second,) = receiver.handle(
        alert_receiver.parse_payload(
            _payload(_alert(action="rollback", starts="2026-12-01T11:00:00Z"))
        )
    )
    assert second["handled"].startswith("rolled back taxi 2 -> 1")
    history = rollback.history(rollback.writable_store(metadata))
    assert [(h["from_version"], h["to_version"]) for h in history] == [("3", "2"), ("2", "1")]
    assert (
        history[0]["requested_by"]
        == "alertmanager:TaxiModelHighErrorRate/f00d@2026-12-01T10:00:00Z"
    )
    assert history[0]["reason"] == "TaxiModelHighErrorRate: TaxiModelHighErrorRate summary"
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["alertname"], r["status"]) for r in lines] == [
        ("TaxiModelHighErrorRate", "firing"),
        ("TaxiModelHighErrorRate", "firing"),
        ("TaxiModelHighErrorRate", "firing"),
        ("TaxiModelHighErrorRate", "resolved"),
        ("TaxiServingDrift", "firing"),
        ("TaxiModelHighErrorRate", "firing"),
    ]


def test_store_failure_after_the_config_changed_does_not_roll_back_twice(served, monkeypatch):
    metadata, config, _ = served
    receiver = alert_receiver.Receiver(metadata, config)
    real_record = rollback.record

    def locked(*args, **kwargs):
        raise mlmd_errors.AbortedError("database is locked")

    monkeypatch.setattr(rollback, "record", locked)
    payload = _payload(_alert(action="rollback"))
    with pytest.raises(mlmd_errors.StatusError):
        receiver.handle(alert_receiver.parse_payload(payload))
    monkeypatch.setattr(rollback, "record", real_record)
    (retry,) = receiver.handle(alert_receiver.parse_payload(payload))  # Alertmanager retries
    assert retry["handled"] == "already done for this episode"
    entry = rollback.model_entry(rollback.read_config(config), "taxi")
    assert list(entry.model_version_policy.specific.versions) == [2]  # not 1


def test_store_failure_before_any_change_is_retried(served, monkeypatch):
    metadata, config, _ = served
    receiver = alert_receiver.Receiver(metadata, config)
    real_store = rollback.writable_store
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise mlmd_errors.AbortedError("database is locked")
        return real_store(path)

    monkeypatch.setattr(rollback, "writable_store", flaky)
    payload = _payload(_alert(action="rollback"))
    with pytest.raises(mlmd_errors.StatusError):
        receiver.handle(alert_receiver.parse_payload(payload))
    (retry,) = receiver.handle(alert_receiver.parse_payload(payload))
    assert retry["handled"].startswith("rolled back taxi 3 -> 2")


def test_canary_abort_checks_the_live_canary(tmp_path, fake_store):
    base = tmp_path / "models"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1, 2])
    config = _config(
        tmp_path / "models.config",
        base,
        "model_version_policy { specific { versions: 1 versions: 2 } }",
        "version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 }",
    )
    receiver = alert_receiver.Receiver(metadata, config)

    def handle(**labels):
        (record,) = receiver.handle(
            alert_receiver.parse_payload(
                _payload(_alert("TaxiCanaryErrorRateDivergence", action="canary_abort", **labels))
            )
        )
        return record["handled"]

    assert handle(version="3") == "stale: the live canary is 2, not 3"
    assert handle(version="2").startswith("aborted canary 2 of taxi, stable 1 (MLMD execution")
    assert handle(version="2") == "already done for this episode"
    assert handle(version="2", fp="beef") == "no canary is live: nothing to abort"
    entry = rollback.model_entry(rollback.read_config(config), "taxi")
    assert list(entry.model_version_policy.specific.versions) == [1]
    store = rollback.writable_store(metadata)
    aborts = [
        e
        for e in store.get_executions_by_type(canary.EXECUTION_TYPE)
        if e.properties["action"].string_value == "abort"
    ]
    assert len(aborts) == 1


def test_refused_action_is_logged_and_raised(tmp_path, fake_store):
    base = tmp_path / "models"
    (base / "1").mkdir(parents=True)
    metadata = fake_store(str(tmp_path / "metadata.sqlite"), [1])
    config = _config(tmp_path / "models.config", base)
    receiver = alert_receiver.Receiver(metadata, config, str(tmp_path / "log.jsonl"))
    with pytest.raises(alert_receiver.ActionRefused, match="no blessed version older than 1"):
        receiver.handle(alert_receiver.parse_payload(_payload(_alert(action="rollback"))))
    with pytest.raises(alert_receiver.ActionRefused, match="no model_name label"):
        receiver.handle(
            alert_receiver.parse_payload(_payload(_alert(action="rollback", model_name="")))
        )
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged[0]["handled"].startswith(
        "refused: rollback of taxi: no blessed version older than 1"
    )
    assert rollback.history(rollback.writable_store(metadata)) == []


def test_cli_refuses_missing_files(served, tmp_path, capsys):
    metadata, config, _ = served
    argv = ["alert-receiver", "--metadata", metadata, "--model-config", str(tmp_path / "none")]
    assert cli.main(argv) == 2
    assert "--model-config" in capsys.readouterr().err
    argv = ["alert-receiver", "--metadata", str(tmp_path / "m.sqlite"), "--model-config", config]
    assert cli.main(argv) == 2
    assert "--metadata: metadata not found" in capsys.readouterr().err


@pytest.mark.slow
def test_http_answers(served):
    metadata, config, _ = served
    server = alert_receiver.serve(alert_receiver.Receiver(metadata, config), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.post(f"{url}/other", data=b"{}", timeout=10).status_code == 404
        bad = requests.post(f"{url}/alerts", data=b"{", timeout=10)
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        ok = requests.post(f"{url}/alerts", data=_payload(_alert(action="rollback")), timeout=30)
        assert ok.status_code == 200 and ok.json()["handled"][0].startswith(
            "rolled back taxi 3 -> 2"
        )
        to_missing = _alert(action="rollback", model_name="nope", fp="other")
        refused = requests.post(f"{url}/alerts", data=_payload(to_missing), timeout=30)
        assert refused.status_code == 422 and "model 'nope' is not in" in refused.json()["error"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
