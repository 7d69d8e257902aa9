"""``taxi-report``: write one self-contained HTML report per pipeline run.

Examples::

    taxi-report                                  # newest run in $TAXI_RUN_DIR or ./tfx_runs
    taxi-report --run-dir /tmp/run --run 2026-11-25T16:25:19.480832
    taxi-report --run-dir /tmp/run --run 42      # the run holding execution 42
    taxi-report --run-dir /tmp/run --all         # every run
    taxi-report --list                           # list runs, write nothing
    taxi-report --monitoring monitoring_out --alerts alerts.jsonl --output-dir pages
                                                 # one page per request-log window + index.html

Reports go to <run dir>/reports/run-<run id>.html unless --output /
--output-dir say otherwise. Monitoring pages (`taxi-monitor window|quality|ab|watch`
outputs, alert logs) go to <monitoring dir>/pages unless --output-dir says
otherwise. Exit codes: 0 written, 1 no such run or no metadata, 2 no window
or a bad alert log.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taxi-report",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run-dir",
        help="pipeline output dir holding metadata.sqlite (default: $TAXI_RUN_DIR or ./tfx_runs)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--run", help="run id or execution id (default: $TAXI_RUN_ID or the newest run)"
    )
    which.add_argument("--all", action="store_true", help="one report per run")
    which.add_argument("--list", action="store_true", help="list the runs and exit")
    which.add_argument(
        "--monitoring", help="monitoring output folder: write its per-window pages instead"
    )
    parser.add_argument(
        "--alerts",
        action="append",
        default=[],
        help="alert log (JSON lines of taxi-monitor alert / alert-receiver); repeatable",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", help="report file (single run only)")
    where.add_argument("--output-dir", help="folder for the reports (default: <run dir>/reports)")
    return parser.parse_args(argv)


def _quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.all and args.output:
        print("taxi-report: --output names one file; use --output-dir with --all", file=sys.stderr)
        return 2
    _quiet()
    if args.monitoring:
        from reporting import monitoring_pages

        output_dir = args.output_dir or os.path.join(args.monitoring, "pages")
        try:
            paths = monitoring_pages.write_pages(args.monitoring, output_dir, args.alerts)
        except (OSError, ValueError) as e:
            print(f"taxi-report: {e}", file=sys.stderr)
            return 2
        print(f"{len(paths) - 1} window pages: {paths[0]}")
        return 0
    from lineage import runs as runs_lib
    from reporting import html_report, runs

    run_dir = os.path.abspath(args.run_dir) if args.run_dir else runs.run_dir_from_env()
    try:
        store = runs_lib.RunStore(run_dir)
        if args.list:
            for run in store.runs():
                print(f"{run.run_id}  {store.describe_run(run)}")
            return 0
        selected = store.runs() if args.all else [store.get_run(args.run or runs.run_id_from_env())]
        if not selected:
            raise runs_lib.RunNotFoundError(f"no runs in {store.metadata_path}")
    except runs_lib.RunNotFoundError as e:
        print(f"taxi-report: {e}", file=sys.stderr)
        return 1
    output_dir = args.output_dir or os.path.join(run_dir, "reports")
    for run in selected:
        path = args.output or os.path.join(output_dir, html_report.report_filename(run))
        html_report.write_report(store, run, path)
        print(f"{store.describe_run(run)}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
