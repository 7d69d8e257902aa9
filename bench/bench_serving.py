"""Benchmark: taxi predict over REST and gRPC on loopback, vs. in-process calls.

Usage:
    python bench/bench_serving.py                       # builds a taxi stand-in model
    python bench/bench_serving.py --model_base_path serving_model/taxi \
        --csv data/taxi/span-2013/data.csv              # a model pushed by the pipeline

For each concurrency (default 1, 8, 32) it reports req/s, p50 and p99:
REST is driven by `wrk` (apt-get install wrk) with a Lua POST script, gRPC by
coroutines on one `grpc.aio` channel using TF Serving's stubs. The in-process line is the
signature's session call rate (batch 1) measured in this same script. Client
and server share the machine's cores; the report prints the core count.
This is a benchmark, not a test: nothing is asserted.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import requests  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One TF thread per pool: on 2 cores TF's spinning pools otherwise steal the
# event loop's core (measured: ~6.5k -> ~7.9k req/s for REST at c=32).
SERVER_FLAGS = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1")
BATCHING = (
    "max_batch_size { value: 128 } batch_timeout_micros { value: 0 } "
    "max_enqueued_batches { value: 1000 } num_batch_threads { value: 1 }"
)


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


def start_server(base: str, work: str):
    batching = os.path.join(work, "batching.config")
    with open(batching, "w") as f:
        f.write(BATCHING)
    grpc_port, rest_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.server",
            "--model_name=taxi",
            f"--model_base_path={base}",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--enable_batching=true",
            f"--batching_parameters_file={batching}",
            "--file_system_poll_wait_seconds=0",
            *SERVER_FLAGS,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited; see " + log.name)
        try:
            if requests.get(url + "/v1/models/taxi", timeout=1).ok:
                return proc, url, f"127.0.0.1:{grpc_port}"
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server did not become ready")


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
    parser.add_argument("--seconds", type=int, default=5)
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
        results = {
            "cores": os.cpu_count(),
            "server_flags": list(SERVER_FLAGS) + [BATCHING],
            "note": "client and server share these cores",
            "in_process": in_process_rate(base, instance, args.seconds),
        }
        proc, url, target = start_server(base, work)
        try:
            from serving.client import ServingClient, build_instance

            dtypes = ServingClient(url).input_dtypes("taxi")
            instance = build_instance(instance, dtypes)
            body = json.dumps({"instances": [instance]})
            rest_wrk(url, body, 32, 2, work)  # warm up batch sizes and allocators
            for c in [int(c) for c in args.concurrency.split(",")]:
                results[f"rest_c{c}"] = rest_wrk(url, body, c, args.seconds, work)
                results[f"grpc_c{c}"] = grpc_aio(target, instance, dtypes, c, args.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print(f"{'run':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for name, r in results.items():
            if isinstance(r, dict):
                print(
                    f"{name:<14}{r['rps']:>10.0f}{r['p50_ms']:>10.3f}{r['p99_ms']:>10.3f}"
                    f"{r['errors']:>8}"
                )
        print(f"cores: {results['cores']} ({results['note']})")
        if args.output:
            with open(args.output, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
