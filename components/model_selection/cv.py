"""Plain functions behind ``ModelSelection``: folds, metrics, intervals, the rule, CV.

k-fold cross-validation of the model families of ``components.model`` on the
train split, or on a sample of it of at most ``max_rows`` rows
(``sample_records``), loaded once through the Transform graph into memory:

* ``sample_records``: streams the split and keeps the ``max_rows`` records
  with the smallest seeded hashes (``components.sampling.bottom_k``, shared
  with the Tuner; all of them if the split is smaller), in read order: the
  same data give the same sample whatever its order.

* ``assign_folds``: every row gets a fold in ``0..k-1`` from a seeded digest
  of its serialized bytes, stratified by label; fold sizes (and label counts)
  differ by at most one, and the same rows give the same folds whatever
  their order.
* ``fold_metrics``: AUC, log loss, calibration (mean prediction / mean
  label) and accuracy (threshold 0.5) on a held-out fold.
* ``summarize``: mean, sample standard deviation and two-sided Student t
  confidence interval of a per-fold metric.
* ``select_family``: the selection rule (``RULE``).
* ``cross_validate``: trains each family on k-1 folds and scores the held-out
  fold, for every fold, with the Trainer's own training step.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

METRICS = ("auc", "log_loss", "calibration", "accuracy")
RULE = (
    "Families are ordered simplest first ({families}). The simplest is kept unless a more "
    "complex family beats it on the paired per-fold AUC differences (complex - simple): it "
    "is chosen only if the lower end of the {confidence:.0%} Student t confidence interval "
    "of the mean difference is above min_auc_gain={min_auc_gain:g}. A tie or an "
    "insignificant win keeps the simpler family; a loss never switches."
)
LOG_LOSS_EPS = 1e-7


def assign_folds(
    records: Sequence[bytes], k: int, seed: int, labels: Sequence[int] | None = None
) -> np.ndarray:
    """Fold id (0..k-1) of every row, deterministic and balanced.

    Rows are ordered by (label, sha256(seed, row bytes), position) and dealt
    round robin, so folds are disjoint, cover every row, have sizes that
    differ by at most one and (with ``labels``) the same label mix within
    one row per class. The digest depends on the content and the seed only,
    so re-reading the same data in another order gives each row the same
    fold (identical rows are interchangeable).

    Raises:
      ValueError: ``k < 2`` or more folds than rows.
    """
    n = len(records)
    if k < 2 or k > n:
        raise ValueError(f"need 2 <= k <= rows, got k={k} for {n} rows")
    prefix = f"{seed}:".encode()
    digests = [hashlib.sha256(prefix + bytes(r)).digest() for r in records]
    classes = list(labels) if labels is not None else [0] * n
    order = sorted(range(n), key=lambda i: (classes[i], digests[i], i))
    folds = np.empty(n, dtype=np.int64)
    folds[np.asarray(order, dtype=np.int64)] = np.arange(n) % k
    return folds


def auc(labels: Sequence[float], probabilities: Sequence[float]) -> float:
    """ROC AUC (Mann-Whitney, ties count half); NaN if one class is absent."""
    from scipy.stats import rankdata

    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    positives = int((y == 1).sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def fold_metrics(labels: Sequence[float], probabilities: Sequence[float]) -> dict[str, float]:
    """``METRICS`` of predictions on one held-out fold."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    log_loss = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    mean_label = y.mean()
    return {
        "auc": auc(y, p),
        "log_loss": float(log_loss),
        "calibration": float(p.mean() / mean_label) if mean_label > 0 else float("nan"),
        "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
    }


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std (ddof=1) and the two-sided Student t interval of the mean.

    ``ci = mean +- t_{(1+confidence)/2, n-1} * std / sqrt(n)``; with one value
    the interval is infinite.
    """
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": float("nan"), "ci_low": -math.inf, "ci_high": math.inf}
    std = float(x.std(ddof=1))
    half = float(t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def select_family(
    auc_by_family: dict[str, Sequence[float]],
    families: Sequence[str],
    min_auc_gain: float = 0.0,
    confidence: float = 0.95,
) -> tuple[str, str, list[dict]]:
    """Applies ``RULE`` to per-fold AUCs (same folds for every family).

    Args:
      auc_by_family: family -> AUC on each fold, folds in the same order.
      families: the candidates, simplest first.
      min_auc_gain: how much a more complex family must win by (lower CI
        bound of the mean paired difference).
      confidence: of the t interval on the paired differences.

    Returns:
      (chosen family, one-line reason, the paired comparisons made: dicts
      with ``candidate``, ``against``, ``differences`` and their
      ``summarize`` plus ``significant``).
    """
    chosen = families[0]
    reasons, comparisons = [], []
    for candidate in families[1:]:
        diffs = [
            a - b for a, b in zip(auc_by_family[candidate], auc_by_family[chosen], strict=True)
        ]
        stats = summarize(diffs, confidence)
        significant = stats["ci_low"] > min_auc_gain
        comparisons.append(
            {
                "candidate": candidate,
                "against": chosen,
                "differences": diffs,
                **stats,
                "significant": bool(significant),
            }
        )
        figures = (
            f"{candidate} - {chosen} AUC over {len(diffs)} paired folds: mean "
            f"{stats['mean']:+.4f}, {confidence:.0%} CI [{stats['ci_low']:+.4f}, "
            f"{stats['ci_high']:+.4f}]"
        )
        if significant:
            reasons.append(
                f"{figures}; lower bound > {min_auc_gain:g}: {candidate} is significantly better"
            )
            chosen = candidate
        elif stats["mean"] > min_auc_gain:
            reasons.append(
                f"{figures}; lower bound <= {min_auc_gain:g}: the win is not significant, "
                f"the simpler {chosen} is kept"
            )
        else:
            reasons.append(f"{figures}: no gain, the simpler {chosen} is kept")
    return chosen, "; ".join(reasons), comparisons


def rule_text(families: Sequence[str], min_auc_gain: float, confidence: float) -> str:
    """``RULE`` with its settings filled in."""
    return RULE.format(
        families=", ".join(families), confidence=confidence, min_auc_gain=min_auc_gain
    )


READ_BATCH = 1 << 14  # records per Transform call


def sample_records(files: Sequence[str], max_rows: int, seed: int) -> tuple[list[bytes], int]:
    """(at most ``max_rows`` canonical records of ``files``, how many records they hold).

    The sample is ``components.sampling.bottom_k``'s (one streaming pass, the
    ``max_rows`` smallest keyed hashes of the stored bytes; memory holds the
    sample, not the split), re-serialized by ``canonical_records`` for the
    fold digests, in read order. With ``max_rows`` at least the record
    count, every record is kept, in read order.

    Raises:
      ValueError: ``max_rows`` is not positive.
    """
    from components import sampling

    records, counts = sampling.bottom_k(files, max_rows, seed)
    return canonical_records(records), sum(counts)


def load_transformed(
    files: Sequence[str], tf_transform_output, max_rows: int = 10**12, seed: int = 0
) -> tuple[list, dict, np.ndarray, int]:
    """``sample_records`` of ``files`` through the Transform graph, ``READ_BATCH`` at a time.

    Returns:
      (the sampled canonical records (``canonical_records``), their
      transformed features as [n, 1] arrays keyed by transformed name, their
      labels as a float [n] array, the record count of ``files``).
    """
    from components import features

    records, total = sample_records(files, max_rows, seed)
    raw_spec = tf_transform_output.raw_feature_spec()
    transform = tf_transform_output.transform_features_layer()
    keys = [features.transformed_name(k) for k in features.model_feature_keys()]
    parts: dict[str, list] = {k: [] for k in [*keys, features.LABEL_KEY]}
    for start in range(0, len(records), READ_BATCH):
        import tensorflow as tf

        chunk = tf.constant(records[start : start + READ_BATCH])
        transformed = transform(tf.io.parse_example(chunk, raw_spec))
        for key in parts:
            parts[key].append(np.asarray(transformed[key]).reshape(-1))
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    labels = joined.pop(features.LABEL_KEY).astype(np.float32)
    x = {k: joined[k].reshape(-1, 1) for k in keys}
    return records, x, labels, total


def canonical_records(records: Sequence[bytes]) -> list[bytes]:
    """Each ``tf.Example`` re-serialized deterministically (features sorted by name).

    The feature map's wire order is not part of the data: two ingestions of
    the same CSV can write the same example with its features in another
    order, which would give it another digest and another fold.
    """
    from tensorflow.core.example import example_pb2

    parse = example_pb2.Example.FromString
    return [parse(bytes(r)).SerializeToString(deterministic=True) for r in records]


def _reset_optimizer(optimizer) -> None:
    """Zeroes the optimizer's slots and step counter: a fresh Adam, same traced loop."""
    import tensorflow as tf

    variables = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
    for variable in variables:
        if "learning_rate" not in variable.name:
            variable.assign(tf.zeros_like(variable))


