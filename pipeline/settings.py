"""The settings a pipeline is built from: frozen, validated on construction.

``create_pipeline(settings, span=..., ingest_only=...)`` takes one
``PipelineSettings``: where things are (data, schema, pipeline root, serving
dir, ML Metadata), how Beam runs, and the ``TrainingSettings`` (budgets,
seed, blessing thresholds, tuning and model selection). Runners build it from
flags (``pipeline.flags``); tests and notebooks build it directly. A bad
value raises ``SettingsError`` naming the field, so a mistake is caught when
the settings are made, not by a component half-way through a run.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping

from pipeline import configs

# Nodes that run our code (by dotted path, or as a custom executor); their
# code fingerprints are part of their exec properties, hence of TFX's cache
# key (see pipeline/code_digest.py).
FINGERPRINTED_NODES = (
    "transform",
    "trainer",
    "tuner",
    "selection",
    "example_gen",
    "statistics_gen",
    "evaluator",
    "anomalies_gate",
    "behavioral",
    "infra_canary",
    "pusher",
)


class SettingsError(ValueError):
    """A setting out of range; ``field`` names it."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _at_least(field: str, value, low) -> None:
    if not (isinstance(value, int | float) and value >= low):
        raise SettingsError(field, f"must be >= {low}, got {value!r}")


