"""Atomic, collision-free pushes; identical models are not pushed twice."""

import json
import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.pusher import AtomicPushExecutor, atomic_copy_dir, newest_version, next_version


def _model_dir(root, content="weights-1"):
    os.makedirs(os.path.join(root, "variables"), exist_ok=True)
    with open(os.path.join(root, "saved_model.pb"), "w") as f:
        f.write("graph")
    with open(os.path.join(root, "variables", "variables.data"), "w") as f:
        f.write(content)
    return root


def test_next_version_is_after_existing(tmp_path):
    assert next_version(str(tmp_path / "missing"), now=100) == 100
    (tmp_path / "200").mkdir()
    (tmp_path / ".300.tmp").mkdir()  # staging dirs are not versions
    assert newest_version(str(tmp_path)) == 200
    assert next_version(str(tmp_path), now=100) == 201
    assert next_version(str(tmp_path), now=500) == 500


def test_atomic_copy_leaves_no_staging(tmp_path):
    source = _model_dir(str(tmp_path / "model"))
    base = str(tmp_path / "serving")
    final = atomic_copy_dir(source, base, 7)
    assert sorted(os.listdir(base)) == ["7"]
    assert open(os.path.join(final, "variables", "variables.data")).read() == "weights-1"


def test_atomic_copy_refuses_existing_version(tmp_path):
    source = _model_dir(str(tmp_path / "model"))
    base = str(tmp_path / "serving")
    atomic_copy_dir(source, base, 7)
    try:
        atomic_copy_dir(source, base, 7)
    except FileExistsError:
        pass
    else:
        raise AssertionError("expected FileExistsError")


def _push(tmp_path, model_dir, base, blessed=True, name="push"):
    model = standard_artifacts.Model()
    model.uri = os.path.dirname(model_dir)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f"{name}-blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"{name}-pushed")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)
    )
    AtomicPushExecutor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {
            "push_destination": proto_utils.proto_to_json(destination),
            "custom_config": json.dumps({}),
        },
    )
    return pushed


def test_executor_pushes_blessed_and_skips_identical(tmp_path):
    base = str(tmp_path / "serving")
    first = _model_dir(str(tmp_path / "m1" / "Format-Serving"))
    pushed = _push(tmp_path, first, base, name="a")
    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_int_custom_property("pushed") == 1
    assert os.listdir(base) == [version]

    same = _model_dir(str(tmp_path / "m2" / "Format-Serving"))
    again = _push(tmp_path, same, base, name="b")
    assert again.get_string_custom_property("pushed_version") == version
    assert os.listdir(base) == [version]

    other = _model_dir(str(tmp_path / "m3" / "Format-Serving"), content="weights-2")
    newer = _push(tmp_path, other, base, name="c")
    assert int(newer.get_string_custom_property("pushed_version")) > int(version)
    assert len(os.listdir(base)) == 2


def test_executor_does_not_push_unblessed(tmp_path):
    base = str(tmp_path / "serving")
    model = _model_dir(str(tmp_path / "m1" / "Format-Serving"))
    pushed = _push(tmp_path, model, base, blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not os.path.exists(base)


def _blessing(tmp_path, kind, name, blessed):
    artifact = kind()
    artifact.uri = str(tmp_path / name)
    artifact.set_int_custom_property("blessed", int(blessed))
    return artifact


@pytest.mark.parametrize(
    "refusing", [None, "model_blessing", "infra_blessing", "behavioral_blessing"]
)
def test_any_failed_blessing_stops_the_push(tmp_path, refusing):
    """Each of the three gates alone refuses the candidate: nothing is pushed."""
    from components.behavioral.artifact import BehavioralBlessing

    model = standard_artifacts.Model()
    model.uri = os.path.dirname(_model_dir(str(tmp_path / "m" / "Format-Serving")))
    kinds = {
        "model_blessing": standard_artifacts.ModelBlessing,
        "infra_blessing": standard_artifacts.InfraBlessing,
        "behavioral_blessing": BehavioralBlessing,
    }
    inputs = {"model": [model]}
    for key, kind in kinds.items():
        inputs[key] = [_blessing(tmp_path, kind, key, blessed=key != refusing)]
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = str(tmp_path / "serving")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)
    )
    AtomicPushExecutor().Do(
        inputs,
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "{}"},
    )
    if refusing is None:
        assert pushed.get_int_custom_property("pushed") == 1 and len(os.listdir(base)) == 1
    else:
        assert pushed.get_int_custom_property("pushed") == 0 and not os.path.exists(base)
