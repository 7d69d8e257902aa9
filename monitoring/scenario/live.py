"""The scenario's running parts: the server, the traffic, late labels and what it reads back."""

from __future__ import annotations

import os
import time

import requests

import lineage
from monitoring import baselines, canary, drift, rollback, window
from monitoring.scenario.data import big_tipper
from monitoring.scenario.settings import MODEL, SCHEMA, ScenarioError
from serving.process import ServerProcess


class Timeline:
    def __init__(self):
        self.started = time.monotonic()
        self.events = []

    def add(self, step: str, text: str, **facts) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {step:<10} {text}", flush=True)
        self.events.append(dict(facts, t=round(elapsed, 1), step=step, text=text))


class Server:
    """`python -m serving.server` on free loopback ports, request logging on."""

    def __init__(self, work: str, serving_dir: str, canary_share: float):
        self.logs = os.path.join(work, "logs", MODEL)
        os.makedirs(os.path.dirname(self.logs), exist_ok=True)
        self.config = os.path.join(work, "models.config")
        with open(self.config, "w") as f:
            f.write(
                f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{serving_dir}" '
                f'model_platform: "tensorflow" logging_config {{ log_collector_config {{ '
                f'filename_prefix: "{self.logs}" }} sampling_config {{ sampling_rate: 1.0 }} }} '
                f"}} }}\n"
            )
        monitoring_config = os.path.join(work, "monitoring.config")
        with open(monitoring_config, "w") as f:
            f.write('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
        self.log_path = os.path.join(work, "server.log")
        self.process = ServerProcess(
            [
                f"--model_config_file={self.config}",
                "--model_config_file_poll_wait_seconds=1",
                "--file_system_poll_wait_seconds=1",
                f"--monitoring_config_file={monitoring_config}",
                f"--canary_traffic_share={canary_share}",
                "--tensorflow_intra_op_parallelism=1",
                "--tensorflow_inter_op_parallelism=1",
            ],
            self.log_path,
        )
        self.url = self.process.url

    def wait_ready(self, timeout: float = 120) -> None:
        problem = self.process.wait_available(MODEL, timeout)
        if problem:
            raise ScenarioError(f"server not ready: {problem}")
        self.url = self.process.url  # new if a port was lost and the server restarted

    def available(self) -> list[int]:
        return self.process.available_versions(MODEL)

    def stop(self) -> None:
        self.process.stop(timeout=30)


def send(url: str, rows: list[dict], dtypes: dict, prefix: str) -> dict:
    """One predict request per row, id `<prefix>-<i>`; returns counts and (id, label) pairs."""
    from serving.client import build_instance, json_body

    result = {"sent": 0, "errors": 0, "labels": []}
    with requests.Session() as session:
        for i, row in enumerate(rows):
            request_id = f"{prefix}-{i}"
            response = session.post(
                f"{url}/v1/models/{MODEL}:predict",
                data=json_body({"instances": [build_instance(row, dtypes)]}),
                headers={"x-request-id": request_id, "Content-Type": "application/json"},
                timeout=30,
            )
            result["sent"] += 1
            if not response.ok:
                result["errors"] += 1
            result["labels"].append((request_id, big_tipper(row)))
    return result


class LateLabels:
    """Appends labels (CSV request_id,label) once their delay has passed."""

    def __init__(self, path: str, delay: float):
        self.path, self.delay, self.pending = path, delay, []
        with open(path, "w") as f:
            f.write("request_id,label\n")

    def add(self, pairs: list) -> None:
        self.pending.append((time.time() + self.delay, pairs))

    def flush(self, wait: bool = False) -> int:
        written = 0
        for due, pairs in list(self.pending):
            if wait and due > time.time():
                time.sleep(due - time.time())
            if due <= time.time():
                with open(self.path, "a") as f:
                    f.writelines(f"{request_id},{label}\n" for request_id, label in pairs)
                self.pending.remove((due, pairs))
                written += len(pairs)
        return written


def sleep_until(moment: float) -> None:
    if moment > time.time():
        time.sleep(moment - time.time())


def canary_executions(metadata: str) -> list[dict]:
    try:
        store = rollback.writable_store(metadata)
        executions = store.get_executions_by_type(canary.EXECUTION_TYPE)
    except Exception:  # no store or no Canary type yet
        return []
    return [
        dict({k: v.string_value for k, v in e.properties.items()}, id=e.id)
        for e in sorted(executions, key=lambda e: e.id)
    ]


def detect(logs: str, start: int, end: int, metadata: str, out: str) -> dict:
    """The window check of `[start, end)` (outputs under `out`): what it found, and its exit."""
    result = window.check(
        logs,
        start,
        end,
        drift.load_schema(SCHEMA),
        lambda version: baselines.training_statistics(lineage.open_store(metadata), version),
    )
    window.write_outputs(result, out)
    exceeded = result.exceeded
    return {
        "exit": result.outcome,
        "skew": sorted({f.feature for f in exceeded if f.kind == "skew"}),
        "drift": sorted({f.feature for f in exceeded if f.kind == "drift"}),
        "drift_values": {f.feature: round(f.value, 3) for f in exceeded if f.kind == "drift"},
        "rows": len(result.window.rows),
    }