def _epochs(field: str, value) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise SettingsError(field, f"must be a number >= 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """What is trained, for how long, and how it is gated.

    Attributes:
      train_steps / eval_steps: Trainer steps (``train_steps`` at least).
      train_epochs: the Trainer also trains this many passes over the train
        split (``components.model.budget_steps``); 0 = ``train_steps`` only.
      train_patience: early stopping of a budget above ``train_steps``:
        checks of the eval loss without improvement before the Trainer stops
        (``components.model.train_early_stopping``); 0 = train the whole budget.
      seed: training seed (Trainer, Tuner, model selection).
      min_auc / max_auc_drop: blessing thresholds of the Evaluator.
      canary: serve the candidate and probe it before pushing (InfraCanary).
      tune_trials: KerasTuner RandomSearch trials (0 = no Tuner node).
      tune_steps / tune_epochs: train steps per trial: at least
        ``tune_steps``, and ``tune_epochs`` passes over the rows it fits on.
      tune_max_rows: trials fit and score on a seeded sample of at most this
        many train rows (0 = every row).
      cv_folds: k of the ModelSelection node's k-fold CV (0 = no selection:
        wide & deep).
      cv_steps / cv_epochs: train steps per fold and family (at least
        ``cv_steps``, and ``cv_epochs`` passes over the training folds).
      cv_max_rows: cross-validate on a seeded sample of at most this many rows.
      cv_min_auc_gain / cv_confidence: the selection rule
        (``components.model_selection.cv.RULE``).
      eval_max_rows: the Evaluator and TestEvaluator score a seeded sample of
        at most this many rows of their split (0 = every row).
    """

    train_steps: int = configs.TRAIN_STEPS
    eval_steps: int = configs.EVAL_STEPS
    train_epochs: float = configs.TRAIN_EPOCHS
    train_patience: int = configs.TRAIN_PATIENCE
    seed: int = configs.SEED
    min_auc: float = configs.MIN_AUC
    max_auc_drop: float = configs.MAX_AUC_DROP
    canary: bool = True
    tune_trials: int = configs.TUNE_TRIALS
    tune_steps: int = configs.TUNE_STEPS
    tune_epochs: float = configs.TUNE_EPOCHS
    tune_max_rows: int = configs.TUNE_MAX_ROWS
    cv_folds: int = configs.CV_FOLDS
    cv_steps: int = configs.CV_STEPS
    cv_epochs: float = configs.CV_EPOCHS
    cv_max_rows: int = configs.CV_MAX_ROWS
    cv_min_auc_gain: float = configs.CV_MIN_AUC_GAIN
    cv_confidence: float = configs.CV_CONFIDENCE
    eval_max_rows: int = configs.EVAL_MAX_ROWS

    def __post_init__(self):
        for field in ("train_steps", "eval_steps", "tune_steps", "cv_steps", "cv_max_rows"):
            _at_least(field, getattr(self, field), 1)
        for field in ("train_epochs", "tune_epochs", "cv_epochs"):
            _epochs(field, getattr(self, field))
        _at_least("tune_trials", self.tune_trials, 0)
        _at_least("train_patience", self.train_patience, 0)
        _at_least("tune_max_rows", self.tune_max_rows, 0)
        _at_least("eval_max_rows", self.eval_max_rows, 0)
        if self.cv_folds != 0:
            _at_least("cv_folds", self.cv_folds, 2)  # one fold has nothing to validate on
        if not 0 <= self.min_auc <= 1:
            raise SettingsError("min_auc", f"must be in [0, 1], got {self.min_auc!r}")
        _at_least("max_auc_drop", self.max_auc_drop, 0)
        if not 0 < self.cv_confidence < 1:
            raise SettingsError("cv_confidence", f"must be in (0, 1), got {self.cv_confidence!r}")


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything ``create_pipeline`` needs besides the span to ingest.

    Attributes:
      pipeline_name: MLMD pipeline context name; runs that share it share
        lineage and caching.
      pipeline_root: root for component outputs.
      data_root: folder holding ``span-<N>/*.csv`` spans.
      schema_path: folder holding the curated ``schema.pbtxt``.
      serving_dir: models are pushed to ``serving_dir/<version>``.
      metadata_path: ML Metadata: an SQLite file or a mysql:// URL
        (lineage/metadata_store.py); empty when ``portable``.
      num_spans: train on the newest ``num_spans`` ingested spans; 0 = all.
      code_fingerprints: digests of the code of the nodes in
        ``FINGERPRINTED_NODES`` (pipeline/code_digest.py), part of their exec
        properties so that a code change invalidates their cache. Stored
        read-only.
      beam_pipeline_args: Beam flags for Beam-powered components.
      enable_cache: reuse results of executions whose inputs are unchanged.
      analyzer_cache: keep Transform's per-span analyzer cache (pays off for
        large spans; doubles Transform's time on the taxi sample).
      portable: the variant for orchestrators that only know TFX's stock
        resolver strategies (Kubeflow Pipelines v2 / Vertex AI): trains on
        the span this run ingested (``num_spans`` is ignored), takes the
        newest blessed model as the baseline and has no metadata connection.
      training: the ``TrainingSettings``.
    """

    pipeline_name: str
    pipeline_root: str
    data_root: str
    schema_path: str
    serving_dir: str
    metadata_path: str = ""
    num_spans: int = configs.NUM_SPANS
    code_fingerprints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    beam_pipeline_args: tuple[str, ...] = tuple(configs.BEAM_ARGS_IN_MEMORY)
    enable_cache: bool = True
    analyzer_cache: bool = False
    portable: bool = False
    training: TrainingSettings = TrainingSettings()

    def __post_init__(self):
        for field in ("pipeline_name", "pipeline_root", "data_root", "schema_path", "serving_dir"):
            if not getattr(self, field):
                raise SettingsError(field, "must not be empty")
        if not self.portable and not self.metadata_path:
            raise SettingsError("metadata_path", "must not be empty (unless portable)")
        _at_least("num_spans", self.num_spans, 0)
        unknown = set(self.code_fingerprints) - set(FINGERPRINTED_NODES)
        if unknown:
            raise SettingsError(
                "code_fingerprints",
                f"unknown node(s) {sorted(unknown)}; expected some of {list(FINGERPRINTED_NODES)}",
            )
        if not isinstance(self.training, TrainingSettings):
            raise SettingsError("training", f"must be a TrainingSettings, got {self.training!r}")
        # Frozen all the way down: a read-only copy of the mapping, a tuple of args.
        object.__setattr__(
            self, "code_fingerprints", types.MappingProxyType(dict(self.code_fingerprints))
        )
        if isinstance(self.beam_pipeline_args, str):
            raise SettingsError("beam_pipeline_args", "must be a sequence of flags, not a str")
        object.__setattr__(self, "beam_pipeline_args", tuple(self.beam_pipeline_args))

    def replace(self, **changes) -> PipelineSettings:
        """A copy with ``changes``; names of ``TrainingSettings`` fields change ``training``."""
        training_fields = {f.name for f in dataclasses.fields(TrainingSettings)}
        training = {k: changes.pop(k) for k in list(changes) if k in training_fields}
        if training:
            changes["training"] = dataclasses.replace(
                changes.get("training", self.training), **training
            )
        return dataclasses.replace(self, **changes)