def make_in_memory_fit(model, x: dict, labels):
    """``fit(batches)``: one ``gradient_step`` per row of ``batches`` ([steps, batch] row ids).

    The whole loop is one graph (``tf.while_loop`` in a ``tf.function``
    without autograph) over the in-memory tensors ``x`` and ``labels``: no
    input pipeline and no Python per step, and it is traced once per model,
    whatever the fold.
    """
    import tensorflow as tf

    from components import model as taxi_model

    features = {key: tf.constant(value) for key, value in x.items()}
    targets = tf.constant(np.asarray(labels, dtype=np.float32).reshape(-1, 1))
    # Optimizer slots must exist before the loop: variables cannot be created inside it.
    model.optimizer.build(model.trainable_variables)

    @tf.function(autograph=False)
    def fit(batches):
        def body(i, loss):
            rows = batches[i]
            batch = {key: tf.gather(value, rows) for key, value in features.items()}
            return i + 1, taxi_model.gradient_step(model, batch, tf.gather(targets, rows))

        _, loss = tf.while_loop(
            lambda i, _: i < tf.shape(batches)[0],
            body,
            (tf.constant(0), tf.constant(0.0)),
            parallel_iterations=1,  # step after step, as the optimizer state requires
        )
        return loss

    return fit


def batch_rows(rows: np.ndarray, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """[steps, batch_size] row ids: seeded shuffled epochs over ``rows``, back to back."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    epochs = needed // len(rows) + 1
    return np.concatenate([rng.permutation(rows) for _ in range(epochs)])[:needed].reshape(
        steps, batch_size
    )


def cross_validate(
    x: dict[str, np.ndarray],
    labels: np.ndarray,
    folds: np.ndarray,
    candidates: dict[str, dict],
    steps: int,
    seed: int,
) -> dict[str, list[dict]]:
    """Per-fold ``fold_metrics`` of every candidate family.

    For each family one model is built and its training loop
    (``make_in_memory_fit``) traced once; for each fold its initial weights
    and a fresh optimizer state are restored, it trains ``steps`` batches
    (seeded shuffled epochs) of the other folds' rows and predicts the
    held-out fold.

    Args:
      x: transformed features, [n, 1] each (``load_transformed``).
      labels: [n] 0/1.
      folds: [n] fold ids (``assign_folds``).
      candidates: family -> complete hyperparameters (``model_family`` set).
      steps: training steps per fold.
      seed: weight initialisation and shuffling seed.

    Returns:
      family -> one metrics dict per fold (plus ``fold`` and ``rows``).
    """
    import tensorflow as tf

    from components import model as taxi_model

    k = int(folds.max()) + 1
    results: dict[str, list[dict]] = {}
    for family, hparams in candidates.items():
        tf.keras.utils.set_random_seed(seed)
        model = taxi_model.build_model(hparams)
        fit = make_in_memory_fit(model, x, labels)
        initial = model.get_weights()
        batch_size = int(hparams.get("batch_size", 128))
        per_fold = []
        for fold in range(k):
            held = folds == fold
            model.set_weights(initial)
            _reset_optimizer(model.optimizer)
            if steps > 0:
                fit(tf.constant(batch_rows(np.flatnonzero(~held), steps, batch_size, seed + fold)))
            held_x = {key: tf.constant(value[held]) for key, value in x.items()}
            probabilities = np.asarray(model(held_x, training=False)).reshape(-1)
            metrics = fold_metrics(labels[held], probabilities)
            per_fold.append({"fold": fold, "rows": int(held.sum()), **metrics})
        results[family] = per_fold
    return results
