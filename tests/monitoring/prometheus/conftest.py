"""Fixtures: the Prometheus/Alertmanager tools, and the daemons on free loopback ports.

The tools come from Debian's `prometheus` and `prometheus-alertmanager`
packages (`scripts/setup.sh --browser` installs them). Without them the tests
are skipped on a laptop and fail under CI (CI=true), so a CI image that lost
them cannot pass silently.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


@pytest.fixture
def tool():
    """tool(name) -> path of a Prometheus/Alertmanager binary (skip, or fail under CI)."""

    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            message = f"{name} not installed (apt-get install -y {PACKAGES[name]})"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return find


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A Prometheus or Alertmanager child on a free loopback port (`url`)."""

    def __init__(self, argv_for_port, log_path: str, timeout: float = 90):
        # The port is free when chosen but may be taken before the child binds
        # it: a child that exits at once is restarted on another port.
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.log_path = log_path
            self._log = open(log_path, "a")
            self.proc = subprocess.Popen(
                argv_for_port(self.port), stdout=self._log, stderr=subprocess.STDOUT
            )
            if self._wait_ready(timeout):
                return
            self.stop()
        raise RuntimeError(f"not ready: {argv_for_port(0)[0]}; log:\n{self.read_log()[-3000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).ok:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def read_log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def start_alertmanager(tool, tmp_path):
    """start_alertmanager(config_path) -> Daemon (no clustering; always stopped)."""
    started = []

    def start(config_path: str) -> Daemon:
        storage = tmp_path / f"alertmanager{len(started)}"
        storage.mkdir()
        binary = tool("prometheus-alertmanager")
        daemon = Daemon(
            lambda port: [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            str(tmp_path / f"alertmanager{len(started)}.log"),
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def start_prometheus(tool, tmp_path):
    """start_prometheus(config_path) -> Daemon (always stopped)."""
    started = []

    def start(config_path: str) -> Daemon:
        storage = tmp_path / f"prometheus{len(started)}"
        storage.mkdir()
        binary = tool("prometheus")
        daemon = Daemon(
            lambda port: [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            str(tmp_path / f"prometheus{len(started)}.log"),
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
