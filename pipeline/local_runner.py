"""``taxi-pipeline``: run the taxi pipeline locally on Beam's DirectRunner.

Examples::

    taxi-pipeline                                   # bundled data, ./tfx_runs
    taxi-pipeline --output-dir /tmp/run --train-steps 200
    taxi-pipeline --data-dir my_spans --serving-dir /srv/models/taxi
    taxi-pipeline --beam-mode multi_processing      # one worker per core
    taxi-pipeline --cv-folds 5 --cv-steps 300       # model selection: 5-fold CV, longer folds
    taxi-pipeline --cv-folds 0                      # no model selection: wide & deep

Every run backfills spans that were never ingested (ingestion + validation
only, up to ``--parallel`` spans at once, the newest among them), then
ingests and validates the newest span (a cache hit if it was just backfilled)
and trains on the newest ``--num-spans`` spans. ML Metadata is ``--metadata``
(an SQLite file or a shared ``mysql://`` store, see lineage/metadata_store.py).
Exit codes: 0 done (pushed or not blessed, see the summary), 2 bad input data,
anomalies or an ML Metadata store that cannot be opened, 1 any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import code_digest, configs  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_OK, EXIT_FAILED, EXIT_BAD_DATA = 0, 1, 2


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


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """The flags for what is trained and how it is gated, shared with ``taxi-kubeflow-compile``."""
    parser.add_argument("--train-steps", type=int, default=configs.TRAIN_STEPS)
    parser.add_argument("--eval-steps", type=int, default=configs.EVAL_STEPS)
    parser.add_argument(
        "--train-epochs",
        type=_epochs,
        default=configs.TRAIN_EPOCHS,
        help="the Trainer trains at least --train-steps steps and this many passes over the "
        "train split (0 = --train-steps only)",
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
        "--cv-min-auc-gain",
        type=float,
        default=configs.CV_MIN_AUC_GAIN,
        help="wide & deep must beat logistic by more than this (lower 95%% CI bound "
        "of the paired per-fold AUC gain)",
    )


def training_settings(args: argparse.Namespace) -> dict:
    """``create_pipeline`` keyword arguments for the flags of ``add_training_flags``."""
    return dict(
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        train_epochs=args.train_epochs,
        tune_epochs=args.tune_epochs,
        cv_epochs=args.cv_epochs,
        cv_max_rows=args.cv_max_rows,
        seed=args.seed,
        canary=not args.no_canary,
        min_auc=args.min_auc,
        max_auc_drop=args.max_auc_drop,
        tune_trials=args.tune_trials,
        tune_steps=args.tune_steps,
        cv_folds=args.cv_folds,
        cv_steps=args.cv_steps,
        cv_min_auc_gain=args.cv_min_auc_gain,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taxi-pipeline",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output-dir", default="tfx_runs", help="pipeline root, MLMD and serving dir live here"
    )
    parser.add_argument(
        "--metadata",
        help="ML Metadata: SQLite file or mysql://USER:PASSWORD@HOST:PORT/DB "
        "(default: $TAXI_METADATA, else <output-dir>/metadata.sqlite)",
    )
    parser.add_argument(
        "--data-dir",
        default=os.path.join(REPO_ROOT, "data", "taxi"),
        help="folder of span-<N>/*.csv",
    )
    parser.add_argument(
        "--schema-dir",
        default=os.path.join(REPO_ROOT, "data", "schema"),
        help="folder with the curated schema.pbtxt",
    )
    parser.add_argument(
        "--serving-dir",
        help="base dir of pushed versions (default: <output-dir>/serving/<model-name>)",
    )
    parser.add_argument("--model-name", default=configs.MODEL_NAME)
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
    return args


def code_fingerprints() -> dict[str, str]:
    """Digest of the code each of Transform, Trainer, Tuner and ModelSelection runs.

    The module code is referenced by dotted path (no module-file packaging),
    so these digests are what makes a code change invalidate the cache. Each
    covers every project module its node's code imports, directly or not
    (see pipeline/code_digest.py).
    """
    return code_digest.node_fingerprints(REPO_ROOT)


def source_digest() -> str:
    """Digest of all pipeline, component, server, lineage and reporting source (run-level cache)."""
    digest = hashlib.sha256()
    for package in ("pipeline", "components", "serving", "lineage", "reporting"):
        for folder, dirs, files in os.walk(os.path.join(REPO_ROOT, package)):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    digest.update(os.path.relpath(path, REPO_ROOT).encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


# Beam flags that tell workers where the code comes from (TFX checks the same ones).
DEPENDENCY_FLAGS = (
    "--setup_file",
    "--extra_package",
    "--extra_packages",
    "--requirements_file",
    "--sdk_container_image",
    "--worker_harness_container_image",
)


DIRECT_RUNNERS = ("DirectRunner", "direct", "BundleBasedDirectRunner")


def runner_name(extra: list[str]) -> str:
    """The ``--runner`` of the Beam args (the last one wins, as in Beam), default DirectRunner."""
    runner = "DirectRunner"
    for arg in extra:
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    return runner


def is_direct(extra: list[str]) -> bool:
    """Whether the Beam args run on the local DirectRunner (in this process or its workers)."""
    return runner_name(extra) in DIRECT_RUNNERS


def build_package(directory: str) -> str:
    """This project's sdist, built once into ``directory`` (reused while the source is the same).

    A runner other than the DirectRunner (Beam's portable job service, Flink,
    Spark, Dataflow) runs the executors' code on its workers, so the code must
    be staged. Naming ``setup.py`` as ``--setup_file`` would make every Beam
    executor build its own sdist in the checkout -- side by side when
    components run in parallel, which races on the egg-info files.
    """
    target = os.path.join(directory, f"taxi_mlops-{source_digest()}.tar.gz")
    if os.path.exists(target):
        return target
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        subprocess.run(
            [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", tmp],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        (built,) = os.listdir(tmp)
        os.replace(os.path.join(tmp, built), target)
    return target


def beam_args(mode: str, extra: list[str], package_dir: str | None = None) -> list[str]:
    """Beam flags for ``mode`` ("in_memory" or "multi_processing") plus ``extra``.

    Unless ``extra`` already says how workers get the code: on the
    DirectRunner this project's ``setup.py`` is named as the
    ``--setup_file``, which stops every TFX Beam executor from copying the
    installed ``tfx`` package and building a throw-away sdist of it (1.5-2 s
    per executor, about a dozen executors in a cold run) -- work the local
    DirectRunner never uses. On any other runner the sdist is built once
    (``build_package`` into ``package_dir``) and staged as ``--extra_package``;
    the DirectRunner-only flags of ``mode`` are left out.
    """
    base = configs.BEAM_ARGS_IN_MEMORY if mode == "in_memory" else configs.BEAM_ARGS_MULTI_PROCESS
    direct = is_direct(extra)
    if not direct:
        base = [a for a in base if not a.startswith("--direct_")]
    args = [*base, *extra]
    if not any(a.split("=", 1)[0] in DEPENDENCY_FLAGS for a in args):
        if direct:
            args.append(f"--setup_file={os.path.join(REPO_ROOT, 'setup.py')}")
        else:
            if package_dir is None:
                raise ValueError(f"runner {runner_name(extra)} needs a package_dir for the sdist")
            args.append(f"--extra_package={build_package(package_dir)}")
    return args


def stage_schema(schema_dir: str, output_dir: str) -> str:
    """Copies schema.pbtxt to a content-addressed folder under ``output_dir``.

    ImportSchemaGen caches on the file path; a path derived from the content
    makes a schema edit re-import it.
    """
    source = os.path.join(schema_dir, "schema.pbtxt")
    with open(source, "rb") as f:
        content = f.read()
    folder = os.path.join(output_dir, "schemas", hashlib.sha256(content).hexdigest()[:16])
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "schema.pbtxt")
    if not os.path.exists(target):
        shutil.copyfile(source, target + ".tmp")
        os.replace(target + ".tmp", target)
    return folder


def _quiet() -> None:
    """Silences TF/TFX/Beam logging and warnings (``-v`` keeps them)."""
    import logging

    from absl import logging as absl_logging

    warnings.filterwarnings("ignore")
    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _write_model_card(output_dir: str, version: str) -> str:
    """Writes the pushed version's model card under ``output_dir``; a line for the summary."""
    from reporting.model_card import write_card

    try:
        markdown, page = write_card(output_dir, version)
    except Exception as e:  # noqa: BLE001 - the push happened; report, do not fail the run
        return f"not written ({type(e).__name__}: {e})"
    return f"{markdown} (+ .html)"


