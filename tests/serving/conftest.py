"""Fixtures: tiny SavedModels, a model config, and a server subprocess.

Point the contract tests at another server (e.g. the official image) with
`SERVING_URL=http://host:8501 SERVING_GRPC=host:8500 SERVING_MODEL_DIR=<dir>`.
First write the models (`python tests/serving/model_factory.py <dir> /models`),
then start that server on them, e.g. the official image:
`docker run -p 8500:8500 -p 8501:8501 -v <dir>:/models tensorflow/serving:2.16.1
--model_config_file=/models/models.config --allow_version_labels_for_unavailable_models=true
--monitoring_config_file=/models/monitoring.config`, and run
`pytest tests/serving -m "not ours"` with SERVING_MODEL_DIR_IN_SERVER=/models.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _load_model_factory():
    """Registers tests/serving/model_factory.py as `model_factory`.

    Test modules `import model_factory`; registering it here keeps that working
    under both pytest import modes (prepend and importlib) without sys.path edits.
    """
    if "model_factory" not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_factory.py")
        spec = importlib.util.spec_from_file_location("model_factory", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["model_factory"] = module
        spec.loader.exec_module(module)
    return sys.modules["model_factory"]


write_models = _load_model_factory().write_models

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTERNAL = bool(os.environ.get("SERVING_URL"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow serving tests")
    config.addinivalue_line("markers", "e2e: end-to-end tests")
    config.addinivalue_line(
        "markers",
        "ours: checks this implementation only (skipped when SERVING_URL points at another server)",
    )


def pytest_collection_modifyitems(config, items):
    if EXTERNAL:
        skip = pytest.mark.skip(reason="implementation-specific; SERVING_URL is set")
        for item in items:
            if "ours" in item.keywords:
                item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A `serving.server` subprocess on free loopback ports."""

    def __init__(self, args: list, log_path: str, preexec_fn=None):
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        env = dict(
            os.environ, PYTHONPATH=REPO_ROOT, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2"
        )
        self._log = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.server",
                f"--port={self.grpc_port}",
                f"--rest_api_port={self.rest_port}",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            preexec_fn=preexec_fn,
        )

    def wait_ready(self, model: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/v1/models/{model}", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready: {self.read_log()[-3000:]}")

    def wait_for_metric(self, line: str, timeout: float = 60) -> None:
        """Polls the Prometheus page (monitoring config on) until it has `line`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = requests.get(f"{self.url}/monitoring/prometheus/metrics", timeout=60).text
            if line in text:
                return
            time.sleep(0.1)
        assert line in text

    def read_log(self) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path):
    """Factory: start_server(args, ready_model, preexec_fn) -> ServerProcess (always stopped)."""
    started = []

    def start(args, ready_model=None, preexec_fn=None):
        server = ServerProcess(args, str(tmp_path / f"server{len(started)}.log"), preexec_fn)
        started.append(server)
        if ready_model:
            server.wait_ready(ready_model)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory):
    """start_server for servers shared by one module's tests (always stopped)."""
    started = []
    root = tmp_path_factory.mktemp("module-server")

    def start(args, ready_model=None, preexec_fn=None):
        server = ServerProcess(args, str(root / f"server{len(started)}.log"), preexec_fn)
        started.append(server)
        if ready_model:
            server.wait_ready(ready_model)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def monitoring_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mon") / "monitoring.config"
    path.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    return str(path)


@pytest.fixture
def start_shadow_server(tmp_path, start_server, monitoring_config):
    """Factory: start(base, logs) serves model "m" from `base`'s versions 1 and 2.

    Version 2 (the latest) answers; every predict call is mirrored to version 1;
    every call is logged under the prefix `logs`; metrics are on.
    """

    def start(base, logs):
        config = tmp_path / "models.config"
        config.write_text(
            f"model_config_list {{ config {{ name: 'm' base_path: '{base}' model_platform: "
            f"'tensorflow' model_version_policy {{ specific {{ versions: 1 versions: 2 }} }} "
            f"logging_config {{ log_collector_config {{ filename_prefix: '{logs}' }} "
            f"sampling_config {{ sampling_rate: 1.0 }} }} }} }}"
        )
        return start_server(
            [
                f"--model_config_file={config}",
                f"--monitoring_config_file={monitoring_config}",
                "--shadow_traffic_share=1.0",
                "--shadow_version=1",
            ],
            ready_model="m",
        )

    return start


@pytest.fixture(scope="session")
def contract_server(tmp_path_factory, monitoring_config):
    """(rest_url, grpc_target) of a server with the contract-test models."""
    if EXTERNAL:
        root = os.environ["SERVING_MODEL_DIR"]
        write_models(root, os.environ.get("SERVING_MODEL_DIR_IN_SERVER", root))
        yield os.environ["SERVING_URL"].rstrip("/"), os.environ.get("SERVING_GRPC")
        return
    root = str(tmp_path_factory.mktemp("models"))
    config = write_models(root)
    server = ServerProcess(
        [
            f"--model_config_file={config}",
            "--allow_version_labels_for_unavailable_models=true",
            f"--monitoring_config_file={monitoring_config}",
            "--file_system_poll_wait_seconds=1",
        ],
        os.path.join(root, "server.log"),
    )
    try:
        server.wait_ready("half_plus_two")
        server.wait_ready("multi")
        yield server.url, server.grpc_target
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rest_url(contract_server) -> str:
    return contract_server[0]


@pytest.fixture(scope="session")
def grpc_target(contract_server) -> str:
    if not contract_server[1]:
        pytest.skip("SERVING_GRPC not set")
    return contract_server[1]
