"""The Evaluators' sample error: AUC and calibration of bottom-k samples vs every row.

Scores every row of a split (all the given ``Examples`` artifacts together)
once with the candidate and each baseline model (the ``serving_examples``
signature for the prediction, ``transform_features`` for the label, as the
pipeline's eval config does), then, for each sample size and seed, picks the
rows the Evaluator's executor would keep (``components.evaluator.sampling``:
the smallest keyed hashes, ties by read order) and prints how far the
sample's AUC, calibration (sum of predictions / sum of labels) and AUC drop
(candidate minus baseline, on the same rows) are from those on every row:
standard deviation and largest absolute error over the seeds. AUC here is
exact (scikit-learn); TFMA's 1,000-threshold AUC agrees to 1e-6 on these
models. Usage::

    python bench/bench_eval_sample.py --examples RUN/pipeline/CsvExampleGen/examples/{1,2,4,7} \\
        --model RUN/pipeline/Trainer/model/35 --baseline OTHER_RUN/.../model/35 \\
        --split eval --rows 30000,60000 --seeds 0-19,42
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np

from components import features
from components.evaluator import executor, sampling

BATCH = 8192


def score(model_dir: str, records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of ``records`` by the model in ``model_dir``'s serving export."""
    import tensorflow as tf

    model = tf.saved_model.load(os.path.join(model_dir, "Format-Serving"))
    labels, predictions = [], []
    for start in range(0, len(records), BATCH):
        batch = tf.constant(records[start : start + BATCH])
        out = model.signatures["serving_examples"](examples=batch)["probabilities"]
        predictions.append(out.numpy().reshape(-1))
        label = model.signatures["transform_features"](examples=batch)[features.LABEL_KEY]
        labels.append(label.numpy().reshape(-1))
    return np.concatenate(labels).astype(np.float64), np.concatenate(predictions).astype(np.float64)


def metrics(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float]:
    """(AUC, calibration) of the predictions."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, predictions)), float(predictions.sum() / labels.sum())


def sample_rows(records: list[bytes], rows: int, seed: int) -> np.ndarray:
    """The indices (in read order) of the records a bottom-``rows`` sample keeps."""
    hashes = np.fromiter(
        (sampling.record_hash(r, seed) for r in records), dtype=np.uint64, count=len(records)
    )
    return np.sort(np.argsort(hashes, kind="stable")[:rows])


def seed_list(text: str) -> list[int]:
    """The seeds of ``text``: comma-separated numbers and inclusive ranges ("0-19,42")."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", nargs="+", required=True, help="Examples artifact dirs")
    parser.add_argument("--model", required=True, help="the candidate's Model artifact dir")
    parser.add_argument("--baseline", nargs="*", default=[], help="baselines' Model artifact dirs")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--rows", default="30000,60000", help="sample sizes, comma-separated")
    parser.add_argument("--seeds", type=seed_list, default="0-19,42", help="e.g. 0-19,42")
    args = parser.parse_args()

    files: list[str] = []
    for uri in args.examples:
        files += sorted(glob.glob(os.path.join(uri, f"Split-{args.split}", "*")))
    if not files:
        parser.error(f"no files of split {args.split!r} under --examples")
    records = list(executor.read_records(files)())
    labels, candidate = score(args.model, records)
    baselines = [score(path, records)[1] for path in args.baseline]
    auc, calibration = metrics(labels, candidate)
    drops = [auc - metrics(labels, b)[0] for b in baselines]
    print(
        f"{args.split}: {len(records)} rows, every row: AUC {auc:.4f} calibration {calibration:.4f}"
    )
    for rows in (int(r) for r in args.rows.split(",")):
        errors: dict[str, list[float]] = {"AUC": [], "calibration": [], "AUC drop": []}
        for seed in args.seeds:
            kept = sample_rows(records, rows, seed)
            sample_auc, sample_calibration = metrics(labels[kept], candidate[kept])
            errors["AUC"].append(sample_auc - auc)
            errors["calibration"].append(sample_calibration - calibration)
            for baseline, drop in zip(baselines, drops, strict=True):
                sample_drop = sample_auc - metrics(labels[kept], baseline[kept])[0]
                errors["AUC drop"].append(sample_drop - drop)
        parts = [
            f"{name} err sd {np.std(e, ddof=1):.4f} max {np.max(np.abs(e)):.4f}"
            for name, e in errors.items()
            if len(e) > 1
        ]
        print(f"  {rows:>7,} rows, {len(args.seeds)} seeds: " + "; ".join(parts))


if __name__ == "__main__":
    main()
