"""Our model server as a child process: ``python -m serving.server`` on free loopback ports.

Used by the pipeline's InfraCanary (serve a candidate, probe it) and by the
monitoring replay scenario (a long-lived server with request logging).

The child is the same interpreter (``sys.executable``) with the parent's
environment, so it imports ``serving`` from wherever the parent's installation
put it (a wheel, an editable install, or the caller's ``PYTHONPATH``); the
legacy-Keras setting comes from ``core.env`` when ``serving`` is imported.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import requests


def free_port() -> int:
    """Returns a currently free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A ``serving.server`` child bound to 127.0.0.1 (a context manager that always stops it).

    ``args`` are the server flags besides the ports and bind address, e.g.
    ``--model_name=taxi --model_base_path=/srv/taxi`` or ``--model_config_file=...``.
    Output goes to ``log_path``. The child shuts down by itself when this process
    ends, even by ``kill -9`` (``--exit_with_parent``).
    """

    # The ports are chosen free, then bound by the child: another process can
    # take one in between. A child that fails to bind is started again on new
    # ports, at most this many times.
    BIND_ATTEMPTS = 3

    def __init__(self, args: list[str], log_path: str):
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "w")
        self._attempts = 0
        self._launch()

    def _launch(self) -> None:
        self._attempts += 1
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.server",
                f"--port={self.grpc_port}",
                f"--rest_api_port={self.rest_port}",
                "--bind_address=127.0.0.1",
                "--exit_with_parent",  # a kill -9 of this process must not orphan it
                *self.args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _lost_a_port(self) -> bool:
        """Whether the exited child failed to bind its ports (and may start again)."""
        if self._attempts >= self.BIND_ATTEMPTS:
            return False
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        return "could not bind" in text or "address already in use" in text.lower()

    def available_versions(self, model_name: str) -> list[int]:
        """Versions of ``model_name`` the server reports AVAILABLE ([] if it cannot say)."""
        try:
            response = requests.get(f"{self.url}/v1/models/{model_name}", timeout=5)
            statuses = response.json().get("model_version_status", []) if response.ok else []
            return sorted(int(s["version"]) for s in statuses if s["state"] == "AVAILABLE")
        except (requests.RequestException, ValueError, KeyError):
            return []

    def wait_available(self, model_name: str, timeout: float) -> str:
        """Waits until a version of ``model_name`` is AVAILABLE; returns "" or why not.

        A child that lost one of its ports to another process is started again on
        new ones (``url`` and ``grpc_target`` change): read them after this returns.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self._lost_a_port():
                    self._log.write(f"--- ports taken; starting again ({self._attempts + 1})\n")
                    self._log.flush()
                    self._launch()
                    continue
                return f"server exited with code {self.proc.returncode} (log: {self.log_path})"
            if self.available_versions(model_name):
                return ""
            time.sleep(0.2)
        return f"model {model_name} not AVAILABLE after {timeout:.0f}s (log: {self.log_path})"

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the process."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
