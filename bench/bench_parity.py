"""Benchmark: how far `serving_default` answers drift from the evaluated prediction.

Usage:
    python bench/bench_parity.py --model_base_path /tmp/run/serving/taxi
    python bench/bench_parity.py --model_base_path ... --csv data/taxi/span-2016/data.csv --rows 500

Reads the first ``--rows`` rows of the CSV, builds each row's tf.Example as
ExampleGen does (empty cells absent, types from data/schema) and scores it
with the model's own ``serving_examples`` signature: the prediction the
Evaluator scored and blessed. Then the same rows go through
``serving_default`` in two encodings, in process (no server; the server runs
the same signature):

* ``zero-filled``: empty cells as 0 / 0.0 / "" (what serving-client sent
  before integer inputs could say "missing");
* ``missing as NaN / ""``: ``serving.client.build_instance`` today.

For each it prints the max |difference| and the rows differing by more than
0.01 and 1e-6. This is a measurement, not a test: nothing is asserted.
"""

import core.env  # noqa: F401 - first: legacy Keras before TensorFlow (bench/ is no package)

# isort: split

import argparse
import csv
import json
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_metadata.proto.v0 import schema_pb2

from core import resources
from serving.client import build_instance, instance_columns

DEFAULT_CSV = os.path.join(resources.data_root(), "span-2016", "data.csv")
SCHEMA = os.path.join(resources.schema_dir(), "schema.pbtxt")


def load_schema_types(path: str = SCHEMA) -> dict:
    """Feature name -> schema_pb2 type (INT, FLOAT, BYTES)."""
    from google.protobuf import text_format

    with open(path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    return {feature.name: feature.type for feature in schema.feature}


def row_to_example(row: dict, types: dict) -> tf.train.Example:
    """A CSV row as ExampleGen's tf.Example: empty cells are absent."""
    example = tf.train.Example()
    for key, text in row.items():
        if text == "" or key not in types:
            continue
        feature = example.features.feature[key]
        if types[key] == schema_pb2.INT:
            feature.int64_list.value.append(int(text))
        elif types[key] == schema_pb2.FLOAT:
            feature.float_list.value.append(float(text))
        else:
            feature.bytes_list.value.append(text.encode())
    return example


def zero_filled(row: dict, dtypes: dict) -> dict:
    """The old client encoding: an empty cell is 0 / 0.0 / ""."""
    return {
        key: ("" if dtype == "DT_STRING" else 0.0) if row.get(key, "") == "" else row[key]
        for key, dtype in dtypes.items()
    }


def measure(served: np.ndarray, expected: np.ndarray) -> dict:
    diff = np.abs(served - expected)
    return {
        "max_abs_diff": float(diff.max()),
        "rows_above_0.01": int(np.sum(diff > 0.01)),
        "rows_above_1e-6": int(np.sum(diff > 1e-6)),
        "rows": int(diff.size),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_base_path", required=True, help="pushed model (newest version)")
    parser.add_argument("--csv", default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--output", default="", help="write results JSON here")
    args = parser.parse_args(argv)

    base = args.model_base_path
    versions = [v for v in os.listdir(base) if v.isdigit()]
    model_dir = os.path.join(base, max(versions, key=int)) if versions else base
    signatures = tf.saved_model.load(model_dir).signatures
    serve = signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    dtypes = {k: types_pb2.DataType.Name(s.dtype.as_datatype_enum) for k, s in specs.items()}

    with open(args.csv, newline="") as f:
        rows = [row for _, row in zip(range(args.rows), csv.DictReader(f), strict=False)]
    types = load_schema_types()
    examples = [row_to_example(r, types).SerializeToString() for r in rows]
    expected = signatures["serving_examples"](examples=tf.constant(examples))["probabilities"]
    expected = expected.numpy().reshape(-1).astype(np.float64)

    def run(instances):
        columns = instance_columns(instances, dtypes)
        inputs = {k: tf.constant(columns[k], specs[k].dtype) for k in specs}
        return serve(**inputs)["probabilities"].numpy().reshape(-1).astype(np.float64)

    results = {
        "model": model_dir,
        "csv": args.csv,
        "rows_with_a_gap": sum(any(r.get(k, "") == "" for k in dtypes) for r in rows),
        "zero-filled": measure(run([zero_filled(r, dtypes) for r in rows]), expected),
        'missing as NaN / ""': measure(run([build_instance(r, dtypes) for r in rows]), expected),
    }
    print(f"{len(rows)} rows of {args.csv} ({results['rows_with_a_gap']} with an empty cell)")
    print(f"model {model_dir}; reference: serving_examples (tf.Example, as evaluated)")
    for name in ("zero-filled", 'missing as NaN / ""'):
        r = results[name]
        print(
            f"  serving_default, {name:20s} max |diff| {r['max_abs_diff']:.3g}, "
            f"rows > 0.01: {r['rows_above_0.01']}, rows > 1e-6: {r['rows_above_1e-6']}"
        )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
