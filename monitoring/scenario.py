"""Replay scenario: drift -> detection -> alert -> retrain -> canary -> decision.

One command (`taxi-monitor scenario --work-dir DIR [--small]`, or
`python -m monitoring.scenario --work-dir DIR [--small]`) replays the bundled
taxi spans in time order against a real server, with every step done by the
product's own code (the pipeline CLI, `serving.server`, and the functions
behind `taxi-monitor window|monitor-pipeline|quality|alert|watch`:
monitoring/window.py, pipeline/monitoring_runner.py, monitoring/live_quality.py,
monitoring/alert_check.py, monitoring/watch.py), reading only what really
happened: request logs, late labels and ML Metadata.

Data (all written under the work dir; data/ is only read):

* history: `span-2013`, `span-2014` (copies) are in the pipeline's data dir
  from the start; version 1 trains on them;
* live period, 2015: the span's rows, gaps included (empty cells are sent
  as missing: NaN / "", see serving/client.py), shuffled with a fixed seed
  and split into three disjoint parts: A normal traffic, B drifted traffic (the drift window), C drifted
  traffic sent while the canary runs;
* the drifted labelled span that arrives after the drift: `span-2016`, the
  2016 rows plus the 2015 rows not sent as traffic, with the same drift,
  written to the data dir after detection.

The pipeline trains on the newest two spans (`--num-spans 2`): v1 on
2013-2014, the retrained v2 on 2014 and the drifted 2016.

The injected drift (`inject_drift`), a broken upstream feed:

* `trip_miles` x 1.609: distances reported in kilometres in the miles column;
* `fare` x 1.5 and `tips` x 1.5: a fare increase, tips in proportion, so
  the label (tips > 20% of the fare) keeps its meaning;
* `payment_type`: every second "Credit Card" trip is reported as "Cash" (a
  card terminal mis-recording payments); the value stays in the schema's
  domain, so ingestion's schema gate still passes.

Why it must be detected: against the previous window of normal traffic,
`fare` moves beyond its Jensen-Shannon threshold and the Cash share of
`payment_type` rises by about 0.2 (L-infinity); the thresholds follow the
window size (monitoring/drift_thresholds.py). `trip_miles` x 1.609 moves the
divergence of a 400-row window by less than sampling noise does. It also hurts the served model: trained when Cash trips
almost never tipped, it now predicts "no big tip" for card trips recorded
as Cash, so live accuracy drops.

Timeline: train v1 -> serve (latest policy, request logging at rate 1.0,
`--canary_traffic_share`) -> window 1: normal traffic (A) -> window 2:
drifted traffic (B) -> late labels -> `window` (skew/drift) and the
monitoring TFX pipeline on window 2 -> `quality` -> `alert` (log file) ->
the drifted span lands -> `watch`: pins v1, runs the pipeline, deploys v2 as
the canary -> canary traffic (C) -> `watch` checks (a `hold` before the
labels arrive, then promote or abort) -> the served version. Every
decision's MLMD execution id is printed, and `scenario.json` keeps the
timeline.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import time

import requests

from core.constants import MODEL_NAME
from monitoring import (
    alert_check,
    baselines,
    canary,
    decide,
    drift,
    live_quality,
    outcome,
    rollback,
    watch,
    window,
)
from pipeline import lineage, monitoring_runner
from serving.process import ServerProcess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = MODEL_NAME
SCHEMA = os.path.join(REPO, "data", "schema", "schema.pbtxt")


@dataclasses.dataclass
class Settings:
    history_rows: int  # per history span (0: all)
    normal_rows: int  # A
    drift_rows: int  # B
    canary_rows: int  # C
    train_steps: int
    window_seconds: int
    label_delay: float
    min_samples: int
    canary_share: float
    canary_max_checks: int
    pipeline_args: tuple = ()


# --small: the whole history spans (a smaller sample trains models that fail the
# pipeline's behavioral checks at few steps), few train steps, no InfraCanary.
# 300 steps: at 150 the model retrained on the drifted span can come out
# over-confident (calibration 1.19 > 1.15 measured), so nothing is blessed
# and the scenario never reaches its canary.
SMALL = Settings(
    history_rows=0,
    normal_rows=400,
    drift_rows=400,
    canary_rows=800,
    train_steps=300,
    window_seconds=8,
    label_delay=2.0,
    min_samples=150,
    canary_share=0.5,
    canary_max_checks=6,
    pipeline_args=("--num-spans", "2", "--no-canary", "--eval-steps", "20"),
)
FULL = Settings(
    history_rows=0,
    normal_rows=1000,
    drift_rows=1000,
    canary_rows=1200,
    train_steps=800,
    window_seconds=20,
    label_delay=5.0,
    min_samples=300,
    canary_share=0.5,
    canary_max_checks=8,
    pipeline_args=("--num-spans", "2"),
)


class ScenarioError(RuntimeError):
    """A step did not do what the scenario needs (the message says which)."""


class Timeline:
    def __init__(self):
        self.started = time.monotonic()
        self.events = []

    def add(self, step: str, text: str, **facts) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {step:<10} {text}", flush=True)
        self.events.append(dict(facts, t=round(elapsed, 1), step=step, text=text))


def read_rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: str, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def big_tipper(row: dict) -> int:
    """The pipeline's label: tips > 20% of the fare."""
    return int(float(row["tips"] or 0) > 0.2 * float(row["fare"] or 0))


