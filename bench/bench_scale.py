"""Scale benchmark: the default ``taxi-pipeline`` cold run on 1x, 10x, 100x the bundled data.

For each factor k, ``scripts/scale_taxi_spans.py`` writes k-times spans
(cached in the work dir: made once, not timed), then the pipeline runs cold
on them in a fresh output dir. Per run it prints the wall time, the peak PSS
of the whole process tree (what the tree really holds: forked workers share
the parent's pages, and PSS splits each shared page between its processes),
the peak RSS of the largest single process, the seconds of every component
(from the runner's progress lines; a component that ran once per span, like
the ingestion nodes in the backfill, is summed over its runs and shows the
count), and the ratios of each figure to the 1x run of the same invocation.
Memory is sampled every ``--interval`` seconds.

Usage::

    python bench/bench_scale.py                      # 1x, 10x, 100x
    python bench/bench_scale.py --factors 1,10       # a quicker look
    python bench/bench_scale.py --with-1000x         # also 1000x (15M rows, ~1.9 GB of CSV)
    python bench/bench_scale.py -- --tune-trials 0   # after --: extra taxi-pipeline flags
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

from core import resources

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
END_LINE = re.compile(r"^\[[\d:]+\] end\s+(\S+)\s+([\d.]+)s\s+(\w+)")


def sample(processes: list[psutil.Process]) -> tuple[int, int]:
    """(PSS summed over ``processes``, RSS of the largest one) in bytes."""
    pss = largest = 0
    for p in processes:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue  # ended while being read
        pss += getattr(info, "pss", info.rss)
        largest = max(largest, info.rss)
    return pss, largest


def measure(command: list[str], env: dict, log_path: str, interval: float) -> dict:
    """Runs ``command`` with stdout+stderr to ``log_path``; wall time and memory peaks."""
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log)
        root = psutil.Process(process.pid)
        peak_pss = peak_largest = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            pss, largest = sample(tree)
            peak_pss, peak_largest = max(peak_pss, pss), max(peak_largest, largest)
            time.sleep(interval)
        wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 1),
        "peak_pss_mib": round(peak_pss / 2**20),
        "peak_largest_rss_mib": round(peak_largest / 2**20),
        "exit": process.returncode,
    }


def component_seconds(log_path: str) -> dict[str, dict]:
    """Node id -> {"seconds": summed over its runs, "runs": count} from the progress lines."""
    times: dict[str, dict] = collections.defaultdict(lambda: {"seconds": 0.0, "runs": 0})
    with open(log_path, errors="replace") as f:
        for line in f:
            match = END_LINE.match(line.strip())
            if match and match.group(3) in ("complete", "cached"):
                entry = times[match.group(1)]
                entry["seconds"] = round(entry["seconds"] + float(match.group(2)), 1)
                entry["runs"] += 1
    return dict(times)


def scaled_data(workdir: str, factor: int) -> tuple[str, int]:
    """(data dir of ``factor``-times spans, rows), made once per work dir."""
    folder = os.path.join(workdir, f"data-{factor}x")
    done = os.path.join(folder, "rows.json")
    if not os.path.exists(done):
        shutil.rmtree(folder, ignore_errors=True)
        sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
        import scale_taxi_spans

        started = time.time()
        rows = scale_taxi_spans.scale_spans(
            resources.data_root(), folder, factor, seed=0, processes=os.cpu_count() or 1
        )
        print(f"  wrote {sum(rows.values()):,} rows in {time.time() - started:.0f} s", flush=True)
        with open(done, "w") as f:
            json.dump(rows, f)
    with open(done) as f:
        return folder, sum(json.load(f).values())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to taxi-pipeline.",
    )
    parser.add_argument("--factors", default="1,10,100", help="comma-separated scale factors")
    parser.add_argument("--with-1000x", action="store_true", help="append 1000x")
    parser.add_argument("--workdir", help="scaled data and run outputs (default: a temp dir)")
    parser.add_argument("--interval", type=float, default=0.2, help="memory sampling period (s)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    factors = [int(f) for f in args.factors.split(",")]
    if args.with_1000x and 1000 not in factors:
        factors.append(1000)
    if 1 not in factors:
        factors.insert(0, 1)  # ratios need the 1x run of this invocation
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    os.makedirs(workdir, exist_ok=True)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))

    results = {}
    for factor in factors:
        print(f"{factor}x: data", flush=True)
        data_dir, rows = scaled_data(workdir, factor)
        output = os.path.join(workdir, f"run-{factor}x")
        shutil.rmtree(output, ignore_errors=True)
        log = os.path.join(workdir, f"run-{factor}x.log")
        command = [sys.executable, "-m", "pipeline.local_runner", "--output-dir", output]
        command += ["--data-dir", data_dir, *extra]
        load_before = os.getloadavg()[0]
        run = measure(command, env, log, args.interval)
        run.update(
            rows=rows,
            load_before=round(load_before, 1),
            load_after=round(os.getloadavg()[0], 1),
            components=component_seconds(log),
            pushed="  pushed: version" in open(log, errors="replace").read(),
        )
        results[factor] = run
        print(
            f"{factor}x: {rows:,} rows  {run['wall_s']:.1f} s  peak PSS {run['peak_pss_mib']} MiB"
            f"  largest process {run['peak_largest_rss_mib']} MiB  exit {run['exit']}"
            f"  load {run['load_before']} -> {run['load_after']}  (log: {log})",
            flush=True,
        )
        if run["exit"]:
            with open(log, errors="replace") as f:
                sys.stderr.write(f.read()[-3000:])
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    report(results)
    return 0 if all(r["exit"] == 0 for r in results.values()) else 1


def report(results: dict[int, dict]) -> None:
    """The runs side by side, then per component, with ratios to the 1x run."""
    base = results[1]
    print()
    print(f"{'':<22}" + "".join(f"{f'{k}x':>18}" for k in results))
    rows = [
        ("rows", lambda r: f"{r['rows']:,}"),
        ("wall s (ratio)", lambda r: f"{r['wall_s']:.0f} ({r['wall_s'] / base['wall_s']:.2f})"),
        (
            "peak PSS MiB (ratio)",
            lambda r: f"{r['peak_pss_mib']} ({r['peak_pss_mib'] / base['peak_pss_mib']:.2f})",
        ),
        (
            "largest proc MiB",
            lambda r: (
                f"{r['peak_largest_rss_mib']} "
                f"({r['peak_largest_rss_mib'] / base['peak_largest_rss_mib']:.2f})"
            ),
        ),
        ("pushed", lambda r: str(r["pushed"])),
        ("load avg before/after", lambda r: f"{r['load_before']}/{r['load_after']}"),
    ]
    for name, cell in rows:
        print(f"{name:<22}" + "".join(f"{cell(r):>18}" for r in results.values()))
    print("component seconds (runs), summed over runs:")
    nodes = sorted({n for r in results.values() for n in r["components"]})
    for node in nodes:
        cells = []
        for r in results.values():
            entry = r["components"].get(node)
            cells.append(f"{entry['seconds']:.1f} ({entry['runs']})" if entry else "-")
        print(f"  {node:<20}" + "".join(f"{c:>18}" for c in cells))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.exit(main())