def worker_processes(requested: int | None, parallel: int) -> int:
    """Worker processes for Beam executors: ``requested``, else one per core up to ``parallel``.

    One component at a time (``parallel`` 1) gains nothing from a worker, so
    the default is then none. Workers are forked from a process that has
    imported TF, which is only sound on Linux: elsewhere the default is none.
    """
    if requested is not None:
        return requested
    if parallel <= 1 or not sys.platform.startswith("linux"):
        return 0
    return min(parallel, os.cpu_count() or 1)


def _run_all(pipelines: list, runner, parallel: int) -> None:
    """Runs independent pipelines, up to ``parallel`` at once; re-raises the first error."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max(1, min(parallel, len(pipelines)))) as pool:
        futures = [pool.submit(runner.run, p) for p in pipelines]
        for future in futures:  # in span order, so the oldest span's error wins
            future.result()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        _quiet()
    # Only light imports until the run-level cache has been consulted.
    from lineage import metadata_store
    from pipeline import data_check, run_cache, run_summary

    started = time.time()
    output_dir = os.path.abspath(args.output_dir)
    serving_dir = os.path.abspath(
        args.serving_dir or os.path.join(output_dir, "serving", args.model_name)
    )
    metadata_path = metadata_store.resolve(args.metadata, output_dir)
    pipeline_root = os.path.join(output_dir, "pipeline")
    data_root = os.path.abspath(args.data_dir)
    os.makedirs(output_dir, exist_ok=True)
    if metadata_store.is_mysql(metadata_path):
        try:  # creates the database and MLMD's tables once, before TFX's launchers connect
            metadata_store.open_store(metadata_path)
        except metadata_store.MetadataError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return EXIT_BAD_DATA

    try:
        schema_path = stage_schema(args.schema_dir, output_dir)
        schema = run_summary.load_schema(schema_path)
        spans = data_check.list_spans(data_root)
        ingested = run_summary.ingested_spans(metadata_path, args.pipeline_name)
        # Only new spans and the newest one (which is re-fingerprinted) are read.
        to_check = [s for s in spans if s not in ingested or s == max(spans)]
        for span in to_check:
            rows = data_check.check_span(spans[span], schema)
            print(f"checked span {span}: {rows} rows in {spans[span]}")
    except (data_check.DataError, OSError) as e:
        print(f"ERROR: bad input data: {e}", file=sys.stderr)
        print("Nothing was ingested or pushed.", file=sys.stderr)
        return EXIT_BAD_DATA

    code = code_fingerprints()
    run_args = {
        k: v
        for k, v in vars(args).items()
        if k not in ("force", "verbose", "parallel", "processes")
    }
    fingerprint = run_cache.inputs_fingerprint(
        spans, schema_path, {**code, "source": source_digest()}, run_args
    )
    last = run_cache.load(output_dir)
    if not (args.force or args.no_cache) and run_cache.is_fresh(last, fingerprint):
        print(
            f"Nothing changed since the successful run of {last['finished']}: same spans, "
            "schema, code and arguments, so every component would be a cache hit."
        )
        print("Its summary (use --force to re-run through TFX's cache):")
        print(last["summary"])
        return EXIT_OK

    from components.anomalies_gate import AnomaliesFoundError
    from pipeline import beam_speedups, memory, progress
    from pipeline.concurrent_runner import ConcurrentLocalDagRunner
    from pipeline.pipeline import create_pipeline
    from pipeline.worker_processes import WorkerPool

    common = dict(
        pipeline_name=args.pipeline_name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        schema_path=schema_path,
        serving_dir=serving_dir,
        metadata_path=metadata_path,
        num_spans=args.num_spans,
        code_fingerprints=code,
        beam_pipeline_args=beam_args(
            args.beam_mode, args.beam_arg, os.path.join(output_dir, "beam-packages")
        ),
        enable_cache=not args.no_cache,
        analyzer_cache=args.analyzer_cache,
        **training_settings(args),
    )
    beam_speedups.install()
    memory.freeze_imports()  # before forking workers (see pipeline.memory)
    newest = max(spans)
    processes = worker_processes(args.processes, args.parallel)
    if processes and not is_direct(args.beam_arg):
        # The runner has workers of its own; executors stay in this process.
        print(f"Beam runner {runner_name(args.beam_arg)}: no worker processes of ours")
        processes = 0
    runs = []
    try:
        with (
            WorkerPool(processes) if processes else contextlib.nullcontext() as pool,
            progress.track() as runs,
        ):
            runner = ConcurrentLocalDagRunner(max_workers=args.parallel, worker_pool=pool)
            backfill = [s for s in spans if s not in ingested and s != newest]
            if backfill and newest not in ingested:
                # Ingested side by side with the backfill; the main run then
                # finds its ingestion and validation in TFX's cache.
                backfill.append(newest)
            if backfill:
                print(f"--- backfill: ingest and validate spans {', '.join(map(str, backfill))}")
                _run_all(
                    [create_pipeline(**common, span=s, ingest_only=True) for s in backfill],
                    runner,
                    args.parallel,
                )
            print(f"--- run: ingest span {newest}, train, evaluate, push")
            runner.run(create_pipeline(**common, span=newest))
    except AnomaliesFoundError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        print(
            f"Run stopped at the anomalies gate; nothing was pushed. Data: {data_root}",
            file=sys.stderr,
        )
        return EXIT_BAD_DATA
    except Exception as e:  # noqa: BLE001 - report any component failure and exit non-zero
        failed = next((r.node_id for r in reversed(runs) if r.state == "FAILED"), "pipeline")
        print(f"ERROR: {failed} failed: {type(e).__name__}: {e}", file=sys.stderr)
        print("Nothing was pushed by this run.", file=sys.stderr)
        return EXIT_FAILED

    summary = run_summary.summarize(metadata_path, runs, since=started)
    if summary.pushed_version:
        card = _write_model_card(output_dir, summary.pushed_version)
        summary.model_card = card
    text = run_summary.format_summary(
        summary, output_dir, serving_dir, time.time() - started, metadata_path
    )
    print(text)
    run_cache.save(
        output_dir,
        {
            "fingerprint": fingerprint,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pushed_to": summary.pushed_to,
            "summary": text,
        },
    )
    return EXIT_OK


def cli() -> None:
    """The ``taxi-pipeline`` entry point: ``main``, then an immediate exit.

    Everything the run writes is closed and flushed by the time ``main``
    returns; what is left is the interpreter's teardown of TF, Beam and gRPC
    (about 1.3 s here), which does nothing for the user. So the exit code is
    handed straight to the OS after flushing output and logs. An exception
    escaping ``main`` still exits the normal way, with its traceback.
    """
    import logging

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    cli()
