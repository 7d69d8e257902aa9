"""Benchmark: taxi predict over REST and gRPC on loopback, vs. in-process calls.

Usage:
    python bench/bench_serving.py                       # builds a taxi stand-in model
    python bench/bench_serving.py --model_base_path serving_model/taxi \
        --csv data/taxi/span-2013/data.csv              # a model pushed by the pipeline

Two parts:

1. Side by side (REST, `--compare_concurrency`, default 32): servers in
   these configurations run at the same time (idle ones sleep) and `wrk`
   drives each in turn for `--rounds` rounds, so a busy machine slows all of
   them alike; the ratios to `defaults` are what to read:
   `previous_defaults` (batching off, TF thread pools sized by TF: the server
   as the README started it before the fast defaults), `defaults` (no
   performance flags), `request_log_10pct` (defaults + a `logging_config`
   sampling 10%), `shadow_100pct` (defaults + every request mirrored to a
   second version, records written; the server's shadow metrics, read after
   the queue settled, say how many measured requests were mirrored, dropped
   or failed). Server CPU per request comes from /proc/<pid>/stat of the
   server and the processes it started (the shadow worker).
2. For each concurrency (default 1, 8, 32) on the default server: REST by
   `wrk` with a Lua POST script, gRPC by coroutines on one `grpc.aio`
   channel using TF Serving's stubs; plus the signature's in-process call
   rate (batch 1).

Client and server share the machine's cores; the report prints the core
count and the load average before and after. This is a benchmark, not a
test: nothing is asserted. Needs `wrk` (`apt-get install wrk`, or
`scripts/setup.sh --bench`).

Over 400 lines: a benchmark script: server configurations, the ``wrk`` REST driver, the
``grpc.aio`` driver and the in-process rate, run in one invocation so the figures come
from one machine state.
"""

import core.env  # noqa: F401 - first: legacy Keras before TensorFlow (bench/ is no package)

# isort: split

import argparse
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TF Serving's defaults, which were ours before serving/defaults.py
PREVIOUS_DEFAULTS = (
    "--enable_batching=false",
    "--tensorflow_intra_op_parallelism=0",
    "--tensorflow_inter_op_parallelism=0",
)
CONFIGS = ("previous_defaults", "defaults", "request_log_10pct", "shadow_100pct")
METRICS_PATH = "/monitoring/prometheus/metrics"
SETTLE_SECONDS = 5.0  # the shadow's queue and worker catch up before its counts are read


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_stand_in(root: str):
    """Saves the taxi stand-in model from tests/serving/model_factory.py."""
    spec = importlib.util.spec_from_file_location(
        "model_factory", os.path.join(REPO_ROOT, "tests", "serving", "model_factory.py")
    )
    factory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(factory)
    base = os.path.join(root, "taxi")
    factory.save_taxi_like(os.path.join(base, "1"))
    from serving.client import example_to_row

    return base, example_to_row(factory.taxi_example(0))


def in_process_rate(base: str, instance: dict, seconds: float) -> dict:
    """Signature calls/s (batch 1) through the same Servable the server uses."""
    from serving import json_codec
    from serving.client import build_instance
    from serving.dtypes import enum_name
    from serving.json_dialect import parse_json_object
    from serving.model_manager import list_versions
    from serving.servable import Servable

    version, path = max(list_versions(base).items())
    servable = Servable("bench", version, path)
    signature = servable.signatures["serving_default"]
    dtypes = {alias: enum_name(spec.dtype) for alias, spec in signature.inputs.items()}
    body = json.dumps({"instances": [build_instance(instance, dtypes)]}).encode()
    feeds, _ = json_codec.decode_predict_inputs(
        parse_json_object(body), signature.input_dtypes, body
    )
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(latencies) < 2_000_000:
        start = time.perf_counter()
        servable.run(signature, feeds)
        latencies.append(time.perf_counter() - start)
    servable.close()
    return summarize(latencies, sum(latencies))


def summarize(latencies: list, elapsed: float, errors: int = 0) -> dict:
    ordered = np.sort(np.array(latencies)) * 1e3
    return {
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": float(np.percentile(ordered, 50)) if len(ordered) else float("nan"),
        "p99_ms": float(np.percentile(ordered, 99)) if len(ordered) else float("nan"),
        "errors": errors,
        "requests": len(latencies),
    }


def model_config(base: str, work: str, name: str) -> str:
    """A one-model config file: both versions for the shadow, a logging_config if asked."""
    extra = ""
    if name == "shadow_100pct":
        extra = "model_version_policy { specific { versions: 1 versions: 2 } } "
    if name == "request_log_10pct":
        prefix = os.path.join(work, "logs", "taxi")
        extra = (
            f"logging_config {{ log_collector_config {{ filename_prefix: '{prefix}' }} "
            "sampling_config { sampling_rate: 0.1 } } "
        )
    path = os.path.join(work, f"{name}.config")
    with open(path, "w") as f:
        f.write(
            f"model_config_list {{ config {{ name: 'taxi' base_path: '{base}' "
            f"model_platform: 'tensorflow' {extra}}} }}\n"
        )
    return path


