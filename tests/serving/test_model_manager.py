"""Model manager units: version discovery, policies, labels, config checks."""

import model_factory
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from serving.errors import Code, ServingError
from serving.model_manager import ManagerOptions, ModelManager, aspired_versions, list_versions

Policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def config(text: str):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_list_versions_ignores_non_numeric(tmp_path):
    for name in ["1", "0010", ".tmp-3", "abc", "2x"]:
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file")
    assert list_versions(str(tmp_path)) == {1: str(tmp_path / "1"), 10: str(tmp_path / "0010")}


@pytest.mark.parametrize(
    "policy_text, expected",
    [
        ("", {5}),
        ("latest { num_versions: 2 }", {4, 5}),
        ("all {}", {1, 4, 5}),
        ("specific { versions: 1 versions: 9 }", {1}),
    ],
)
def test_policies(policy_text, expected):
    policy = text_format.Parse(policy_text, Policy())
    assert aspired_versions(policy, {1: "a", 4: "b", 5: "c"}) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model_config_list { config { name: 'a' base_path: '/x' model_platform: 'tensorflow' } "
            "config { name: 'a' base_path: '/y' model_platform: 'tensorflow' } }",
            "Illegal to list model a multiple times in config list",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/x' } }",
            "Illegal setting neither ModelServerConfig::model_type",
        ),
        (
            "model_config_list { config { name: 'a' base_path: 'rel' model_platform: 'tensorflow' } }",
            "Expected model a to have an absolute path or URI; got base_path()=rel",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/x' model_platform: 'tensorflow' "
            "version_labels { key: 'l' value: 1 } } }",
            "Request to assign label to version 1 of model a, which is not currently available",
        ),
    ],
)
def test_config_validation(text, message):
    with pytest.raises(ServingError) as error:
        ModelManager().apply_config(config(text))
    assert message in error.value.message


@pytest.mark.slow
def test_labels_resolve_and_corrupt_version(tmp_path):
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    manager = ModelManager(ManagerOptions(max_num_load_retries=0))
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' }} }}"
        )
    )
    manager.poll()
    assert manager.resolve("m").version == 1
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"junk")
    manager.poll()
    assert manager.resolve("m").version == 1  # corrupt v2 never served
    states = dict(manager.version_states("m"))
    assert states[2].state == "END" and states[2].error_code != Code.OK
    assert states[1].state == "AVAILABLE"
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' version_labels {{ key: 'stable' value: 1 }} }} }}"
        )
    )
    assert manager.resolve("m", label="stable").version == 1
    with pytest.raises(ServingError, match="Unrecognized servable version label: x"):
        manager.resolve("m", label="x")
    with pytest.raises(ServingError, match=r"Specific\(m, 3\)"):
        manager.resolve("m", version=3)
    manager.stop()


@pytest.mark.slow
def test_failed_warmup_fails_the_load(tmp_path):
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    model_factory.save_half_plus_two(str(base / "2"))
    extra = base / "2" / "assets.extra"
    extra.mkdir()
    (extra / "tf_serving_warmup_requests").write_bytes(b"\x00" * 40)  # not TFRecords
    manager = ModelManager(ManagerOptions(max_num_load_retries=0))
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' model_version_policy {{ all {{}} }} }} }}"
        )
    )
    manager.poll()
    states = dict(manager.version_states("m"))
    assert states[2].state == "END" and states[2].error_code != Code.OK
    assert manager.resolve("m").version == 1
    manager.stop()


@pytest.mark.slow
def test_canary_routing_by_labels_and_share(tmp_path):
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    model_factory.save_half_plus_two(str(base / "2"), b=3.0)
    draws = iter([0.1, 0.3, 0.24, 0.9] * 3)
    manager = ModelManager(ManagerOptions(canary_traffic_share=0.25, random=lambda: next(draws)))

    def apply(labels: str):
        manager.apply_config(
            config(
                f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
                f"model_platform: 'tensorflow' model_version_policy {{ all {{}} }} {labels} }} }}"
            )
        )

    apply("")
    manager.poll()
    assert manager.resolve("m").version == 2  # no stable label: latest, as TF Serving
    apply("version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 }")
    assert [manager.resolve("m").version for _ in range(4)] == [2, 1, 2, 1]
    assert manager.resolve("m", version=1).version == 1  # explicit requests are not routed
    assert manager.resolve("m", label="canary").version == 2
    apply("version_labels { key: 'stable' value: 1 }")
    assert [manager.resolve("m").version for _ in range(4)] == [1, 1, 1, 1]  # no canary
    manager.stop()


