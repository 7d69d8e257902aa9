"""watch: triggers (new span, drift incident), pipeline run, new pushed versions."""

import inspect
import json
import sys

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

import lineage
from monitoring import cli, watch


def ingest(store, span, gate=pb.Execution.COMPLETE):
    """What a run records in MLMD for the ingestion of a span: ExampleGen writes
    its Examples, and the AnomaliesGate execution that validated them ends `gate`."""
    gen = store.put_execution_type(pb.ExecutionType(name="CsvExampleGen"))
    check = store.put_execution_type(pb.ExecutionType(name="AnomaliesGate"))
    examples = store.put_artifact_type(pb.ArtifactType(name="Examples"))
    artifact = pb.Artifact(type_id=examples, uri=f"/examples/{span}")
    artifact.custom_properties["span"].int_value = span
    done = pb.Execution(type_id=gen, last_known_state=pb.Execution.COMPLETE)
    _, [artifact.id], _ = store.put_execution(
        done, [(artifact, pb.Event(type=pb.Event.OUTPUT))], []
    )
    validation = pb.Execution(type_id=check, last_known_state=gate)
    store.put_execution(validation, [(artifact, pb.Event(type=pb.Event.INPUT))], [])


# Stands in for the pipeline: ingests the given span and pushes the given version
# (what a real run records in MLMD), or fails.
FAKE_PIPELINE = f"""
import sys
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
{inspect.getsource(ingest)}
path, span, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if version == "fail":
    print("boom"); sys.exit(3)
config = pb.ConnectionConfig(sqlite=pb.SqliteMetadataSourceConfig(filename_uri=path))
store = metadata_store.MetadataStore(config)
ingest(store, span)
pushed = store.put_artifact_type(pb.ArtifactType(name="PushedModel"))
model = pb.Artifact(type_id=pushed, uri=f"/pushed/{{version}}")
model.custom_properties["pushed"].int_value = 1
model.custom_properties["pushed_version"].string_value = version
store.put_artifacts([model])
"""


def _store(path, spans, failed=()):
    """An MLMD file in which `spans` passed validation and `failed` did not."""
    config = pb.ConnectionConfig(sqlite=pb.SqliteMetadataSourceConfig(filename_uri=str(path)))
    store = metadata_store.MetadataStore(config)
    for span in spans:
        ingest(store, span)
    for span in failed:
        ingest(store, span, gate=pb.Execution.FAILED)
    return str(path)


def _graph(path):
    return lineage.Graph.load(lineage.open_store(path))


def _data(tmp_path, spans):
    for span in spans:
        (tmp_path / "data" / f"span-{span}").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "notes").mkdir(exist_ok=True)
    return str(tmp_path / "data")


def test_reasons(tmp_path):
    data = _data(tmp_path, [2013, 2014])
    graph = _graph(_store(tmp_path / "metadata.sqlite", [2013, 2014]))
    assert watch.data_spans(data) == [2013, 2014]
    assert watch.reasons(data, graph, None) == []
    _data(tmp_path, [2015])
    assert watch.reasons(data, graph, None) == ["new span(s) [2015]"]
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"incidents": {"serving drift/taxi": {}, "p99 latency/taxi": {}}}))
    assert watch.reasons(data, graph, str(state)) == [
        "new span(s) [2015]",
        "open incident serving drift/taxi",
    ]
    assert watch.reasons(data, None, None) == ["new span(s) [2013, 2014, 2015]"]


def test_a_span_whose_data_failed_validation_is_still_new(tmp_path):
    data = _data(tmp_path, [2013, 2014])
    graph = _graph(_store(tmp_path / "metadata.sqlite", [2013], failed=[2014]))
    assert watch.reasons(data, graph, None) == ["new span(s) [2014]"]


@pytest.fixture
def graph_loads(monkeypatch):
    """Every load of an MLMD graph, counted (the list of stores it was loaded from)."""
    loads = []
    load = lineage.Graph.load
    monkeypatch.setattr(lineage.Graph, "load", lambda store: loads.append(store) or load(store))
    return loads


@pytest.mark.slow
def test_one_check_reads_the_graph_once(tmp_path, graph_loads):
    data = _data(tmp_path, [2013])
    metadata = _store(tmp_path / "metadata.sqlite", [2013])
    assert not watch.check_once(data, metadata, ["false"]).ran_pipeline
    assert len(graph_loads) == 1
    # Plus once after the pipeline it ran, for the versions that run pushed.
    _data(tmp_path, [2014])
    command = [sys.executable, "-c", FAKE_PIPELINE, metadata, "2014", "7"]
    graph_loads.clear()
    check = watch.check_once(data, metadata, command)
    assert check.ran_pipeline and check.new_versions == [7] and len(graph_loads) == 2
    assert len({id(store) for store in graph_loads}) == 1  # one store, opened once


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