def server_flags(base: str, work: str, name: str) -> list:
    flags = [f"--model_config_file={model_config(base, work, name)}"]
    if name == "previous_defaults":
        flags += PREVIOUS_DEFAULTS
    if name == "shadow_100pct":
        monitoring = os.path.join(work, "monitoring.config")
        with open(monitoring, "w") as f:
            f.write(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
        flags += [
            f"--monitoring_config_file={monitoring}",
            "--shadow_traffic_share=1.0",
            "--shadow_version=1",
            f"--shadow_log_prefix={os.path.join(work, 'shadow', 'taxi')}",
        ]
    return flags


class Server:
    """A `serving.server` child on free ports; `cpu_seconds()` reads /proc."""

    def __init__(self, flags: list, work: str, name: str):
        grpc_port, rest_port = free_port(), free_port()
        env = dict(os.environ, PYTHONPATH=REPO_ROOT)
        self.log_path = os.path.join(work, f"{name}.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.server",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                "--file_system_poll_wait_seconds=0",
                *flags,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.url = f"http://127.0.0.1:{rest_port}"
        self.target = f"127.0.0.1:{grpc_port}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited; see " + self.log_path)
            try:
                if requests.get(self.url + "/v1/models/taxi", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready; see " + self.log_path)

    def cpu_seconds(self) -> float:
        """CPU seconds of the server and the processes it started (the shadow worker)."""
        return sum(_cpu_seconds(pid) for pid in _process_tree(self.proc.pid))

    def shadow_counts(self) -> dict:
        """status -> mirrored calls counted by `:serving:shadow_request_count` so far."""
        text = requests.get(self.url + METRICS_PATH, timeout=10).text
        counts: dict = {}
        for status, value in re.findall(
            r'^:serving:shadow_request_count\{[^}]*status="(\w+)"\} (\S+)$', text, re.M
        ):
            counts[status] = counts.get(status, 0) + int(float(value))
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _process_tree(pid: int) -> list:
    """`pid` and its descendants (from /proc/<pid>/task/*/children)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in os.listdir(f"/proc/{pids[i]}/task"):
            try:
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
            except OSError:  # the task ended meanwhile
                pass
        i += 1
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def two_versions(base: str, work: str) -> str:
    """A base path whose versions 1 and 2 are both the newest version of `base`."""
    from serving.model_manager import list_versions

    _, path = max(list_versions(base).items())
    root = os.path.join(work, "models", "taxi")
    os.makedirs(root)
    for version in ("1", "2"):
        os.symlink(path, os.path.join(root, version))
    return root


def compare(base: str, work: str, body: str, concurrency: int, seconds: int, rounds: int):
    """Runs the CONFIGS side by side; returns {name: {rps, p99_ms, cpu_ms_per_request, ...}}."""
    servers = {}
    try:
        for name in CONFIGS:
            servers[name] = Server(server_flags(base, work, name), work, name)
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():
            rest_wrk(server.url, body, concurrency, 2, work)  # warm up
        runs = {name: [] for name in CONFIGS}
        time.sleep(SETTLE_SECONDS)
        mirrored_before = servers["shadow_100pct"].shadow_counts()
        for round_ in range(rounds):
            order = CONFIGS if round_ % 2 == 0 else tuple(reversed(CONFIGS))
            for name in order:
                server = servers[name]
                cpu = server.cpu_seconds()
                result = rest_wrk(server.url, body, concurrency, seconds, work)
                result["cpu_ms_per_request"] = (
                    (server.cpu_seconds() - cpu) * 1e3 / max(1, result["requests"])
                )
                runs[name].append(result)
        time.sleep(SETTLE_SECONDS)
        mirrored = servers["shadow_100pct"].shadow_counts()
        merged = {name: _mean(results) for name, results in runs.items()}
        merged["shadow_100pct"]["mirrored"] = {
            status: count - mirrored_before.get(status, 0) for status, count in mirrored.items()
        }
        merged["shadow_100pct"]["mirrored"]["requests"] = sum(
            r["requests"] for r in runs["shadow_100pct"]
        )
        return merged
    finally:
        for server in servers.values():
            server.stop()


def _mean(results: list) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
    merged = {k: float(np.mean([r[k] for r in results])) for k in keys}
    merged["errors"] = sum(r["errors"] for r in results)
    merged["rounds"] = len(results)
    merged["rps_per_round"] = [round(r["rps"]) for r in results]
    return merged


def _to_ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def rest_wrk(url: str, body: str, concurrency: int, seconds: int, work: str) -> dict:
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script,
            url + "/v1/models/taxi:predict",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _to_ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": _to_ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def grpc_requests(instance: dict, dtypes: dict):
    """A PredictRequest for `instance` (one row) with typed tensors."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    numpy_types = {
        "DT_FLOAT": np.float32,
        "DT_INT64": np.int64,
        "DT_STRING": object,
        "DT_DOUBLE": np.float64,
        "DT_INT32": np.int32,
    }
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    for alias, dtype in dtypes.items():
        value = instance[alias]
        value = value.encode() if isinstance(value, str) else value
        request.inputs[alias].CopyFrom(
            tf.make_tensor_proto(np.array([value], dtype=numpy_types[dtype]))
        )
    return request


def grpc_aio(target: str, instance: dict, dtypes: dict, concurrency: int, seconds: float) -> dict:
    """gRPC Predict load from `concurrency` coroutines on one grpc.aio channel."""
    import asyncio

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = grpc_requests(instance, dtypes)

    async def run():
        latencies, errors = [], [0]
        async with grpc.aio.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stop = time.perf_counter() + seconds

            async def worker():
                while time.perf_counter() < stop and len(latencies) < 2_000_000:
                    start = time.perf_counter()
                    try:
                        await stub.Predict(request, timeout=10)
                        latencies.append(time.perf_counter() - start)
                    except grpc.RpcError:
                        errors[0] += 1

            started = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(concurrency)])
            return summarize(latencies, time.perf_counter() - started, errors[0])

    return asyncio.run(run())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_base_path", default="")
    parser.add_argument("--instance", default="", help="one raw-feature instance as JSON")
    parser.add_argument("--csv", default="", help="take the instance from this CSV's first row")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--compare_concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="side-by-side rounds")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--skip_sweep", action="store_true", help="only the side-by-side part")
    parser.add_argument("--output", default="", help="write results JSON here")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    sys.path.insert(0, REPO_ROOT)
    work = tempfile.mkdtemp(prefix="bench_serving_")
    try:
        if args.model_base_path:
            base = os.path.abspath(args.model_base_path)
            if args.csv:
                import csv

                with open(args.csv, newline="") as f:
                    instance = next(csv.DictReader(f))
            else:
                instance = json.loads(args.instance)
        else:
            base, instance = build_stand_in(work)
        from serving.defaults import usable_cores

        results = {
            "cores": usable_cores(),
            "load_before": os.getloadavg(),
            "note": "client and server share these cores",
        }
        base = two_versions(base, work)
        server = Server(server_flags(base, work, "defaults"), work, "sweep")
        try:
            server.wait_ready()
            from serving.client import ServingClient, build_instance

            dtypes = ServingClient(server.url).input_dtypes("taxi")
            instance = build_instance(instance, dtypes)
            body = json.dumps({"instances": [instance]})
            if not args.skip_sweep:
                rest_wrk(server.url, body, 32, 2, work)  # warm up batch sizes and allocators
                for c in [int(c) for c in args.concurrency.split(",")]:
                    results[f"rest_c{c}"] = rest_wrk(server.url, body, c, args.seconds, work)
                    results[f"grpc_c{c}"] = grpc_aio(
                        server.target, instance, dtypes, c, args.seconds
                    )
        finally:
            server.stop()
        if not args.skip_sweep:
            results["in_process"] = in_process_rate(base, instance, args.seconds)
        side = compare(base, work, body, args.compare_concurrency, args.seconds, args.rounds)
        results["side_by_side"] = side
        results["load_after"] = os.getloadavg()
        print(f"{'run':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for name, r in results.items():
            if isinstance(r, dict) and "rps" in r:
                print(
                    f"{name:<22}{r['rps']:>10.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                    f"{r['errors']:>8}"
                )
        c = args.compare_concurrency
        print(f"\nside by side, REST c={c}, mean of {args.rounds} rounds of {args.seconds}s:")
        print(
            f"{'config':<22}{'req/s':>10}{'p99 ms':>10}{'CPU ms/req':>12}{'vs defaults':>13}"
            "  req/s per round"
        )
        reference = side["defaults"]["rps"]
        for name, r in side.items():
            print(
                f"{name:<22}{r['rps']:>10.0f}{r['p99_ms']:>10.2f}{r['cpu_ms_per_request']:>12.3f}"
                f"{r['rps'] / reference:>13.2f}  {r['rps_per_round']}"
            )
        cpu = side["defaults"]["cpu_ms_per_request"]
        for name in ("request_log_10pct", "shadow_100pct"):
            print(
                f"{name} costs {1 - side[name]['rps'] / reference:.1%} throughput, "
                f"{side[name]['cpu_ms_per_request'] / cpu - 1:+.1%} server CPU per request"
            )
        mirrored = side["shadow_100pct"]["mirrored"]
        print(
            f"shadow_100pct mirrored calls of its {mirrored.pop('requests')} measured requests: "
            + ", ".join(f"{status} {count}" for status, count in sorted(mirrored.items()))
        )
        print(f"defaults / previous_defaults: {reference / side['previous_defaults']['rps']:.2f}x")
        load = ", ".join(f"{x:.2f}" for x in results["load_before"])
        after = ", ".join(f"{x:.2f}" for x in results["load_after"])
        print(
            f"cores: {results['cores']} ({results['note']}); load average before: {load}, after: {after}"
        )
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