@pytest.mark.slow
def test_canary_routing_is_off_by_default(tmp_path):
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    model_factory.save_half_plus_two(str(base / "2"), b=3.0)
    manager = ModelManager()
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' model_version_policy {{ all {{}} }} }} }}"
        )
    )
    manager.poll()
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' model_version_policy {{ all {{}} }} "
            f"version_labels {{ key: 'stable' value: 1 }} }} }}"
        )
    )
    assert manager.resolve("m").version == 2
    manager.stop()


def _truncate_saved_model(version_dir) -> None:
    """Cuts saved_model.pb in half, as a kill -9 during a copy leaves it."""
    path = version_dir / "saved_model.pb"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_newest_version_is_replaced_by_the_newest_loadable(tmp_path):
    base = tmp_path / "m"
    for version, b in ((1, 1.0), (2, 2.0), (3, 3.0)):
        model_factory.save_half_plus_two(str(base / str(version)), b=b)
    _truncate_saved_model(base / "3")
    manager = ModelManager(ManagerOptions(max_num_load_retries=5, load_retry_interval_seconds=600))
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' }} }}"
        )
    )
    manager.poll()  # one pass: 3 fails, 2 stands in
    assert manager.resolve("m").version == 2
    assert manager.pending_initial_loads() == []
    states = dict(manager.version_states("m"))
    assert states[3].state == "END" and states[3].error_code != Code.OK
    assert states[3].error_message
    assert 1 not in states  # only the stand-in is loaded, not every older version
    manager.poll()  # the retry is not due (600 s) and the files did not change
    assert dict(manager.version_states("m"))[3].state == "END"
    # The version is rewritten: the next poll loads it and drops the stand-in.
    model_factory.save_half_plus_two(str(base / "3"), b=3.0)
    manager.poll()
    assert manager.resolve("m").version == 3
    assert [v for v, s in manager.version_states("m") if s.state == "AVAILABLE"] == [3]
    manager.stop()


def test_specific_policy_gets_no_stand_in(tmp_path):
    base = tmp_path / "m"
    for version in (1, 2):
        model_factory.save_half_plus_two(str(base / str(version)))
    _truncate_saved_model(base / "2")
    manager = ModelManager(ManagerOptions(max_num_load_retries=0))
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            "model_platform: 'tensorflow' model_version_policy { specific { versions: 2 } } } }"
        )
    )
    manager.poll()
    with pytest.raises(ServingError):
        manager.resolve("m")
    assert [name for name, error in manager.pending_initial_loads() if error] == ["m"]
    manager.stop()


def _write_warmup(version_dir, *logs) -> None:
    import tensorflow as tf

    extra = version_dir / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def _multi_inference_log(signature: str):
    from tensorflow_serving.apis import inference_pb2, prediction_log_pb2

    request = inference_pb2.MultiInferenceRequest()
    for name, method in ((signature, "classify"), ("regress_x_to_y", "regress")):
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = "m", name
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(1.0)
    return prediction_log_pb2.PredictionLog(
        multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=request)
    )


@pytest.mark.parametrize("signature, available", [("classify_x_to_y", True), ("nope", False)])
def test_multi_inference_warmup_records_are_replayed(tmp_path, signature, available):
    """TF Serving's warmup accepts multi_inference_log records; a bad one fails the load."""
    base = tmp_path / "m"
    model_factory.save_half_plus_two(str(base / "1"))
    _write_warmup(base / "1", _multi_inference_log(signature))
    manager = ModelManager(ManagerOptions(max_num_load_retries=0))
    manager.apply_config(
        config(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
            f"model_platform: 'tensorflow' }} }}"
        )
    )
    manager.poll()
    state = dict(manager.version_states("m"))[1]
    assert (state.state == "AVAILABLE") == available
    if not available:
        assert state.error_message == "Requested signature not found in model graph: nope"
    manager.stop()
