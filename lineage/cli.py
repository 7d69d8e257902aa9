"""``taxi-lineage``: lineage questions answered from ML Metadata alone.

Examples::

    taxi-lineage --output-dir tfx_runs versions
    taxi-lineage --output-dir tfx_runs version 1795623793
    taxi-lineage --output-dir tfx_runs span 2015 --json
"""

from __future__ import annotations

import argparse
import json
import sys

import lineage
from core import resources
from lineage import metadata_store


def _print_version(info: dict) -> None:
    print(f"serving version {info['version']} ({info['destination']})")
    print(f"  spans:           {', '.join(map(str, info['spans']))}")
    for uri in info["examples"]:
        print(f"    examples:      {uri}")
    print(f"  schema:          {', '.join(info['schema'])}")
    print(f"  transform graph: {', '.join(info['transform_graph'])}")
    trainer = info["trainer"] or {}
    print(
        f"  trainer run:     execution {trainer.get('execution_id')} -> {', '.join(info['model'])}"
    )
    print(f"  evaluation:      {', '.join(info['evaluation'])}")
    print(f"  baseline model:  {', '.join(info['baseline_model']) or 'none'}")
    for blessing in info["blessing"]:
        print(
            f"  blessing:        {'BLESSED' if blessing['blessed'] else 'NOT BLESSED'} {blessing['uri']}"
        )
    pusher = info["pusher"] or {}
    print(f"  pusher run:      execution {pusher.get('execution_id')}")


def _print_span(info: dict) -> None:
    if not info["models"]:
        print(f"span {info['span']} was ingested but no model was trained on it yet")
        return
    print(f"models trained on span {info['span']}:")
    for model in info["models"]:
        versions = ", ".join(model["pushed_versions"]) or "not pushed"
        print(f"  {model['model']}  (serving versions: {versions})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taxi-lineage",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--output-dir",
        default=resources.default_run_dir(),
        help="the pipeline run's output dir (default: $TAXI_RUN_DIR, else ./tfx_runs)",
    )
    parser.add_argument(
        "--metadata",
        help="ML Metadata: SQLite file or mysql://USER:PASSWORD@HOST:PORT/DB "
        "(default: $TAXI_METADATA, else <output-dir>/metadata.sqlite)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="question", required=True)
    sub.add_parser("versions", help="list pushed serving versions")
    version = sub.add_parser("version", help="what produced serving version V")
    version.add_argument("version")
    span = sub.add_parser("span", help="which models were trained on span S")
    span.add_argument("span", type=int)
    args = parser.parse_args(argv)

    path = metadata_store.resolve(args.metadata, args.output_dir)
    if not metadata_store.exists(path):
        print(f"ERROR: no ML Metadata store at {path}", file=sys.stderr)
        return 2
    try:
        store = lineage.open_store(path)
    except metadata_store.MetadataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    graph = lineage.Graph.load(store)
    try:
        if args.question == "versions":
            info = {"versions": sorted(lineage.pushed_versions(graph))}
            printer = lambda i: print("\n".join(i["versions"]) or "no pushed versions")  # noqa: E731
        elif args.question == "version":
            info, printer = lineage.version_lineage(graph, args.version), _print_version
        else:
            info, printer = lineage.models_for_span(graph, args.span), _print_span
    except lineage.LineageError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        printer(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
