"""Ingestion A/B: TFX's CsvExampleGen executor vs ours (components/example_gen) on one span.

Each executor runs in its own fresh subprocess on the same CSV folder (the
same 80/10/10 split config as the pipeline, in-memory DirectRunner) and is
reported with its wall time, CPU seconds (user + system, minus those of the
same subprocess doing only the imports: less sensitive to a busy machine
than wall time) and peak RSS. Usage::

    python bench/bench_example_gen.py SPAN_DIR [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTORS = {
    "tfx": "tfx.components.example_gen.csv_example_gen.executor",
    "streaming": "components.example_gen.executor",
}
CHILD = """
import sys, time
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils
import importlib
module = importlib.import_module(sys.argv[1])
if sys.argv[2] == "imports-only":
    sys.exit(0)
examples = standard_artifacts.Examples()
examples.uri = sys.argv[3]
splits = [example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b)
          for n, b in (("train", 8), ("eval", 1), ("test", 1))]
executor = module.Executor(module.Executor.Context(
    beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
executor.Do({}, {"examples": [examples]}, {
    "input_base": sys.argv[2],
    "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")])),
    "output_config": proto_utils.proto_to_json(example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=splits))),
    "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
    "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
})
"""


def measure(module: str, span_dir: str, out: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one child, via wait4's resource usage."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, module, span_dir, out],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if status:
            log.seek(0)
            sys.exit(f"{module} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("span_dir", help="a folder of *.csv (one span)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_example_gen_") as tmp:
        base = {name: measure(m, "imports-only", tmp) for name, m in EXECUTORS.items()}
        for i in range(args.repeat):
            for name, module in EXECUTORS.items():
                wall, cpu, rss = measure(module, args.span_dir, os.path.join(tmp, f"{name}{i}"))
                b_wall, b_cpu, _ = base[name]
                print(
                    f"{name:<10} wall {wall:6.1f} s (imports alone {b_wall:.1f})  "
                    f"CPU {cpu - b_cpu:6.1f} s  "
                    f"peak RSS {rss:6.0f} MiB (imports alone {base[name][2]:.0f})  "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
