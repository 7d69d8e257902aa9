"""Canary library: serve a candidate SavedModel in a subprocess and probe it.

Plain functions (no TFX types) so they can be tested on their own:
`stage_model` lays the SavedModel out as `<base>/<name>/1`, `read_examples`
reads gzipped TFRecord tf.Examples, `run_canary` serves it with
`serving.process.ServerProcess`, and `probe` sends REST predict (raw named features built
from the serving_default signature's inputs), REST classify (when the model
has a classification-style signature) and gRPC Predict requests and checks
every answer.
"""

import dataclasses
import glob
import math
import os
import shutil

import numpy as np
import requests
import tensorflow as tf

from serving.client import ServingClient, ServingClientError, build_instance, example_to_row
from serving.process import ServerProcess

DEFAULT_SIGNATURE = "serving_default"


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
        instances = [build_instance(r, dtypes) for r in batch]
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


_NUMPY = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_INT64": np.int64,
    "DT_INT32": np.int32,
    "DT_BOOL": np.bool_,
}


def _column(instances: list, alias: str, dtype: str) -> np.ndarray:
    values = [i[alias] for i in instances]
    if dtype == "DT_STRING":
        return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=object)
    return np.array(values, dtype=_NUMPY.get(dtype))


def run_canary(
    saved_model_dir: str,
    examples: list,
    work_dir: str,
    model_name: str = "canary",
    num_requests: int = 10,
    timeout_seconds: float = 120.0,
) -> CanaryResult:
    """Stages the model, serves it in a subprocess, probes it, always stops it."""
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
    return result
