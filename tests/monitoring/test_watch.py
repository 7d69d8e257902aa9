"""watch: triggers (new span, drift incident), pipeline run, new pushed versions."""

import json
import sys

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from monitoring import cli, watch

# Stands in for the pipeline: ingests the given span and pushes the given version
# (what a real run records in MLMD), or fails.
FAKE_PIPELINE = """
import sys
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
path, span, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if version == "fail":
    print("boom"); sys.exit(3)
config = pb.ConnectionConfig(sqlite=pb.SqliteMetadataSourceConfig(filename_uri=path))
store = metadata_store.MetadataStore(config)
gen = store.put_execution_type(pb.ExecutionType(name="CsvExampleGen"))
examples = store.put_artifact_type(pb.ArtifactType(name="Examples"))
pushed = store.put_artifact_type(pb.ArtifactType(name="PushedModel"))
artifact = pb.Artifact(type_id=examples, uri=f"/examples/{span}")
artifact.custom_properties["span"].int_value = span
store.put_execution(pb.Execution(type_id=gen), [(artifact, pb.Event(type=pb.Event.OUTPUT))], [])
model = pb.Artifact(type_id=pushed, uri=f"/pushed/{version}")
model.custom_properties["pushed"].int_value = 1
model.custom_properties["pushed_version"].string_value = version
store.put_artifacts([model])
"""


def _store(path, spans):
    config = metadata_store_pb2.ConnectionConfig(
        sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(filename_uri=str(path))
    )
    store = metadata_store.MetadataStore(config)
    gen = store.put_execution_type(metadata_store_pb2.ExecutionType(name="CsvExampleGen"))
    examples = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    for span in spans:
        artifact = metadata_store_pb2.Artifact(type_id=examples, uri=f"/examples/{span}")
        artifact.custom_properties["span"].int_value = span
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
        store.put_execution(metadata_store_pb2.Execution(type_id=gen), [(artifact, event)], [])
    return str(path)


def _data(tmp_path, spans):
    for span in spans:
        (tmp_path / "data" / f"span-{span}").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "notes").mkdir(exist_ok=True)
    return str(tmp_path / "data")


def test_reasons(tmp_path):
    data = _data(tmp_path, [2013, 2014])
    metadata = _store(tmp_path / "metadata.sqlite", [2013, 2014])
    assert watch.data_spans(data) == [2013, 2014]
    assert watch.reasons(data, metadata, None) == []
    _data(tmp_path, [2015])
    assert watch.reasons(data, metadata, None) == ["new span(s) [2015]"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"incidents": {"serving drift/taxi": {}, "p99 latency/taxi": {}}}))
    assert watch.reasons(data, metadata, str(state)) == [
        "new span(s) [2015]",
        "open incident serving drift/taxi",
    ]
    assert watch.reasons(data, str(tmp_path / "none.sqlite"), None) == [
        "new span(s) [2013, 2014, 2015]"
    ]


@pytest.mark.slow
def test_check_runs_the_pipeline_and_finds_the_new_version(tmp_path):
    data = _data(tmp_path, [2013, 2014])
    metadata = _store(tmp_path / "metadata.sqlite", [2013])
    command = [sys.executable, "-c", FAKE_PIPELINE, metadata, "2014", "7"]
    check = watch.check_once(data, metadata, command)
    assert check.ran_pipeline and check.returncode == 0 and check.problems == []
    assert check.reasons == ["new span(s) [2014]"] and check.new_versions == [7]
    again = watch.check_once(data, metadata, command)
    assert not again.ran_pipeline and again.reasons == []


@pytest.mark.slow
def test_failed_pipeline_is_reported(tmp_path):
    data = _data(tmp_path, [2013, 2014])
    metadata = _store(tmp_path / "metadata.sqlite", [2013])
    check = watch.check_once(
        data, metadata, [sys.executable, "-c", FAKE_PIPELINE, metadata, "2014", "fail"]
    )
    assert check.returncode == 3 and "pipeline exited 3" in check.problems[0]
    assert "boom" in check.problems[0] and check.new_versions == []


@pytest.mark.slow
def test_watch_command(tmp_path, capsys, monkeypatch):
    data = _data(tmp_path, [2013])
    out = tmp_path / "out"
    out.mkdir()
    _store(out / "metadata.sqlite", [2013])
    argv = [
        "watch",
        "--data-dir",
        data,
        "--output-dir",
        str(out),
        "--max-checks",
        "2",
        "--interval",
        "0",
    ]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.count("watch: nothing new") == 2
    _data(tmp_path, [2014])
    monkeypatch.setattr(
        watch,
        "pipeline_command",
        lambda *args, **kwargs: [
            sys.executable,
            "-c",
            FAKE_PIPELINE,
            str(out / "metadata.sqlite"),
            "2014",
            "9",
        ],
    )
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "new span(s) [2014] -> pipeline exit 0, new versions [9]" in printed
    assert "watch: nothing new" in printed  # the second check


@pytest.mark.slow
def test_shadow_first_deploys_the_new_version_as_shadow_then_judges_it(tmp_path, monkeypatch):
    data = _data(tmp_path, [2013, 2014])
    metadata = _store(tmp_path / "metadata.sqlite", [2013])
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { config { name: 'taxi' base_path: '/m' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 6 } } version_labels { key: 'stable' "
        "value: 6 } } }"
    )
    calls = []
    monkeypatch.setattr(watch.canary, "pin", lambda *a: {"stable": 6, "pinned": False})
    monkeypatch.setattr(watch.canary, "deploy", lambda *a, **k: calls.append(("canary", a[3])))
    monkeypatch.setattr(
        watch.shadow_deploy, "deploy", lambda *a, **k: calls.append(("shadow", a[3])) or {"x": 1}
    )
    command = [sys.executable, "-c", FAKE_PIPELINE, metadata, "2014", "7"]
    kwargs = {"server_url": "http://s", "model_config": str(config), "shadow_first": True}
    check = watch.check_once(data, metadata, command, **kwargs)
    assert check.new_versions == [7] and calls == [("shadow", 7)] and check.problems == []
    # the shadow is live: the next check judges it and runs no pipeline
    config.write_text(
        config.read_text().replace(
            "value: 6 }", "value: 6 } version_labels { key: 'shadow' value: 7 }"
        )
    )
    verdict = {"verdict": "insufficient data", "why": "3 mirrored rows < 200"}
    monkeypatch.setattr(watch.shadow_deploy, "evaluate", lambda *a, **k: verdict)
    (tmp_path / "data" / "span-2015").mkdir()
    check = watch.check_once(data, metadata, command, shadow_logs="/logs", **kwargs)
    assert not check.ran_pipeline and check.shadow == verdict
    assert check.reasons == ["shadow 7 live (stable 6)"]
    check = watch.check_once(data, metadata, command, **kwargs)
    assert check.problems == ["a shadow is live: watch needs --shadow-logs to judge it"]