def inject_drift(rows: list[dict], seed: int = 7) -> list[dict]:
    """The documented drift (module docstring); returns new rows."""
    rng = random.Random(seed)
    drifted = []
    for row in rows:
        row = dict(row)
        if row["trip_miles"]:
            row["trip_miles"] = f"{float(row['trip_miles']) * 1.609:.2f}"
        for column in ("fare", "tips"):
            if row[column]:
                row[column] = f"{float(row[column]) * 1.5:.2f}"
        if row["payment_type"] == "Credit Card" and rng.random() < 0.5:
            row["payment_type"] = "Cash"
        drifted.append(row)
    return drifted


def prepare_data(work: str, settings: Settings, source: str) -> dict:
    """Writes the history spans into `<work>/data`; returns the traffic parts and new span."""
    rng = random.Random(42)
    data = os.path.join(work, "data")
    for span in (2013, 2014):
        rows = read_rows(os.path.join(source, f"span-{span}", "data.csv"))
        if settings.history_rows:
            rows = rng.sample(rows, min(settings.history_rows, len(rows)))
        write_rows(os.path.join(data, f"span-{span}", "data.csv"), rows)
    rows_2015 = read_rows(os.path.join(source, "span-2015", "data.csv"))
    order = list(range(len(rows_2015)))
    rng.shuffle(order)
    a, b = settings.normal_rows, settings.normal_rows + settings.drift_rows
    c = b + settings.canary_rows
    if len(order) < c:
        raise ScenarioError(f"span-2015 has {len(order)} rows, {c} needed")
    live = [rows_2015[i] for i in order[:c]]
    # The labelled data of the drifted period: the 2016 rows and the 2015 rows not
    # sent as traffic, all with the drift.
    traffic = set(order[:c])
    unused = [r for i, r in enumerate(rows_2015) if i not in traffic]
    new_span = inject_drift(
        read_rows(os.path.join(source, "span-2016", "data.csv")) + unused, seed=8
    )
    return {
        "normal": live[:a],
        "drift": inject_drift(live[a:b]),
        "canary": inject_drift(live[b:c], seed=9),
        "new_span": new_span,
    }


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


