"""Server lifecycle: hot reload under load, corrupt versions, config reload,
batching, request logs, metrics and clean shutdown (each on its own server)."""

import concurrent.futures
import glob
import os
import shutil
import threading
import time

import model_factory
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

pytestmark = [pytest.mark.ours]


def push(base: str, version: int, b: float = 2.0) -> None:
    """Pushes like the Pusher: write to a dot-prefixed dir, then rename."""
    tmp = os.path.join(base, f".tmp-{version}")
    model_factory.save_half_plus_two(tmp, b=b)
    os.rename(tmp, os.path.join(base, str(version)))


def predict(url, x=1.0, model="m", session=requests):
    return session.post(f"{url}/v1/models/{model}:predict", json={"instances": [[x]]}, timeout=60)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_hot_reload_under_load_and_corrupt_version(tmp_path, start_server):
    base = str(tmp_path / "m")
    os.makedirs(base)
    push(base, 1, b=2.0)
    server = start_server(
        [
            "--model_name=m",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0.2",
            "--load_retry_interval_micros=200000",
            "--max_num_load_retries=1",
        ],
        ready_model="m",
    )
    stop = threading.Event()
    failures, seen = [], set()

    def client():
        session = requests.Session()
        for _ in range(5000):  # bounded
            if stop.is_set():
                return
            response = predict(server.url, 2.0, session=session)
            if response.status_code != 200:
                failures.append(response.text)
            else:
                seen.add(response.json()["predictions"][0][0])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client) for _ in range(4)]
        assert wait_for(lambda: 3.0 in seen or failures)  # version 1 answered under load
        push(base, 2, b=10.0)
        assert wait_for(lambda: predict(server.url, 2.0).json()["predictions"] == [[11.0]])
        # A corrupt version and a half-written one never become AVAILABLE.
        status_url = f"{server.url}/v1/models/m"

        def ended(version):
            states = requests.get(status_url, timeout=5).json()["model_version_status"]
            return any(
                s["version"] == str(version)
                and s["state"] == "END"
                and s["status"]["error_code"] != "OK"
                for s in states
            )

        os.makedirs(os.path.join(base, ".tmp-3"))
        with open(os.path.join(base, ".tmp-3", "saved_model.pb"), "wb") as f:
            f.write(b"not a protobuf")
        os.rename(os.path.join(base, ".tmp-3"), os.path.join(base, "3"))
        assert wait_for(lambda: ended(3))
        os.makedirs(os.path.join(base, "4", "variables"))  # half-written, no saved_model.pb
        assert wait_for(lambda: ended(4))
        time.sleep(1.0)
        stop.set()
        for future in futures:
            future.result()
    assert failures == []
    assert {3.0, 11.0} <= seen
    assert predict(server.url, 2.0).json() == {"predictions": [[11.0]]}
    states = requests.get(status_url, timeout=5).json()["model_version_status"]
    by_version = {s["version"]: s["state"] for s in states}
    assert by_version["2"] == "AVAILABLE" and by_version["1"] == "END"
    assert server.stop() == 0  # SIGTERM -> clean exit


