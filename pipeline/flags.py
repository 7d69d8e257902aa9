"""Command-line flags of ``taxi-pipeline`` and ``taxi-kubeflow-compile``.

Both commands share the training flags (``add_training_flags``), which
become a ``pipeline.settings.TrainingSettings`` (``training_settings``). A
value the settings reject is a usage error (exit code 2) naming the flag.
"""

from __future__ import annotations

import argparse

from core import constants, resources
from pipeline import configs
from pipeline.settings import SettingsError, TrainingSettings


def _epochs(text: str) -> float:
    """An argparse type: a number of passes, >= 0."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _rows(text: str) -> int:
    """An argparse type: a row limit, >= 0 (0 = no limit)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = every row), got {text!r}")
    return value


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """The flags for what is trained and how it is gated (both commands)."""
    parser.add_argument("--train-steps", type=int, default=configs.TRAIN_STEPS)
    parser.add_argument("--eval-steps", type=int, default=configs.EVAL_STEPS)
    parser.add_argument(
        "--train-epochs",
        type=_epochs,
        default=configs.TRAIN_EPOCHS,
        help="the Trainer trains at least --train-steps steps and this many passes over the "
        "train split (0 = --train-steps only)",
    )
    parser.add_argument(
        "--train-patience",
        type=int,
        default=configs.TRAIN_PATIENCE,
        help=f"above --train-steps, stop after this many checks (every "
        f"{configs.TRAIN_CHECK_EVERY} steps) without a lower eval loss and keep the best "
        "weights (0 = train the whole budget)",
    )
    parser.add_argument("--seed", type=int, default=configs.SEED)
    parser.add_argument("--min-auc", type=float, default=configs.MIN_AUC)
    parser.add_argument("--max-auc-drop", type=float, default=configs.MAX_AUC_DROP)
    parser.add_argument(
        "--no-canary",
        action="store_true",
        help="push without the InfraCanary serving check (not recommended)",
    )
    parser.add_argument(
        "--tune-trials",
        type=int,
        default=configs.TUNE_TRIALS,
        help="KerasTuner RandomSearch trials before training (0 = no Tuner node)",
    )
    parser.add_argument(
        "--tune-steps",
        type=int,
        default=configs.TUNE_STEPS,
        help="train steps per tuning trial (at least)",
    )
    parser.add_argument(
        "--tune-epochs",
        type=_epochs,
        default=configs.TUNE_EPOCHS,
        help="passes over the rows a tuning trial fits on, if more than --tune-steps",
    )
    parser.add_argument(
        "--tune-max-rows",
        type=_rows,
        default=configs.TUNE_MAX_ROWS,
        help="tuning trials fit and score on a seeded sample of at most this many "
        "train rows (0 = every row)",
    )
    parser.add_argument(
        "--cv-folds",
        type=int,
        default=configs.CV_FOLDS,
        help="k-fold CV on the train split choosing logistic vs wide & deep "
        "(0 = no selection: wide & deep)",
    )
    parser.add_argument(
        "--cv-steps",
        type=int,
        default=configs.CV_STEPS,
        help="train steps per fold and model family (at least)",
    )
    parser.add_argument(
        "--cv-epochs",
        type=_epochs,
        default=configs.CV_EPOCHS,
        help="passes over a fold's training rows, if more than --cv-steps",
    )
    parser.add_argument(
        "--cv-max-rows",
        type=_positive_int,
        default=configs.CV_MAX_ROWS,
        help="cross-validate on a seeded sample of at most this many train rows",
    )
    parser.add_argument(
        "--eval-max-rows",
        type=_rows,
        default=configs.EVAL_MAX_ROWS,
        help="Evaluator and TestEvaluator score a seeded sample of at most this many "
        "rows of their split (0 = every row)",
    )
    parser.add_argument(
        "--cv-min-auc-gain",
        type=float,
        default=configs.CV_MIN_AUC_GAIN,
        help="wide & deep must beat logistic by more than this (lower 95%% CI bound "
        "of the paired per-fold AUC gain)",
    )


