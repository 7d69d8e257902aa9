"""Canary library: serve a candidate SavedModel in a subprocess and probe it.

Plain functions (no TFX types) so they can be tested on their own:
`stage_model` lays the SavedModel out as `<base>/<name>/1`, `read_examples`
reads gzipped TFRecord tf.Examples, `run_canary` serves it with
`serving.process.ServerProcess`, and `probe` sends REST predict (raw named features built
from the serving_default signature's inputs), REST classify (when the model
has a classification-style signature) and gRPC Predict requests and checks
every answer.

`check_parity` compares what the server answers with what the model itself
computes offline: every sample example goes through REST :predict and gRPC
Predict on `serving_default` (built by `serving.client.build_instance`, missing
cells as NaN / "") and through the `serving_examples` signature loaded in this
process (the tf.Example path the Evaluator scored and blessed); any
probability further apart than `PARITY_TOLERANCE` fails the canary.
"""

import dataclasses
import glob
import math
import os
import shutil

import numpy as np
import requests
import tensorflow as tf

from serving.client import (
    ServingClient,
    ServingClientError,
    build_instance,
    example_to_row,
    instance_columns,
)
from serving.process import ServerProcess

DEFAULT_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
PARITY_TOLERANCE = 1e-6
PARITY_BATCH = 64  # rows per parity request


@dataclasses.dataclass
class CanaryResult:
    """Outcome of a canary run: passed only if every check passed."""

    checks: list = dataclasses.field(default_factory=list)  # (name, ok, detail)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, bool(ok), detail))


def stage_model(saved_model_dir: str, work_dir: str, model_name: str) -> str:
    """Copies the SavedModel to `<work_dir>/<model_name>/1`; returns the base path."""
    base = os.path.join(work_dir, model_name)
    shutil.copytree(saved_model_dir, os.path.join(base, "1"))
    return base


def read_examples(split_dir: str, limit: int) -> list:
    """Reads up to `limit` tf.Examples from the (gzipped) TFRecords in `split_dir`."""
    files = sorted(glob.glob(os.path.join(split_dir, "*")))
    if not files:
        return []
    compression = "GZIP" if files[0].endswith(".gz") else ""
    dataset = tf.data.TFRecordDataset(files, compression_type=compression).take(limit)
    return [tf.train.Example.FromString(r.numpy()) for r in dataset]


def _finite_probabilities(outputs: dict, batch: int) -> str:
    """Returns "" if outputs look sane, else what is wrong."""
    for alias, value in outputs.items():
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != batch:
            return f"output {alias} has shape {array.shape}, expected batch {batch}"
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)):
                return f"output {alias} has non-finite values"
            if any(k in alias.lower() for k in ("prob", "score", "logistic")):
                if array.min() < 0.0 or array.max() > 1.0:
                    return f"output {alias} outside [0, 1]"
    return ""


def _classify_signature(signatures: dict):
    for key in sorted(signatures):
        signature = signatures[key]
        if set(signature.get("inputs", {})) == {"inputs"} and (
            {"scores", "classes"} & set(signature.get("outputs", {}))
        ):
            return key
    return None


def probe(
    url: str, grpc_target: str, model_name: str, examples: list, num_requests: int
) -> CanaryResult:
    """Sends REST predict/classify and gRPC Predict requests and checks them."""
    result = CanaryResult()
    client = ServingClient(url, grpc_target, timeout=30)
    signatures = client.metadata(model_name)["metadata"]["signature_def"]["signature_def"]
    if DEFAULT_SIGNATURE not in signatures:
        result.add("serving_default", False, "no serving_default signature")
        return result
    dtypes = {a: i["dtype"] for a, i in sorted(signatures[DEFAULT_SIGNATURE]["inputs"].items())}
    rows = [example_to_row(e) for e in examples]
    classify_key = _classify_signature(signatures)
    for i in range(num_requests):
        batch = [rows[(i + j) % len(rows)] for j in range(1 + i % 4)]
        try:
            instances = [build_instance(r, dtypes) for r in batch]
        except ValueError as e:  # e.g. a missing value an int64 input cannot carry
            result.add(f"request_{i}", False, str(e))
            continue
        try:
            answer = client.predict(model_name, instances)
            outputs = _rows_to_columns(answer["predictions"])
            problem = _finite_probabilities(outputs, len(batch))
            result.add(f"rest_predict_{i}", not problem, problem)
        except (ServingClientError, requests.RequestException, KeyError) as e:
            result.add(f"rest_predict_{i}", False, str(e))
        try:
            arrays = {a: _column(instances, a, dtypes[a]) for a in dtypes}
            outputs = client.predict_grpc(model_name, arrays)
            problem = _finite_probabilities(outputs, len(batch))
            result.add(f"grpc_predict_{i}", not problem, problem)
        except (ServingClientError, ValueError) as e:
            result.add(f"grpc_predict_{i}", False, str(e))
        if classify_key is not None:
            try:
                answer = client.classify(model_name, batch, classify_key)
                scores = [s for per in answer["results"] for _, s in per]
                ok = len(answer["results"]) == len(batch) and all(
                    math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores
                )
                result.add(f"rest_classify_{i}", ok, "" if ok else f"bad results {answer}")
            except (ServingClientError, requests.RequestException, KeyError) as e:
                result.add(f"rest_classify_{i}", False, str(e))
    return result


