"""The push gates end to end: a blessed candidate that fails the serving canary or
the behavioral checks is not pushed, and the served versions stay as they were.

The candidate is the shared run's trained model, made faulty after the
Evaluator blessed it (tests/saved_model_faults.py): its tf.Example signatures
inverted (`serving_examples` answers 1 - p, `serving_default` does not: a
training/serving skew only the InfraCanary's parity check sees), or every
prediction signature inverted (it serves and agrees with itself, but a cash
trip now looks like a big tipper: the behavioral checks' business). A TFX
pipeline (LocalDagRunner, its own MLMD store) imports the candidate, the
shared run's examples and the Evaluator's blessing, and runs the real
InfraCanary, BehavioralChecks and Pusher, wired as in pipeline/pipeline.py,
against a copy of the shared run's serving dir. The same model re-exported
without a fault is pushed (the control).
"""

import json
import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from saved_model_faults import save_inverted
from tfx.v1.dsl import Importer, Pipeline
from tfx.v1.orchestration import LocalDagRunner, metadata
from tfx.v1.proto import PushDestination
from tfx.v1.types import standard_artifacts

from components.behavioral import BehavioralChecks
from components.behavioral.artifact import BehavioralBlessing
from components.infra_canary import InfraCanary
from components.pusher.component import AtomicPusher

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TF_EXAMPLE_SIGNATURES = ["serving_examples", "classification", "regression"]
PREDICTION_SIGNATURES = ["serving_default", *TF_EXAMPLE_SIGNATURES]


def _newest(directory: str) -> str:
    """The newest artifact dir (numbered by execution) of a component output."""
    return os.path.join(directory, max((n for n in os.listdir(directory) if n.isdigit()), key=int))


def _run_gates(tmp_path, taxi_run, copy_of, invert):
    """Runs the gates on the shared run's model with `invert` signatures inverted."""
    out = taxi_run["output_dir"]
    trained = _newest(os.path.join(out, "pipeline", "Trainer", "model"))
    candidate = tmp_path / "candidate"
    save_inverted(
        os.path.join(trained, "Format-Serving"), str(candidate / "Format-Serving"), invert
    )
    examples_uri = _newest(os.path.join(out, "pipeline", "CsvExampleGen", "examples"))
    evaluator_blessing = tmp_path / "evaluator_blessing"
    evaluator_blessing.mkdir()
    (evaluator_blessing / "BLESSED").write_text("")
    serving_dir = copy_of(taxi_run["serving_dir"], "serving")
    served = sorted(os.listdir(serving_dir))

    model = Importer(source_uri=str(candidate), artifact_type=standard_artifacts.Model).with_id(
        "candidate"
    )
    examples = Importer(
        source_uri=examples_uri,
        artifact_type=standard_artifacts.Examples,
        properties={
            "split_names": json.dumps(
                sorted(n.removeprefix("Split-") for n in os.listdir(examples_uri))
            )
        },
    ).with_id("examples")
    blessing = Importer(
        source_uri=str(evaluator_blessing),
        artifact_type=standard_artifacts.ModelBlessing,
        custom_properties={"blessed": 1},
    ).with_id("evaluator_blessing")
    infra = InfraCanary(model=model.outputs["result"], examples=examples.outputs["result"])
    behavioral = BehavioralChecks(model=model.outputs["result"])
    pusher = AtomicPusher(
        model=model.outputs["result"],
        model_blessing=blessing.outputs["result"],
        infra_blessing=infra.outputs["blessing"],
        behavioral_blessing=behavioral.outputs["blessing"],
        push_destination=PushDestination(
            filesystem=PushDestination.Filesystem(base_directory=serving_dir)
        ),
    ).with_id("Pusher")
    store_path = str(tmp_path / "metadata.sqlite")
    LocalDagRunner().run(
        Pipeline(
            pipeline_name="push-gates",
            pipeline_root=str(tmp_path / "pipeline"),
            metadata_connection_config=metadata.sqlite_metadata_connection_config(store_path),
            components=[model, examples, blessing, infra, behavioral, pusher],
            enable_cache=False,
        )
    )
    store = metadata_store.MetadataStore(
        metadata_store_pb2.ConnectionConfig(
            sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(filename_uri=store_path)
        )
    )

    def only(type_name):
        [artifact] = store.get_artifacts_by_type(type_name)
        return artifact

    return {
        "served_before": served,
        "served_after": sorted(os.listdir(serving_dir)),
        "infra": only("InfraBlessing"),
        "behavioral": only(BehavioralBlessing.TYPE_NAME),
        "pushed": only("PushedModel"),
    }


def _int(artifact, name):
    return artifact.custom_properties[name].int_value


def test_a_candidate_failing_the_serving_canary_is_not_pushed(tmp_path, taxi_run, copy_of):
    run = _run_gates(tmp_path, taxi_run, copy_of, TF_EXAMPLE_SIGNATURES)
    assert _int(run["infra"], "blessed") == 0
    reason = run["infra"].custom_properties["reason"].string_value
    # Every parity row is off: served p against serving_examples' 1 - p.
    assert reason.startswith("parity_rest_predict: max |served - serving_examples|"), reason
    assert "; parity_grpc_predict: " in reason, reason
    report = json.loads(open(os.path.join(run["infra"].uri, "canary_report.json")).read())
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {"parity_rest_predict", "parity_grpc_predict"}  # it serves fine
    assert _int(run["behavioral"], "blessed") == 1  # serving_default is untouched
    assert _int(run["pushed"], "pushed") == 0
    assert run["served_after"] == run["served_before"]


def test_a_candidate_failing_the_behavioral_checks_is_not_pushed(tmp_path, taxi_run, copy_of):
    run = _run_gates(tmp_path, taxi_run, copy_of, PREDICTION_SIGNATURES)
    assert _int(run["infra"], "blessed") == 1  # consistent with itself: parity holds
    assert _int(run["behavioral"], "blessed") == 0
    report = json.loads(open(os.path.join(run["behavioral"].uri, "behavioral_report.json")).read())
    failed = [c["name"] for c in report["cases"] if not c["passed"]]
    assert "cash trip is not a big tipper" in failed, failed
    assert _int(run["pushed"], "pushed") == 0
    assert run["served_after"] == run["served_before"]


def test_the_same_candidate_without_a_fault_is_pushed(tmp_path, taxi_run, copy_of):
    run = _run_gates(tmp_path, taxi_run, copy_of, [])
    assert _int(run["infra"], "blessed") == 1 and _int(run["behavioral"], "blessed") == 1
    assert _int(run["pushed"], "pushed") == 1
    [new] = sorted(set(run["served_after"]) - set(run["served_before"]))
    assert run["pushed"].custom_properties["pushed_version"].string_value == new
    assert run["served_after"] == sorted([*run["served_before"], new])
