"""Pipeline benchmark: this project vs TFX's own taxi example, same data, same venv.

Runs, in one go: our pipeline cold, TFX's native-Keras taxi example cold
(``tfx.examples.chicago_taxi_pipeline.taxi_pipeline_native_keras``, shipped in
the installed tfx wheel, on the same 15,002 rows), then an unchanged re-run of
each. Prints wall time and peak RSS (whole process tree, sampled every 50 ms)
and our/their ratios. Both sides run with TF_USE_LEGACY_KERAS=1 (the example
needs it on TF 2.16). Usage: ``python bench/bench_pipeline.py [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = "tfx.examples.chicago_taxi_pipeline.taxi_pipeline_native_keras"


def measure(command: list[str], env: dict, cwd: str) -> tuple[float, float, int]:
    """Runs ``command``; returns (wall seconds, peak tree RSS in MiB, exit code)."""
    log = tempfile.TemporaryFile()  # a pipe would fill up with TFX's logs and block the child
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if process.returncode:
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace")[-3000:])
    log.close()
    return wall, peak / 2**20, process.returncode


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
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_pipeline_")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    ours = [
        sys.executable,
        "-m",
        "pipeline.local_runner",
        "--output-dir",
        os.path.join(workdir, "ours"),
    ]
    theirs = [sys.executable, "-m", EXAMPLE]
    their_env = {**env, "HOME": official_home(workdir)}

    results = {}
    for label, command, run_env in (
        ("ours cold", ours, env),
        ("official cold", theirs, their_env),
        ("ours re-run", ours, env),
        ("official re-run", theirs, their_env),
        ("ours re-run via TFX cache (--force)", ours + ["--force"], env),
    ):
        wall, rss, code = measure(command, run_env, REPO_ROOT)
        results[label] = (wall, rss)
        print(f"{label:<38} {wall:7.1f} s   peak RSS {rss:7.0f} MiB   exit {code}", flush=True)
        if code:
            return 1

    def ratio(a, b, i):
        return results[a][i] / results[b][i]

    print()
    print(
        f"cold wall ratio (ours/official):    {ratio('ours cold', 'official cold', 0):.2f}  (target <= 0.50)"
    )
    print(
        f"re-run wall ratio (ours/official):  {ratio('ours re-run', 'official re-run', 0):.2f}  (target <= 0.25)"
    )
    print(
        f"  via TFX cache (--force):          {ratio('ours re-run via TFX cache (--force)', 'official re-run', 0):.2f}"
    )
    print(
        f"cold peak RSS ratio:                {ratio('ours cold', 'official cold', 1):.2f}  (target <= 1.00)"
    )
    print(f"re-run peak RSS ratio:              {ratio('ours re-run', 'official re-run', 1):.2f}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
