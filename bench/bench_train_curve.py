"""Training curve: the Trainer's model scored every N steps on eval, test and the behavioral cases.

Replays the Trainer of a finished cold ``taxi-pipeline`` run (its Transform
graph, its ModelSelection or Tuner hyperparameters, the train split of every
ingested span) with the Trainer's own input pipeline and training loop, and
every ``--every`` steps prints the AUC and log loss on the first
``--eval-rows`` rows of the eval split and ``--test-rows`` of the test split
(drawn from all spans) and the spreads of the behavioral invariance cases.
It is how the early-stopping settings in ``pipeline/configs.py`` were chosen
(README, "Scale"). It assumes one ingestion per span (a cold run's output
dir); the replay's file order is by artifact id, so its model is not
bit-identical to the Trainer's.

Usage::

    python bench/bench_train_curve.py RUN_DIR --steps 3000 --every 200
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import time

import numpy as np


def _latest(pattern: str) -> str:
    """The artifact directory under ``pattern`` with the highest id."""
    found = sorted(glob.glob(pattern), key=lambda p: int(os.path.basename(p)))
    if not found:
        raise SystemExit(f"no artifact matches {pattern}")
    return found[-1]


def _rows(model_module, patterns, transform_output, rows):
    """The first ``rows`` transformed rows drawn from all ``patterns`` (x dict, labels)."""
    import tensorflow as tf

    file_rows = model_module.file_records(patterns)
    dataset = model_module._input_fn(  # noqa: SLF001 - the Trainer's own input pipeline
        patterns, None, transform_output, 1024, one_pass=True, file_rows=file_rows
    ).take(math.ceil(rows / 1024))
    parts = list(dataset)
    x = {k: tf.concat([p[0][k] for p in parts], 0)[:rows] for k in parts[0][0]}
    return x, np.concatenate([np.asarray(p[1]).reshape(-1) for p in parts])[:rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="--output-dir of a finished cold taxi-pipeline run")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--eval-rows", type=int, default=20_000)
    parser.add_argument("--test-rows", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import tensorflow as tf
    import tensorflow_transform as tft

    from components import hyperparameters
    from components import model as taxi_model
    from components.behavioral import checks
    from components.model_selection import cv
    from serving.client import build_instance, instance_columns

    root = os.path.join(args.run_dir, "pipeline")
    transform_output = tft.TFTransformOutput(_latest(f"{root}/Transform/transform_graph/*"))
    chosen = glob.glob(f"{root}/ModelSelection/best_hyperparameters/*") or glob.glob(
        f"{root}/Tuner/best_hyperparameters/*"
    )
    values = (
        hyperparameters.read_values(_latest(os.path.dirname(chosen[0]) + "/*")) if chosen else {}
    )
    family = values.pop("model_family", taxi_model.WIDE_DEEP)
    hp = taxi_model.family_hparams(family, values)
    examples = sorted(
        glob.glob(f"{root}/CsvExampleGen/examples/*"), key=lambda p: int(os.path.basename(p))
    )

    def split(name):
        return [f"{e}/Split-{name}/*" for e in examples]

    file_rows = taxi_model.file_records(split("train"))
    print(f"{sum(file_rows)} train rows in {len(examples)} spans; {hp}", flush=True)
    tf.keras.utils.set_random_seed(args.seed)
    train = taxi_model._input_fn(  # noqa: SLF001
        split("train"),
        None,
        transform_output,
        hp["batch_size"],
        args.seed,
        cache=sum(file_rows) <= taxi_model.CACHE_MAX_ROWS,
        file_rows=file_rows,
    )
    scored = {
        "eval": _rows(taxi_model, split("eval"), transform_output, args.eval_rows),
        "test": _rows(taxi_model, split("test"), transform_output, args.test_rows),
    }
    model = taxi_model.build_model(hp)
    specs = taxi_model.raw_serving_specs(transform_output)
    dtypes = {
        k: {tf.float64: "DT_DOUBLE", tf.float32: "DT_FLOAT"}.get(s.dtype, "DT_STRING")
        for k, s in specs.items()
    }
    transform = transform_output.transform_features_layer()

    def predict(rows):
        columns = instance_columns([build_instance(r, dtypes) for r in rows], dtypes)
        raw = taxi_model._to_raw_features(  # noqa: SLF001 - serving_default's own conversion
            {k: tf.constant(columns[k], specs[k].dtype) for k in specs}, transform_output
        )
        transformed = transform(raw)
        transformed.pop(taxi_model.features.LABEL_KEY, None)
        return model(transformed, training=False).numpy().reshape(-1).tolist()

    loop, iterator, done = taxi_model._training_loop(model), iter(train), 0  # noqa: SLF001
    while done < args.steps:
        step = min(args.every, args.steps - done)
        started = time.monotonic()
        loop(iterator, tf.constant(step))
        done += step
        line = [f"step {done:6d}"]
        for name, (x, y) in scored.items():
            p = model.predict(x, batch_size=4096, verbose=0).reshape(-1)
            metrics = cv.fold_metrics(y, p)
            line.append(f"{name} auc {metrics['auc']:.4f} log loss {metrics['log_loss']:.4f}")
        report = checks.run_cases(predict, checks.default_cases())
        spreads = [c["got"].split(" (")[0] for c in report["cases"] if c["kind"] == "invariance"]
        line.append(
            f"behavioral {'passed' if report['passed'] else 'FAILED'} ({', '.join(spreads)})"
        )
        print(" | ".join(line) + f" [{time.monotonic() - started:.0f}s]", flush=True)


if __name__ == "__main__":
    main()
