"""The scenario's timeline (`run`) and its command line (`python -m monitoring.scenario`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

from core import resources
from monitoring import alert_check, decide, live_quality, outcome, scenario, watch
from monitoring.scenario.data import prepare_data, write_rows
from monitoring.scenario.live import (
    LateLabels,
    Server,
    Timeline,
    canary_executions,
    detect,
    send,
    sleep_until,
)
from monitoring.scenario.settings import FULL, MODEL, SCHEMA, SMALL, ScenarioError
from pipeline import monitoring_runner


def run(work: str, small: bool = True, source: str | None = None, train_steps=None) -> dict:
    """Runs the scenario in `work` (created); returns the summary (also `scenario.json`)."""
    settings = dataclasses.replace(SMALL if small else FULL)
    if train_steps:
        settings.train_steps = train_steps
    source = source or resources.data_root()
    work = os.path.abspath(work)
    os.makedirs(work, exist_ok=True)
    if os.listdir(work):
        raise ScenarioError(f"work dir {work} is not empty")
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
        prog="python -m monitoring.scenario", description=scenario.__doc__.split("\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command(args.work_dir, args.small, args.source, args.train_steps)


if __name__ == "__main__":
    sys.exit(main())