def _rows_to_columns(predictions: list) -> dict:
    if predictions and isinstance(predictions[0], dict):
        return {
            k: np.array(
                [p[k] for p in predictions],
                dtype=object if isinstance(predictions[0][k], str) else None,
            )
            for k in predictions[0]
        }
    return {"output": np.array(predictions)}


def _column(instances: list, alias: str, dtype: str) -> np.ndarray:
    return instance_columns(instances, {alias: dtype})[alias]


def offline_probabilities(saved_model_dir: str, examples: list) -> np.ndarray:
    """The model's own [n] probabilities from its `serving_examples` signature."""
    signatures = tf.saved_model.load(saved_model_dir).signatures
    if EXAMPLES_SIGNATURE not in signatures:
        raise ValueError(f"the model has no {EXAMPLES_SIGNATURE} signature to compare with")
    serialized = tf.constant([e.SerializeToString() for e in examples])
    outputs = signatures[EXAMPLES_SIGNATURE](examples=serialized)
    return np.reshape(outputs["probabilities"].numpy(), [-1]).astype(np.float64)


def compare(name: str, served: np.ndarray, expected: np.ndarray, tolerance: float):
    """(name, ok, detail) of one parity comparison over the sample."""
    served = np.reshape(np.asarray(served, np.float64), [-1])
    if served.shape != expected.shape:
        return name, False, f"{served.size} predictions for {expected.size} rows"
    diff = np.abs(served - expected)
    worst = int(np.nanargmax(diff)) if diff.size and not np.all(np.isnan(diff)) else 0
    bad = int(np.sum(~(diff <= tolerance)))  # NaN counts as bad
    detail = (
        f"max |served - serving_examples| {float(np.max(diff)) if diff.size else 0.0:.3g} "
        f"over {diff.size} rows, {bad} above {tolerance:g}"
    )
    if bad:
        detail += f" (row {worst}: served {served[worst]:.6f}, offline {expected[worst]:.6f})"
    return name, bad == 0, detail


def check_parity(
    url: str,
    grpc_target: str,
    model_name: str,
    examples: list,
    expected: np.ndarray,
    tolerance: float = PARITY_TOLERANCE,
) -> CanaryResult:
    """REST :predict and gRPC Predict of every example agree with `expected`.

    Each example becomes a `serving_default` instance as `serving-client`
    builds it (missing features: NaN / ""), sent `PARITY_BATCH` rows per
    request. A request that fails counts as a failed comparison.
    """
    result = CanaryResult()
    client = ServingClient(url, grpc_target, timeout=60)
    try:
        dtypes = client.input_dtypes(model_name)
        instances = [build_instance(example_to_row(e), dtypes) for e in examples]
    except (ServingClientError, requests.RequestException, KeyError, ValueError) as e:
        result.add("parity", False, f"cannot build requests: {e}")
        return result
    batches = [instances[i : i + PARITY_BATCH] for i in range(0, len(instances), PARITY_BATCH)]
    for name, send in (
        ("parity_rest_predict", lambda b: client.predict(model_name, b)["predictions"]),
        (
            "parity_grpc_predict",
            lambda b: client.predict_grpc(model_name, instance_columns(b, dtypes))["probabilities"],
        ),
    ):
        try:
            served = np.concatenate([np.reshape(send(b), [-1]) for b in batches])
        except (ServingClientError, requests.RequestException, KeyError, ValueError) as e:
            result.add(name, False, f"request failed: {e}")
            continue
        result.add(*compare(name, served, expected, tolerance))
    return result


def run_canary(
    saved_model_dir: str,
    examples: list,
    work_dir: str,
    model_name: str = "canary",
    num_requests: int = 10,
    timeout_seconds: float = 120.0,
    parity_tolerance: float = PARITY_TOLERANCE,
) -> CanaryResult:
    """Stages the model, serves it in a subprocess, probes it, always stops it.

    `examples` feed the probes and the parity check (`check_parity`, every
    example, REST and gRPC, against the model's own `serving_examples`).
    """
    result = CanaryResult()
    if not examples:
        result.add("examples", False, "no examples to build requests from")
        return result
    base = stage_model(saved_model_dir, work_dir, model_name)
    args = [
        f"--model_name={model_name}",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
        "--max_num_load_retries=0",
    ]
    with ServerProcess(args, os.path.join(work_dir, "server.log")) as server:
        problem = server.wait_available(model_name, timeout_seconds)
        result.add("available", not problem, problem)
        if not problem:
            probed = probe(server.url, server.grpc_target, model_name, examples, num_requests)
            result.checks.extend(probed.checks)
            try:
                expected = offline_probabilities(saved_model_dir, examples)
            except (ValueError, OSError, tf.errors.OpError) as e:
                result.add("parity", False, f"no offline reference: {e}")
                return result
            parity = check_parity(
                server.url, server.grpc_target, model_name, examples, expected, parity_tolerance
            )
            result.checks.extend(parity.checks)
    return result