@pytest.mark.slow
def test_config_reload_labels_and_policy(tmp_path, start_server):
    base = str(tmp_path / "m")
    os.makedirs(base)
    push(base, 1, b=2.0)
    push(base, 2, b=3.0)
    config = tmp_path / "models.config"
    template = (
        "model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        "model_platform: 'tensorflow' model_version_policy {{ {policy} }} {labels} }} }}"
    )
    config.write_text(template.format(base=base, policy="all {}", labels=""))
    server = start_server(
        [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"],
        ready_model="m",
    )
    assert predict(server.url, 2.0).json() == {"predictions": [[4.0]]}
    config.write_text(
        template.format(
            base=base,
            policy="all {}",
            labels="version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 }",
        )
    )
    url = f"{server.url}/v1/models/m/labels/stable:predict"
    assert wait_for(lambda: requests.post(url, json={"instances": [[2.0]]}, timeout=5).ok)
    assert requests.post(url, json={"instances": [[2.0]]}, timeout=5).json() == {
        "predictions": [[3.0]]
    }
    # Label on a version that is not available: rejected, old labels stay.
    config.write_text(
        template.format(
            base=base, policy="all {}", labels="version_labels { key: 'stable' value: 9 }"
        )
    )
    assert wait_for(lambda: "which is not currently available for inference" in server.read_log())
    assert requests.post(url, json={"instances": [[2.0]]}, timeout=5).ok
    # Policy change to specific {1}: version 2 is unloaded.
    config.write_text(template.format(base=base, policy="specific { versions: 1 }", labels=""))
    assert wait_for(lambda: predict(server.url, 2.0).json() == {"predictions": [[3.0]]})


def test_startup_fails_on_bad_config(tmp_path, start_server):
    config = tmp_path / "bad.config"
    config.write_text("model_config_list { config { name: 'x' bogus_field: 1 } }")
    server = start_server([f"--model_config_file={config}"])
    assert server.proc.wait(timeout=60) != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.read_log()


@pytest.mark.slow
def test_batching_request_log_and_metrics(tmp_path, start_server, monitoring_config):
    base = str(tmp_path / "m")
    os.makedirs(base)
    push(base, 7)
    model_factory.write_warmup(os.path.join(base, "7"), "m")
    batching = tmp_path / "batching.config"
    batching.write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 2000 } "
        "max_enqueued_batches { value: 100 } num_batch_threads { value: 2 }"
    )
    prefix = str(tmp_path / "logs" / "m")
    config = tmp_path / "models.config"
    config.write_text(
        f"model_config_list {{ config {{ name: 'm' base_path: '{base}' "
        f"model_platform: 'tensorflow' logging_config {{ log_collector_config {{ "
        f"filename_prefix: '{prefix}' }} sampling_config {{ sampling_rate: 1.0 }} }} }} }}"
    )
    server = start_server(
        [
            f"--model_config_file={config}",
            "--enable_batching=true",
            f"--batching_parameters_file={batching}",
            f"--monitoring_config_file={monitoring_config}",
        ],
        ready_model="m",
    )

    def one(i):
        return predict(server.url, float(i)).json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [{"predictions": [[0.5 * i + 2.0]]} for i in range(200)]
    too_big = requests.post(
        f"{server.url}/v1/models/m:predict", json={"instances": [[1.0]] * 65}, timeout=5
    )
    assert too_big.status_code == 400
    assert "Task size 65 is larger than maximum input batch size 64" in too_big.json()["error"]
    metrics = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=5).text
    assert (
        ':serving:model_version_request_count{model_name="m",version="7",API="predict",'
        'entrypoint="REST",status="OK"} 200'
    ) in metrics
    assert "# TYPE :tensorflow:serving:batching_session:input_batch_size histogram" in metrics
    assert ':serving:model_version_events{model_name="m",version="7",event="load_ok"} 1' in metrics
    from prometheus_client.parser import text_string_to_metric_families

    names = {family.name for family in text_string_to_metric_families(metrics)}
    assert ":tensorflow:serving:request_latency" in names
    batch_count = [
        line
        for line in metrics.splitlines()
        if line.startswith(":tensorflow:serving:batching_session:input_batch_size_count")
    ]
    assert batch_count and int(batch_count[0].split()[-1]) < 200  # requests were merged
    assert server.stop() == 0
    records = []
    for path in sorted(glob.glob(prefix + ".*.tfrecord")):
        records += [
            prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path)
        ]
    assert len(records) == 200
    entry = records[0]
    assert entry.log_metadata.model_spec.name == "m"
    assert entry.log_metadata.model_spec.version.value == 7
    assert entry.log_metadata.sampling_config.sampling_rate == 1.0
    assert list(entry.predict_log.request.inputs["x"].tensor_shape.dim)[0].size == 1
    assert len(entry.predict_log.response.outputs["y"].float_val) == 1


def test_missing_model_base_path_flag(start_server):
    server = start_server([])
    assert server.proc.wait(timeout=60) != 0
    assert (
        "Both server_options.model_base_path and server_options.model_config_file are empty!"
        in server.read_log()
    )


@pytest.mark.slow
def test_bounded_load_zero_errors(rest_url):
    session_local = threading.local()

    def one(i):
        session = getattr(session_local, "s", None) or requests.Session()
        session_local.s = session
        response = session.post(
            f"{rest_url}/v1/models/half_plus_two/versions/123:predict",
            json={"instances": [[float(i % 10)]]},
            timeout=60,
        )
        return response.status_code == 200 and response.json() == {
            "predictions": [[0.5 * (i % 10) + 2.0]]
        }

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ok = list(pool.map(one, range(3000)))
    assert all(ok)  # no wall-clock bound: this machine's load is not the server's


