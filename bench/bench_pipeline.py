"""Pipeline benchmark: this project vs TFX's own taxi example, same data, same venv.

Runs, in one go: our pipeline cold, TFX's native-Keras taxi example cold
(``tfx.examples.chicago_taxi_pipeline.taxi_pipeline_native_keras``, shipped in
the installed tfx wheel, on the same 15,002 rows), then an unchanged re-run of
each. Prints wall time and peak memory of the whole process tree (sampled
every 50 ms) as RSS and as PSS, and our/their ratios. RSS summed over a tree
counts a page shared by several processes once per process (our Beam
workers are forked and share the parent's ~700 MiB of imported libraries);
PSS splits each shared page between its processes, so its sum is the memory
the tree really holds. For a single process the two agree. Both sides run
with TF_USE_LEGACY_KERAS=1 (the example needs it on TF 2.16). Usage: ``python bench/bench_pipeline.py [--workdir DIR] [--repeat N] [--ablation]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = "tfx.examples.chicago_taxi_pipeline.taxi_pipeline_native_keras"


def _tree_memory(tree: list[psutil.Process]) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over ``tree``; PSS is RSS where the kernel has none."""
    rss = pss = 0
    for p in tree:
        info = p.memory_full_info()
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def measure(command: list[str], env: dict, cwd: str) -> tuple[float, float, float, int]:
    """Runs ``command``; returns (wall seconds, peak tree RSS and PSS in MiB, exit code)."""
    log = tempfile.TemporaryFile()  # a pipe would fill up with TFX's logs and block the child
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    root = psutil.Process(process.pid)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        try:
            rss, pss = _tree_memory([root, *root.children(recursive=True)])
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        except psutil.Error:
            pass  # a process ended while being read
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if process.returncode:
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace")[-3000:])
    log.close()
    return wall, peak_rss / 2**20, peak_pss / 2**20, process.returncode


def official_home(workdir: str) -> str:
    """The HOME layout the example expects: ~/taxi/{data/simple, module file}."""
    import tfx

    source = os.path.join(os.path.dirname(tfx.__file__), "examples", "chicago_taxi_pipeline")
    home = os.path.join(workdir, "official_home")
    taxi = os.path.join(home, "taxi")
    os.makedirs(taxi, exist_ok=True)
    shutil.copytree(os.path.join(source, "data"), os.path.join(taxi, "data"), dirs_exist_ok=True)
    shutil.copy(os.path.join(source, "taxi_utils_native_keras.py"), taxi)
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="keep run outputs here (default: a temp dir)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="cold runs of each side, alternated; ratios use the medians (the machine is noisy)",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also run ours cold one component at a time (--parallel 1), with Beam "
        "components in threads instead of worker processes (--processes 0), without the "
        "Tuner and ModelSelection, and without the Beam construction speed-up "
        "(TAXI_BEAM_SPEEDUPS=0)",
    )
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_pipeline_")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def ours(name: str, *extra: str) -> list[str]:
        output = os.path.join(workdir, name)
        shutil.rmtree(output, ignore_errors=True)
        return [sys.executable, "-m", "pipeline.local_runner", "--output-dir", output, *extra]

    theirs = [sys.executable, "-m", EXAMPLE]
    their_env = {**env, "HOME": official_home(workdir)}
    their_outputs = [
        os.path.join(their_env["HOME"], "tfx"),  # pipeline root and MLMD
        os.path.join(their_env["HOME"], "taxi", "serving_model"),
    ]

    results: dict[str, list[tuple[float, float, float]]] = {}

    def run(label: str, command: list[str], run_env: dict) -> bool:
        wall, rss, pss, code = measure(command, run_env, REPO_ROOT)
        results.setdefault(label, []).append((wall, rss, pss))
        print(
            f"{label:<38} {wall:7.1f} s   peak RSS {rss:7.0f} MiB   PSS {pss:7.0f} MiB   exit {code}",
            flush=True,
        )
        return code == 0

    for _ in range(args.repeat):
        for path in their_outputs:
            shutil.rmtree(path, ignore_errors=True)
        ok = run("ours cold", ours("ours"), env)
        if not (ok and run("official cold", theirs, their_env)):
            return 1
    rerun = [sys.executable, "-m", "pipeline.local_runner", "--output-dir"]
    rerun.append(os.path.join(workdir, "ours"))
    for label, command, run_env in (
        ("ours re-run", rerun, env),
        ("official re-run", theirs, their_env),
        ("ours re-run via TFX cache (--force)", [*rerun, "--force"], env),
    ):
        if not run(label, command, run_env):
            return 1
    if args.ablation:
        run("ours cold, --parallel 1", ours("ours_serial", "--parallel", "1"), env)
        run("ours cold, --processes 0", ours("ours_threads", "--processes", "0"), env)
        run(
            "ours cold, no Tuner, no ModelSelection",
            ours("ours_core", "--tune-trials", "0", "--cv-folds", "0"),
            env,
        )
        run(
            "ours cold, TAXI_BEAM_SPEEDUPS=0",
            ours("ours_unpatched"),
            {**env, "TAXI_BEAM_SPEEDUPS": "0"},
        )

    def median(label: str, i: int) -> float:
        return statistics.median(r[i] for r in results[label])

    def ratio(a: str, b: str, i: int) -> float:
        return median(a, i) / median(b, i)

    print()
    if args.repeat > 1:
        print(f"medians of {args.repeat} alternated cold runs each")
    print(
        f"ours cold {median('ours cold', 0):.1f} s, official cold {median('official cold', 0):.1f} s"
    )
    print(
        f"cold wall ratio (ours/official):    {ratio('ours cold', 'official cold', 0):.2f}  (target <= 0.50)"
    )
    print(
        f"re-run wall ratio (ours/official):  {ratio('ours re-run', 'official re-run', 0):.2f}  (target <= 0.25)"
    )
    forced = ratio("ours re-run via TFX cache (--force)", "official re-run", 0)
    print(f"  via TFX cache (--force):          {forced:.2f}")
    print(
        f"cold peak PSS ratio:                {ratio('ours cold', 'official cold', 2):.2f}  (target <= 1.00)"
    )
    print(f"cold peak RSS-sum ratio:            {ratio('ours cold', 'official cold', 1):.2f}")
    print(f"re-run peak PSS ratio:              {ratio('ours re-run', 'official re-run', 2):.2f}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
