"""serving.process.ServerProcess: start, report availability, stop (real server, tiny model)."""

import os
import signal
import socket
import subprocess
import sys
import time

import model_factory
import pytest
import requests

from serving.process import ServerProcess, free_port

pytestmark = pytest.mark.slow


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_serves_a_model_and_always_stops(tmp_path):
    base = str(tmp_path / "hpt")
    model_factory.save_half_plus_two(os.path.join(base, "1"))
    with ServerProcess(
        ["--model_name=hpt", f"--model_base_path={base}"], str(tmp_path / "server.log")
    ) as server:
        assert server.wait_available("hpt", 120) == ""
        assert server.available_versions("hpt") == [1]
        assert server.available_versions("unknown") == []
        server.stop(timeout=120)  # generous: a loaded machine is slow to drain and exit
    # SIGTERM drained and exited cleanly (0; SIGKILL would be -9), and nothing listens.
    assert server.proc.returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/v1/models/hpt", timeout=5)


def test_reports_a_server_that_exits(tmp_path):
    server = ServerProcess(["--no_such_flag=1"], str(tmp_path / "server.log"))
    try:
        problem = server.wait_available("x", 60)
    finally:
        server.stop()
    assert problem.startswith("server exited with code")


def test_a_port_taken_before_the_child_binds_it_is_retried_on_new_ports(tmp_path, monkeypatch):
    from serving import process

    base = str(tmp_path / "hpt")
    model_factory.save_half_plus_two(os.path.join(base, "1"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, free_port()])  # the first child's gRPC port is taken
        real = process.free_port
        monkeypatch.setattr(process, "free_port", lambda: next(ports, None) or real())
        with ServerProcess(
            ["--model_name=hpt", f"--model_base_path={base}"], str(tmp_path / "server.log")
        ) as server:
            assert server.wait_available("hpt", 120) == ""
            assert server.grpc_port != busy and server._attempts == 2
            assert server.available_versions("hpt") == [1]
    log = (tmp_path / "server.log").read_text()
    assert "ports taken; starting again (2)" in log


_PARENT = """
import sys, time
from serving.process import ServerProcess
server = ServerProcess(["--model_name=hpt", "--model_base_path=" + sys.argv[1]], sys.argv[2])
print(server.proc.pid, server.wait_available("hpt", 120) or "available", flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="watches the server through /proc")
def test_the_server_shuts_down_when_the_process_that_started_it_is_killed(tmp_path):
    # kill -9 of taxi-pipeline during its InfraCanary left the candidate's server running.
    base, log = str(tmp_path / "hpt"), str(tmp_path / "server.log")
    model_factory.save_half_plus_two(os.path.join(base, "1"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, base, log], stdout=subprocess.PIPE, text=True, cwd=repo
    )
    server = None
    try:
        pid, state = parent.stdout.readline().split()
        server = int(pid)
        assert state == "available"
        parent.kill()
        parent.wait(timeout=60)
        deadline = time.monotonic() + 120
        while _running(server):
            assert time.monotonic() < deadline, "the server outlived its parent by 120 s"
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait(timeout=60)
        if server and _running(server):
            os.kill(server, signal.SIGKILL)
    with open(log) as f:
        text = f.read()
    assert "The process that started this server" in text and "Shutting down" in text