def test_rest_timeout_gives_504(tmp_path, start_server):
    base = str(tmp_path / "m")
    os.makedirs(base)
    push(base, 1)
    batching = tmp_path / "batching.config"
    batching.write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 3000000 } "
        "num_batch_threads { value: 1 }"
    )
    server = start_server(
        [
            "--model_name=m",
            f"--model_base_path={base}",
            "--enable_batching=true",
            f"--batching_parameters_file={batching}",
            "--rest_api_timeout_in_ms=300",
        ],
        ready_model="m",
    )
    # Waiting out the 3 s batch would give a 200: the 504 is the 300 ms REST deadline.
    response = predict(server.url, 1.0)
    assert response.status_code == 504
    assert response.json() == {"error": "Deadline Exceeded"}


@pytest.mark.slow
def test_grpc_reload_config(tmp_path, start_server):
    import grpc
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    for name, b in (("a", 2.0), ("b", 5.0)):
        os.makedirs(tmp_path / name)
        push(str(tmp_path / name), 1, b=b)
    server = start_server(
        [
            "--model_name=a",
            f"--model_base_path={tmp_path / 'a'}",
            "--enable_grpc_config_reload=true",
        ],
        ready_model="a",
    )
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(
        f"model_config_list {{ config {{ name: 'b' base_path: '{tmp_path / 'b'}' "
        f"model_platform: 'tensorflow' }} }}",
        request.config,
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        response = stub.HandleReloadConfigRequest(request, 60)
        assert response.status.error_code == 0
        assert predict(server.url, 2.0, model="b").json() == {"predictions": [[6.0]]}
        assert predict(server.url, 2.0, model="a").status_code == 404
        request.config.model_config_list.config[0].base_path = "relative/path"
        with pytest.raises(grpc.RpcError) as error:  # upstream: the error is the call's status
            stub.HandleReloadConfigRequest(request, 60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "to have an absolute path or URI" in error.value.details()
    assert "HandleReloadConfigRequest from ipv4:127.0.0.1:" in server.read_log()


@pytest.mark.slow
def test_restart_with_a_corrupt_newest_version(tmp_path, start_server):
    """kill -9 mid-push left version 3 truncated: serve 2 at once, report 3, pick up a fix."""
    base = str(tmp_path / "m")
    os.makedirs(base)
    push(base, 1, b=1.0)
    push(base, 2, b=2.0)
    push(base, 3, b=3.0)
    saved_model = os.path.join(base, "3", "saved_model.pb")
    with open(saved_model, "rb") as f:
        data = f.read()
    with open(saved_model, "wb") as f:
        f.write(data[: len(data) // 2])
    # Default retry flags (5 retries, 60 s apart): waiting them out kept the ports closed ~5 min.
    server = start_server(["--model_name=m", f"--model_base_path={base}"], ready_model="m")
    assert predict(server.url, 2.0).json() == {"predictions": [[3.0]]}
    states = requests.get(f"{server.url}/v1/models/m", timeout=10).json()["model_version_status"]
    by_version = {s["version"]: s for s in states}
    assert by_version["2"]["state"] == "AVAILABLE"
    assert by_version["3"]["state"] == "END"
    assert by_version["3"]["status"]["error_code"] != "OK"
    assert by_version["3"]["status"]["error_message"]
    assert "1" not in by_version
    assert "Servable m version 2 stands in for version(s) 3" in server.read_log()
    tmp = os.path.join(base, ".fixed-3")
    model_factory.save_half_plus_two(tmp, b=3.0)
    for name in ("saved_model.pb", "variables"):  # rewrite version 3 in place
        target = os.path.join(base, "3", name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.rename(os.path.join(tmp, name), target)
    assert wait_for(lambda: predict(server.url, 2.0).json() == {"predictions": [[4.0]]})

    def states():
        body = requests.get(f"{server.url}/v1/models/m", timeout=10).json()
        return {s["version"]: s["state"] for s in body["model_version_status"]}

    assert wait_for(lambda: states() == {"3": "AVAILABLE", "2": "END"})
