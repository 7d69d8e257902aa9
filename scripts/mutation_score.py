"""Mutation score per module from mutmut's results in ./mutants (after `mutmut run`).

    python scripts/mutation_score.py PATTERN...

Each PATTERN is a mutant name glob as given to `mutmut run` (for example
"monitoring.ab.*" or "pipeline.pipeline.x_eval_config*"); one line per pattern:
killed / mutants tested and the percentage, then every mutant that was not killed
with its status (`mutmut show NAME` prints its diff); mutants not run yet
are counted, not listed. Killed counts mutmut's
timeouts too (a mutant that loops forever is caught). Exit status 1 if a pattern
matches no mutant or one of them was never run.
"""

from __future__ import annotations

import fnmatch
import json
import pathlib
import sys

KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout"}
STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def results(root: pathlib.Path) -> dict[str, int | None]:
    """Mutant name -> mutmut's exit code (None: not run yet) over every .meta file."""
    codes = {}
    for meta in sorted(root.rglob("*.meta")):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def main(patterns: list[str], root: pathlib.Path = pathlib.Path("mutants")) -> int:
    codes = results(root)
    status = 0
    for pattern in patterns:
        names = sorted(n for n in codes if fnmatch.fnmatch(n, pattern))
        killed = [n for n in names if codes[n] in KILLED]
        timeouts = sum(KILLED[codes[n]] == "timeout" for n in killed)
        share = f"{100 * len(killed) / len(names):.1f}%" if names else "no mutants"
        unrun = sum(codes[n] is None for n in names)
        print(
            f"{pattern}: {len(killed)}/{len(names)} killed ({share}; timeouts {timeouts}"
            + (f"; NOT RUN {unrun})" if unrun else ")")
        )
        for name in names:
            if codes[name] is not None and codes[name] not in KILLED:
                print(f"    {name}: {STATUS.get(codes[name], f'exit {codes[name]}')}")
        if not names or unrun:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