def run(work: str, small: bool = True, source: str | None = None, train_steps=None) -> dict:
    """Runs the scenario in `work` (created); returns the summary (also `scenario.json`)."""
    settings = dataclasses.replace(SMALL if small else FULL)
    if train_steps:
        settings.train_steps = train_steps
    source = source or os.path.join(REPO, "data", "taxi")
    work = os.path.abspath(work)
    os.makedirs(work, exist_ok=True)
    if os.listdir(work):
        raise ScenarioError(f"work dir {work} is not empty")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    timeline = Timeline()
    output = os.path.join(work, "tfx")
    metadata = os.path.join(output, "metadata.sqlite")
    data_dir = os.path.join(work, "data")
    out = os.path.join(work, "monitoring")
    summary = {"work_dir": work, "settings": dataclasses.asdict(settings)}

    parts = prepare_data(work, settings, source)
    timeline.add(
        "data",
        f"history spans 2013, 2014 in {data_dir}; live 2015 rows: {len(parts['normal'])} "
        f"normal, {len(parts['drift'])} drifted, {len(parts['canary'])} drifted for the canary",
    )
    pipeline_args = [
        "--train-steps",
        str(settings.train_steps),
        *settings.pipeline_args,
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.local_runner",
            "--data-dir",
            data_dir,
            "--output-dir",
            output,
            *pipeline_args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if result.returncode != 0:
        raise ScenarioError(f"initial pipeline run failed: {result.stdout[-2000:]}")
    with open(os.path.join(work, "pipeline-initial.log"), "w") as f:
        f.write(result.stdout + result.stderr)
    serving_dir = os.path.join(output, "serving", MODEL)
    versions = (
        sorted(int(v) for v in os.listdir(serving_dir) if v.isdigit())
        if os.path.isdir(serving_dir)
        else []
    )
    if not versions:
        raise ScenarioError(
            "the initial pipeline run pushed nothing; its summary: "
            + result.stdout[result.stdout.rfind("=== run summary") :][-1500:]
        )
    v1 = versions[-1]
    timeline.add("train", f"taxi-pipeline on spans 2013-2014 pushed version {v1}", version=v1)

    server = Server(work, serving_dir, settings.canary_share)
    try:
        server.wait_ready()
        from serving.client import ServingClient

        dtypes = ServingClient(server.url, timeout=30).input_dtypes(MODEL)
        timeline.add(
            "serve",
            f"server {server.url} serving {server.available()}, request logs {server.logs}, "
            f"canary share {settings.canary_share}",
        )
        labels = LateLabels(os.path.join(work, "labels.csv"), settings.label_delay)
        length = settings.window_seconds
        t0 = math.ceil(time.time()) + 1
        windows = {"normal": (t0, t0 + length), "drift": (t0 + length, t0 + 2 * length)}
        for phase in ("normal", "drift"):
            start, end = windows[phase]
            sleep_until(start)
            sent = send(server.url, parts[phase], dtypes, phase)
            if time.time() >= end:
                raise ScenarioError(
                    f"{phase} traffic took longer than the {length}s window; "
                    "raise Settings.window_seconds"
                )
            labels.add(sent["labels"])
            timeline.add(
                "traffic",
                f"{phase}: {sent['sent']} requests ({sent['errors']} errors) in "
                f"[{start}, {end}); labels due in {settings.label_delay}s",
            )
        sleep_until(windows["drift"][1] + 1)  # the window is over and the log flushed
        labels.flush(wait=True)

        detection = {}
        for phase in ("normal", "drift"):
            start, end = windows[phase]
            detection[phase] = detect(server.logs, start, end, metadata, out)
            drifted = ", ".join(
                f"{feature}={value:.2f}"
                for feature, value in sorted(
                    detection[phase]["drift_values"].items(), key=lambda x: -x[1]
                )
            )
            timeline.add(
                "detect",
                f"window {phase} ({detection[phase]['rows']} rows): drift vs previous window: "
                f"[{drifted or 'none'}]; skew vs training: {len(detection[phase]['skew'])} "
                f"features (exit {detection[phase]['exit']}; "
                f"{out}/window-{start}-{end}/report.md)",
            )
        summary["detection"] = detection
        before = {e.id for e in monitoring_runner.monitor_executions(metadata)}
        start, end = windows["drift"]
        try:
            code = monitoring_runner.run_window(
                logs=server.logs, start=start, end=end, metadata=metadata, schema_file=SCHEMA
            ).outcome
        except monitoring_runner.MonitorRunError as e:
            timeline.add("detect", f"monitoring TFX pipeline not run: {e}")
            code = outcome.BAD_INPUT
        monitor_ids = [
            e.id for e in monitoring_runner.monitor_executions(metadata) if e.id not in before
        ]
        summary["monitor_pipeline"] = {"exit": code, "executions": monitor_ids}
        timeline.add(
            "detect",
            f"monitoring TFX pipeline on the drift window: exit {code}, "
            f"RequestLogMonitor MLMD execution {monitor_ids}",
        )

        accuracy = {}
        for phase in ("normal", "drift"):
            start, end = windows[phase]
            result = live_quality.check(server.logs, labels.path, start, end)
            live_quality.write_outputs(result, out)
            accuracy[phase] = result["overall"]["accuracy"]
        summary["live_accuracy"] = accuracy
        timeline.add(
            "quality",
            f"live accuracy of {v1} (late labels): normal {accuracy['normal']:.3f}, "
            f"drifted {accuracy['drift']:.3f}",
        )
        start, end = windows["drift"]
        alert_log = os.path.join(work, "alerts.log")
        code = alert_check.run(
            os.path.join(work, "alerts.state.json"),
            summary=os.path.join(out, f"window-{start}-{end}", "summary.json"),
            quality=os.path.join(out, f"quality-{start}-{end}", "summary.json"),
            baseline_accuracy=accuracy["normal"],
            metrics_url=f"{server.url}/monitoring/prometheus/metrics",
            limits=alert_check.Limits(max_p99_ms=1000),
            log_file=alert_log,
        ).outcome
        fired = []
        if os.path.exists(alert_log):
            with open(alert_log) as f:
                fired = [json.loads(line)["rule"] for line in f]
        summary["alerts"] = {"exit": code, "fired": fired, "log": alert_log}
        timeline.add("alert", f"alert exit {code}; fired {fired} -> {alert_log}")

        write_rows(os.path.join(data_dir, "span-2016", "data.csv"), parts["new_span"])
        timeline.add(
            "data",
            f"drifted labelled span-2016 ({len(parts['new_span'])} rows) lands in {data_dir}",
        )

        def watch_check() -> int:
            check = watch.check_once(
                data_dir,
                metadata,
                watch.pipeline_command(output, data_dir, extra=pipeline_args),
                alert_state=os.path.join(work, "alerts.state.json"),
                server_url=server.url,
                model_config=server.config,
                model_name=MODEL,
                logs=server.logs,
                labels=labels.path,
                policy=decide.Policy(
                    min_samples=settings.min_samples, max_checks=settings.canary_max_checks
                ),
                report_dir=os.path.join(out, "ab"),
            )
            for problem in check.problems:
                print(f"problem: {problem}", file=sys.stderr)
            return outcome.of(False, bool(check.problems))

        code = watch_check()
        deploys = [e for e in canary_executions(metadata) if e["action"] == "deploy"]
        if code != outcome.OK or not deploys:
            raise ScenarioError(f"watch did not deploy a canary (exit {code})")
        deploy = deploys[-1]
        pins = [e for e in canary_executions(metadata) if e["action"] == "pin"]
        summary["retrain"] = {
            "exit": code,
            "stable": int(deploy["stable"]),
            "candidate": int(deploy["candidate"]),
            "deploy_execution": deploy["id"],
            "pin_executions": [e["id"] for e in pins],
        }
        timeline.add(
            "retrain",
            f"watch: pinned {deploy['stable']} (MLMD {[e['id'] for e in pins]}), ran "
            f"taxi-pipeline, deployed {deploy['candidate']} as canary (MLMD {deploy['id']}); "
            f"serving {server.available()}",
        )

        sent = send(server.url, parts["canary"], dtypes, "canary")
        labels.add(sent["labels"])
        timeline.add(
            "traffic",
            f"canary phase: {sent['sent']} requests ({sent['errors']} errors), split "
            f"{settings.canary_share:.0%} to the canary; labels due in {settings.label_delay}s",
        )
        time.sleep(1.0)  # the request log is flushed
        decision = None
        for check in range(settings.canary_max_checks):
            if check:
                labels.flush(wait=True)
                time.sleep(1.0)
            watch_check()
            latest = canary_executions(metadata)[-1]
            timeline.add(
                "decide",
                f"watch check {check + 1}: {latest['action']} (MLMD {latest['id']}): "
                f"{latest['reason']}",
                execution=latest["id"],
            )
            if latest["action"] in ("promote", "abort"):
                decision = latest
                break
        if decision is None:
            raise ScenarioError("no canary decision within the checks")
        expected = int(decision["candidate" if decision["action"] == "promote" else "stable"])
        deadline = time.monotonic() + 60
        while server.available() != [expected] and time.monotonic() < deadline:
            time.sleep(0.5)
        served = server.available()
        summary["decision"] = {
            "action": decision["action"],
            "reason": decision["reason"],
            "execution": decision["id"],
            "figures": {
                k: decision.get(k)
                for k in (
                    "stable_n",
                    "stable_accuracy",
                    "canary_n",
                    "canary_accuracy",
                    "z",
                    "p_value",
                )
            },
            "expected_version": expected,
            "served_versions": served,
        }
        timeline.add(
            "serve",
            f"{decision['action']}: server now serves {served} (expected [{expected}])",
        )
    finally:
        server.stop()
    summary["canary_executions"] = canary_executions(metadata)
    summary["timeline"] = timeline.events
    with open(os.path.join(work, "scenario.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print("MLMD executions (type Canary):")
    for e in summary["canary_executions"]:
        print(f"  {e['id']:>4} {e['action']:<8} stable {e['stable']} candidate {e['candidate']}")
    print(f"  RequestLogMonitor: {summary['monitor_pipeline']['executions']}")
    print(f"summary: {os.path.join(work, 'scenario.json')}")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's flags (also those of `taxi-monitor scenario`)."""
    parser.add_argument("--work-dir", required=True, help="empty or new folder for everything")
    parser.add_argument("--small", action="store_true", help="small samples, few train steps")
    parser.add_argument("--train-steps", type=int, help="override the train steps")
    parser.add_argument("--source", help="span-<year>/data.csv folder (default: data/taxi)")


def run_command(
    work_dir: str, small: bool = False, source: str | None = None, train_steps: int | None = None
) -> int:
    """Runs the scenario; exit 0 when the server serves the decided version, 1 when not,
    2 when a step did not do what the scenario needs."""
    try:
        summary = run(work_dir, small, source, train_steps)
    except ScenarioError as e:
        print(f"error: scenario stopped: {e}", file=sys.stderr)
        return outcome.BAD_INPUT
    decision = summary["decision"]
    found = decision["served_versions"] != [decision["expected_version"]]
    return outcome.of(found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.scenario", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(args.work_dir, args.small, args.source, args.train_steps)


if __name__ == "__main__":
    sys.exit(main())
