"""The portable pipeline variant and its Kubeflow Pipelines v2 / Vertex AI compilation."""

import json

import pytest
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

from pipeline import kubeflow_runner
from pipeline.pipeline import INGEST_NODES, create_pipeline
from pipeline.settings import PipelineSettings

IMAGE = "registry.example/taxi:1"
REMOTE = dict(
    pipeline_root="gs://b/root",
    data_root="gs://b/data",
    schema_dir="gs://b/schema",
    serving_dir="gs://b/serving",
)


def _argv(output, *extra):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in REMOTE.items()]
    return ["--image", IMAGE, "--output", str(output), *flags, *extra]


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    output = tmp_path_factory.mktemp("kfp") / "taxi.json"
    assert kubeflow_runner.main(_argv(output)) == 0
    return json.loads(output.read_text())


def _tasks(spec) -> dict:
    return spec["pipelineSpec"]["root"]["dag"]["tasks"]


def test_portable_variant_uses_only_stock_resolvers(tmp_path):
    p = create_pipeline(
        PipelineSettings(
            pipeline_name="t",
            pipeline_root=str(tmp_path / "root"),
            data_root=str(tmp_path / "data"),
            schema_path=str(tmp_path / "schema"),
            serving_dir=str(tmp_path / "serving"),
            portable=True,
        )
    )
    nodes = {c.id: c for c in p.components}
    assert "SpanResolver" not in nodes
    resolvers = [c for c in p.components if isinstance(c, resolver.Resolver)]
    assert [r.id for r in resolvers] == ["BaselineModelResolver"]
    assert resolvers[0].exec_properties[resolver.RESOLVER_STRATEGY_CLASS] is (
        LatestBlessedModelStrategy
    )
    assert p.metadata_connection_config is None
    # Still nothing trains before the anomalies gate has passed.
    assert "AnomaliesGate" in {c.id for c in nodes["Transform"].upstream_nodes}


def test_compiled_spec_has_every_step_in_the_image(spec):
    tasks = _tasks(spec)
    steps = {name.split("-")[0] for name in tasks}
    assert steps == set(INGEST_NODES) | {
        "Transform",
        "Tuner",
        "ModelSelection",
        "Trainer",
        "BaselineModelResolver",
        "Evaluator",
        "TestEvaluator",
        "BehavioralChecks",
        "InfraCanary",
        "Pusher",
    }
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {IMAGE}
    pusher = set(tasks["Pusher"]["dependentTasks"])
    assert {"Evaluator", "InfraCanary", "BehavioralChecks", "Trainer"} <= pusher
    assert "AnomaliesGate" in tasks["Transform"]["dependentTasks"]


def test_beam_steps_get_the_code_from_the_image_unless_told_otherwise(spec, tmp_path):
    text = json.dumps(spec)
    assert f"--setup_file={kubeflow_runner.IMAGE_PROJECT_DIR}/setup.py" in text
    output = tmp_path / "dataflow.json"
    kubeflow_runner.main(
        _argv(output, "--beam-arg=--runner=DataflowRunner", "--beam-arg=--setup_file=/app/setup.py")
    )
    text = output.read_text()
    assert "--runner=DataflowRunner" in text and "--setup_file=/app/setup.py" in text
    assert f"{kubeflow_runner.IMAGE_PROJECT_DIR}/setup.py" not in text


def test_missing_required_paths_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        kubeflow_runner.parse_args(["--image", IMAGE])
    assert e.value.code == 2
    assert "--pipeline-root" in capsys.readouterr().err


def test_tuning_sample_flag_reaches_the_compiled_tuner(tmp_path):
    output = tmp_path / "taxi.json"
    assert kubeflow_runner.main(_argv(output, "--tune-max-rows=777")) == 0
    parameters = _tasks(json.loads(output.read_text()))["Tuner"]["inputs"]["parameters"]
    custom = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert custom["tune_max_rows"] == 777