def training_settings(args: argparse.Namespace) -> TrainingSettings:
    """The ``TrainingSettings`` of the flags of ``add_training_flags``.

    Raises:
      SettingsError: a value out of range (its ``field`` names the setting).
    """
    return TrainingSettings(
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        train_epochs=args.train_epochs,
        train_patience=args.train_patience,
        seed=args.seed,
        min_auc=args.min_auc,
        max_auc_drop=args.max_auc_drop,
        canary=not args.no_canary,
        tune_trials=args.tune_trials,
        tune_steps=args.tune_steps,
        tune_epochs=args.tune_epochs,
        tune_max_rows=args.tune_max_rows,
        cv_folds=args.cv_folds,
        cv_steps=args.cv_steps,
        cv_epochs=args.cv_epochs,
        cv_max_rows=args.cv_max_rows,
        cv_min_auc_gain=args.cv_min_auc_gain,
        eval_max_rows=args.eval_max_rows,
    )


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser whose help is ``doc``: its first paragraph, then the rest as the epilog."""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _check_training(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits with a usage error naming the flag if the training settings are invalid."""
    try:
        training_settings(args)
    except SettingsError as e:
        parser.error(f"argument --{e.field.replace('_', '-')}: {e.reason}")


def parse_local_args(argv: list[str] | None, doc: str) -> argparse.Namespace:
    """The flags of ``taxi-pipeline`` (``doc`` is its help text)."""
    parser = _parser("taxi-pipeline", doc)
    parser.add_argument(
        "--output-dir",
        default=resources.default_run_dir(),
        help="pipeline root, MLMD and serving dir live here (default: $TAXI_RUN_DIR, "
        "else ./tfx_runs)",
    )
    parser.add_argument(
        "--metadata",
        help="ML Metadata: SQLite file or mysql://USER:PASSWORD@HOST:PORT/DB "
        "(default: $TAXI_METADATA, else <output-dir>/metadata.sqlite)",
    )
    parser.add_argument(
        "--data-dir", default=resources.data_root(), help="folder of span-<N>/*.csv"
    )
    parser.add_argument(
        "--schema-dir",
        default=resources.schema_dir(),
        help="folder with the curated schema.pbtxt",
    )
    parser.add_argument(
        "--serving-dir",
        help="base dir of pushed versions (default: <output-dir>/serving/<model-name>)",
    )
    parser.add_argument("--model-name", default=constants.MODEL_NAME)
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    parser.add_argument(
        "--num-spans",
        type=int,
        default=configs.NUM_SPANS,
        help="train on the newest N spans (0 = all)",
    )
    parser.add_argument(
        "--beam-mode",
        choices=["in_memory", "multi_processing"],
        default="in_memory",
        help="in_memory (default, fastest here) or multi_processing (one worker per core)",
    )
    parser.add_argument(
        "--beam-arg", action="append", default=[], help="extra Beam pipeline arg (repeatable)"
    )
    parser.add_argument(
        "--analyzer-cache",
        action="store_true",
        help="keep Transform's per-span analyzer cache (pays off for large spans)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=configs.PARALLEL_NODES,
        help="components that may run at the same time when the DAG allows it (1 = one by one)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes for Beam components (ExampleGen, StatisticsGen, Transform, "
        "Evaluator); default: one per core, at most --parallel; 0 = run them in this process",
    )
    add_training_flags(parser)
    parser.add_argument("--no-cache", action="store_true", help="re-execute every component")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run through TFX even if nothing changed since the last successful run",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show TFX/Beam logs")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if args.processes is not None and args.processes < 0:
        parser.error(f"--processes must be >= 0, got {args.processes}")
    if args.num_spans < 0:
        parser.error(f"--num-spans must be >= 0, got {args.num_spans}")
    _check_training(parser, args)
    return args


def parse_kubeflow_args(
    argv: list[str] | None, doc: str, image_project_dir: str
) -> argparse.Namespace:
    """The flags of ``taxi-kubeflow-compile`` (``doc`` is its help text).

    ``image_project_dir`` is where the image has the project (named in the
    help of ``--beam-arg``).
    """
    parser = _parser("taxi-kubeflow-compile", doc)
    parser.add_argument("--image", required=True, help="container image every step runs in")
    parser.add_argument("--pipeline-root", required=True, help="root of the steps' outputs")
    parser.add_argument("--data-root", required=True, help="folder of span-<N>/*.csv")
    parser.add_argument("--schema-dir", required=True, help="folder with the curated schema.pbtxt")
    parser.add_argument("--serving-dir", required=True, help="base dir of pushed versions")
    parser.add_argument("--output", default="taxi_pipeline.json", help="pipeline spec to write")
    parser.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    add_training_flags(parser)
    parser.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        help="Beam flag for the Beam steps (repeatable); default: the in-memory "
        f"DirectRunner inside the step, code from {image_project_dir}/setup.py",
    )
    args = parser.parse_args(argv)
    _check_training(parser, args)
    return args
