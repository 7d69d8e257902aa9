"""InfraCanary component: construction and executor runs on tiny artifacts."""

import functools
import gzip
import json
import os
import re

import model_factory
import pytest
from tfx.types import channel_utils, standard_artifacts

from components.infra_canary import InfraCanary
from components.infra_canary.executor import Executor

pytestmark = [pytest.mark.ours]


def _examples_artifact(root: str, count: int = 8):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "examples")
    examples.split_names = '["train", "eval"]'
    split = os.path.join(examples.uri, "Split-eval")
    os.makedirs(split)
    with gzip.open(os.path.join(split, "data_tfrecord-00000-of-00001.gz"), "wb") as f:
        import tensorflow as tf

        with tf.io.TFRecordWriter(os.path.join(root, "raw.tfrecord")) as writer:
            for i in range(count):
                example = model_factory.taxi_example(i)
                if i % 2:  # a missing CSV cell: the feature is present but empty
                    example.features.feature["company"].bytes_list.Clear()
                writer.write(example.SerializeToString())
        with open(os.path.join(root, "raw.tfrecord"), "rb") as raw:
            f.write(raw.read())
    return examples


def _run(tmp_path, build_model):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    build_model(os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    Executor().Do(
        {"model": [model], "examples": [_examples_artifact(str(tmp_path))]},
        {"blessing": [blessing]},
        {"split": "eval", "num_requests": 3, "timeout_seconds": 60},
    )
    return blessing


def test_component_wiring():
    component = InfraCanary(
        model=channel_utils.as_channel([standard_artifacts.Model()]),
        examples=channel_utils.as_channel([standard_artifacts.Examples()]),
        num_requests=5,
    )
    assert component.outputs["blessing"].type == standard_artifacts.InfraBlessing
    assert component.exec_properties["num_requests"] == 5
    assert component.exec_properties["split"] == "eval"


@pytest.mark.slow
def test_blesses_a_working_model(tmp_path):
    blessing = _run(tmp_path, model_factory.save_taxi_like)
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 1
    with open(os.path.join(blessing.uri, "canary_report.json")) as f:
        report = json.load(f)
    # The server came up, then three requests (num_requests=3) were each sent three
    # ways, and every answer was right; then the parity checks over REST and gRPC.
    expected = ["available"] + [
        f"{kind}_{i}"
        for i in range(3)
        for kind in ("rest_predict", "grpc_predict", "rest_classify")
    ]
    names = [c["name"] for c in report["checks"]]
    assert names[:10] == expected
    assert sorted(names[10:]) == ["parity_grpc_predict", "parity_rest_predict"]
    assert [(c["ok"], c["detail"]) for c in report["checks"][:10]] == [(True, "")] * 10
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("parity_rest_predict", "parity_grpc_predict"):
        assert checks[name]["ok"], checks[name]
        assert "over 8 rows, 0 above 1e-06" in checks[name]["detail"]
    assert report["passed"] is True and report["reason"] == ""


@pytest.mark.slow
def test_refuses_a_model_whose_serving_default_is_skewed(tmp_path):
    """trip_miles scaled by 1.609 in serving_default only: every probe answers, parity fails."""
    blessing = _run(tmp_path, functools.partial(model_factory.save_taxi_like, miles_scale=1.609))
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 0
    report = json.loads(open(os.path.join(blessing.uri, "canary_report.json")).read())
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {"parity_rest_predict", "parity_grpc_predict"}
    reason = blessing.get_string_custom_property("reason")
    assert reason == report["reason"]
    assert re.match(
        r"parity_rest_predict: max \|served - serving_examples\| [0-9.e-]+ over 8 rows, 8 above 1e-06 \(row \d+",
        reason,
    ), reason


@pytest.mark.slow
def test_does_not_bless_a_broken_model(tmp_path):
    def broken(path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"garbage")

    blessing = _run(tmp_path, broken)
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 0
    with open(os.path.join(blessing.uri, "canary_report.json")) as f:
        report = json.load(f)
    assert report["passed"] is False
    # The server never came up: one failed check that says why, no probe.
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [("available", False)]
    assert report["checks"][0]["detail"]
