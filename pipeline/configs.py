"""Inert defaults for the taxi pipeline: names, patterns, thresholds.

Nothing here reads the environment or touches the filesystem; runners turn
flags (``pipeline.flags``) into the ``pipeline.settings.PipelineSettings`` that
``pipeline.pipeline.create_pipeline`` builds the DAG from.
"""

from core import constants

PIPELINE_NAME = "taxi"
MODEL_NAME = constants.MODEL_NAME

# ExampleGen reads one span per execution: data_root/span-<SPAN>/*.csv
SPAN_PATTERN = "span-{SPAN}/*.csv"
# Spans the model trains on: the newest NUM_SPANS ingested spans (0 = all).
NUM_SPANS = 0

# Deterministic hash split of every span (buckets out of 10).
SPLIT_BUCKETS = {"train": 8, "eval": 1, "test": 1}

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.model.run_fn"
TUNER_FN = "components.tuning.tuner_fn"

# Tuner budget: a small default search (0 = no Tuner node). Trials fit with the
# Trainer's own traced loop (components/tuning.py), about 2-3 s each on the
# bundled data; fitted and scored on the train split only.
TUNE_TRIALS = 2
TUNE_STEPS = 200  # train steps per trial

# Model selection (ModelSelection): k-fold CV on the train split of the
# logistic baseline vs wide & deep; 0 folds = no selection (wide & deep).
CV_FOLDS = 3
CV_STEPS = 150  # train steps per fold and family
# Wide & deep replaces the logistic baseline only if the lower bound of the
# CV_CONFIDENCE t interval of the paired per-fold AUC gains exceeds this.
CV_MIN_AUC_GAIN = 0.0
CV_CONFIDENCE = 0.95

TRAIN_STEPS = 800
EVAL_STEPS = 50

# Budgets that grow with the data: the Trainer, each Tuner trial and each CV
# fold train max(<steps above>, ceil(<epochs> * rows / batch size)) steps,
# rows counted when they run (components.model.budget_steps). On the bundled
# data one pass is fewer steps than the minimums above, so they apply; on
# 100x the Trainer's budget is every train row once, cut short by early
# stopping (below) when the eval loss stops falling.
TRAIN_EPOCHS = 1.0
# Early stopping of the Trainer when its budget exceeds TRAIN_STEPS: from
# TRAIN_STEPS on, every TRAIN_CHECK_EVERY steps it scores the log loss of the
# first EVAL_STEPS batches of the eval split, stops after TRAIN_PATIENCE
# checks without a new lowest loss and keeps the weights of the lowest
# (components.model.train_early_stopping). The bundled data trains
# TRAIN_STEPS steps: no check, the same model as without it.
TRAIN_CHECK_EVERY = 200
TRAIN_PATIENCE = 3
TUNE_EPOCHS = 0.25  # per trial: a quarter of the rows it fits on
CV_EPOCHS = 1.0  # per fold, over the CV sample's training folds
# ModelSelection cross-validates on at most this many train rows (a seeded,
# order-independent sample; the whole split on the bundled data).
CV_MAX_ROWS = 60_000
# Tuner trials fit and score on a seeded sample of at most this many train
# rows (ModelSelection's sampler; the whole split on the bundled data); 0
# tunes on every row.
TUNE_MAX_ROWS = 60_000
# Evaluator and TestEvaluator score a seeded sample of at most this many rows
# of their split (all spans together); 0 scores every row. The estimate's
# error at this size is measured in README.md "Scale" (Evaluator).
EVAL_MAX_ROWS = 30_000
SEED = 42

# Blessing thresholds (Evaluator). Accuracy is not gated: 77.5% of trips are
# not big tippers, so a constant model scores 0.775.
MIN_AUC = 0.75
MAX_AUC_DROP = 0.01  # change threshold vs the latest blessed model
CALIBRATION_BOUNDS = (0.85, 1.15)  # mean prediction / mean label
AUC_THRESHOLDS = 1000  # TFMA AUC resolution

# Components run at the same time where the DAG allows (Evaluator, TestEvaluator,
# behavioral checks and the serving canary all only need the trained model).
PARALLEL_NODES = 4

# Fastest sound local Beam mode: one in-process worker, no pickling hops.
BEAM_ARGS_IN_MEMORY = [
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
    "--pickle_library=cloudpickle",
    "--no_pipeline_type_check",
]
BEAM_ARGS_MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
