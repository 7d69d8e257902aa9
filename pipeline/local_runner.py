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

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import warnings
from typing import TYPE_CHECKING, NamedTuple

from pipeline import beam_setup, code_digest, flags

if TYPE_CHECKING:
    import argparse

    from pipeline.concurrent_runner import NodeListener
    from pipeline.progress import NodeRun
    from pipeline.settings import PipelineSettings

EXIT_OK, EXIT_FAILED, EXIT_BAD_DATA = 0, 1, 2


def parse_args(argv: list[str] | None = None):
    """The flags of ``taxi-pipeline`` (see ``pipeline.flags.parse_local_args``)."""
    return flags.parse_local_args(argv, __doc__)


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


def _run_all(pipelines: list, runner, parallel: int) -> None:
    """Runs independent pipelines, up to ``parallel`` at once; re-raises the first error."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max(1, min(parallel, len(pipelines)))) as pool:
        futures = [pool.submit(runner.run, p) for p in pipelines]
        for future in futures:  # in span order, so the oldest span's error wins
            future.result()


@contextlib.contextmanager
def _own_flags_hidden():
    """Leaves only the program name in ``sys.argv`` while the run goes on.

    TFX's Beam executors parse ``sys.argv`` plus the Beam args with absl's flags
    (``known_only``), where our ``-v`` is absl's ``--verbosity`` and would swallow
    the next argument (a Beam flag) as its value.
    """
    saved = sys.argv[:]
    del sys.argv[1:]
    try:
        yield
    finally:
        sys.argv[:] = saved


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with _own_flags_hidden():
        return _main(args)


def _main(args) -> int:
    if not args.verbose:
        _quiet()
    from core import compat

    try:  # before anything runs on internals that other versions may not have
        compat.check_versions()
    except compat.IncompatibleVersionError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return EXIT_FAILED
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

    code = code_digest.node_fingerprints()
    run_args = {
        k: v
        for k, v in vars(args).items()
        if k not in ("force", "verbose", "parallel", "processes")
    }
    fingerprint = run_cache.inputs_fingerprint(
        spans, schema_path, {**code, "source": code_digest.source_digest()}, run_args
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
    from pipeline import progress
    from pipeline.settings import PipelineSettings

    try:
        beam_pipeline_args = beam_setup.beam_args(
            args.beam_mode, args.beam_arg, os.path.join(output_dir, "beam-packages")
        )
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"ERROR: cannot stage this project for the Beam runner: {e}", file=sys.stderr)
        return EXIT_FAILED
    settings = PipelineSettings(
        pipeline_name=args.pipeline_name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        schema_path=schema_path,
        serving_dir=serving_dir,
        metadata_path=metadata_path,
        num_spans=args.num_spans,
        code_fingerprints=code,
        beam_pipeline_args=beam_pipeline_args,
        enable_cache=not args.no_cache,
        analyzer_cache=args.analyzer_cache,
        training=flags.training_settings(args),
    )
    tracker = progress.Progress()
    try:
        _run_pipelines(settings, spans, ingested, args, tracker)
    except AnomaliesFoundError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        print(
            f"Run stopped at the anomalies gate; nothing was pushed. Data: {data_root}",
            file=sys.stderr,
        )
        return EXIT_BAD_DATA
    except Exception as e:  # noqa: BLE001 - report any component failure and exit non-zero
        runs = tracker.runs
        failed = next((r.node_id for r in reversed(runs) if r.state == "FAILED"), "pipeline")
        print(f"ERROR: {failed} failed: {type(e).__name__}: {e}", file=sys.stderr)
        print("Nothing was pushed by this run.", file=sys.stderr)
        return EXIT_FAILED

    report = _report(settings, output_dir, tracker.runs, started)
    run_cache.save(
        output_dir,
        {
            "fingerprint": fingerprint,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "pushed_to": report.pushed_to,
            "summary": report.text,
        },
    )
    return EXIT_OK


def _run_pipelines(
    settings: PipelineSettings,
    spans: dict[int, str],
    ingested: set[int],
    args: argparse.Namespace,
    listener: NodeListener,
) -> None:
    """Backfills spans never ingested, then ingests the newest span, trains, evaluates, pushes."""
    from core import compat
    from pipeline import memory
    from pipeline.concurrent_runner import ConcurrentLocalDagRunner
    from pipeline.pipeline import create_pipeline
    from pipeline.worker_processes import WorkerPool

    compat.memoize_beam_dofn_specs()
    memory.freeze_imports()  # before forking workers (see pipeline.memory)
    newest = max(spans)
    processes = beam_setup.worker_processes(args.processes, args.parallel)
    if processes and not beam_setup.is_direct(args.beam_arg):
        # The runner has workers of its own; executors stay in this process.
        print(f"Beam runner {beam_setup.runner_name(args.beam_arg)}: no worker processes of ours")
        processes = 0
    with WorkerPool(processes) if processes else contextlib.nullcontext() as pool:
        runner = ConcurrentLocalDagRunner(
            max_workers=args.parallel, worker_pool=pool, listener=listener
        )
        backfill = [s for s in spans if s not in ingested and s != newest]
        if backfill and newest not in ingested:
            # Ingested side by side with the backfill; the main run then
            # finds its ingestion and validation in TFX's cache.
            backfill.append(newest)
        if backfill:
            print(f"--- backfill: ingest and validate spans {', '.join(map(str, backfill))}")
            _run_all(
                [create_pipeline(settings, span=s, ingest_only=True) for s in backfill],
                runner,
                args.parallel,
            )
        print(f"--- run: ingest span {newest}, train, evaluate, push")
        runner.run(create_pipeline(settings, span=newest))


class _Report(NamedTuple):
    text: str  # the summary as printed
    pushed_to: str | None  # the pushed version's folder, if any


def _report(
    settings: PipelineSettings, output_dir: str, runs: list[NodeRun], started: float
) -> _Report:
    """Prints the run summary (after writing the pushed version's model card)."""
    from pipeline import run_summary

    summary = run_summary.summarize(settings.metadata_path, runs, since=started)
    if summary.pushed_version:
        summary.model_card = _write_model_card(output_dir, summary.pushed_version)
    text = run_summary.format_summary(
        summary,
        output_dir,
        settings.serving_dir,
        time.time() - started,
        settings.metadata_path,
    )
    print(text)
    return _Report(text, summary.pushed_to)


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
