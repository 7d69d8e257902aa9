"""``python -m components.model_card``: write the model card of a pushed version.

Examples::

    python -m components.model_card --output-dir tfx_runs            # newest pushed version
    python -m components.model_card --output-dir tfx_runs --version 1795627508
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.model_card", description=__doc__)
    parser.add_argument("--output-dir", default="tfx_runs", help="the pipeline's --output-dir")
    parser.add_argument("--version", help="pushed version (default: the newest)")
    args = parser.parse_args(argv)
    from components.model_card.card import write_card
    from pipeline.lineage import LineageError
    from reporting.runs import RunNotFoundError

    try:
        markdown, page = write_card(os.path.abspath(args.output_dir), args.version)
    except (LineageError, RunNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"model card: {markdown}\nmodel card: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
