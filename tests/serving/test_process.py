"""serving.process.ServerProcess: start, report availability, stop (real server, tiny model)."""

import os
import socket

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
