"""Fast defaults: the flags a user leaves unset are derived from the usable cores.

TF Serving's own defaults (batching off, TF thread pools sized by TF) made
the README's `serve --model_name=... --model_base_path=...` about 3x slower
than the benchmark's flags on the taxi model. Here a flag that is *not given*
gets the fast value for this machine; a flag that is given keeps TF
Serving's meaning exactly:

* `--enable_batching` unset: batching on with `max_batch_size` 128,
  `batch_timeout_micros` 0 (no waiting: a batch is whatever queued while the
  previous one ran), `max_enqueued_batches` 100 and `num_batch_threads` =
  usable cores - 1 (at least 1; the event loop needs the other core).
  Requests that cannot join a batch (more rows than `max_batch_size`, scalar
  inputs, inputs with unequal 0th dimensions) run on their own, as they would
  unbatched, instead of being refused. `--enable_batching=true` without a
  parameters file keeps TF Serving's defaults; with a file, the file.
  A parameters file with `--enable_batching` unset turns batching on.
* `--tensorflow_intra_op_parallelism` unset: 1 (each batch is small; a
  spinning pool per core steals the event loop's core).
* `--tensorflow_inter_op_parallelism` unset: -1, TF's "run every op in the
  caller's thread": each batch thread (and the shadow worker) runs its graph
  in its own thread, so concurrent calls never queue on one shared pool.
  `--tensorflow_session_parallelism` given: both use it, as in TF Serving.

Usable cores are the CPU affinity set, capped by a cgroup v2 `cpu.max` quota
(a container limited to 1.5 CPUs counts 2). `describe` is logged at start-up.
"""

from __future__ import annotations

import math
import os

from serving.batching import BatchingParameters

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
MAX_BATCH_SIZE = 128
MAX_ENQUEUED_BATCHES = 100


def usable_cores(cpu_max_path: str = CGROUP_CPU_MAX, affinity=None) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 quota.

    Args:
      cpu_max_path: the cgroup v2 `cpu.max` file ("<quota> <period>" or "max <period>").
      affinity: the CPU set (default: `os.sched_getaffinity(0)`).
    """
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except AttributeError:  # not Linux
            affinity = range(os.cpu_count() or 1)
    cores = max(1, len(affinity))
    try:
        with open(cpu_max_path) as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def batching_for(cores: int) -> BatchingParameters:
    """The derived batching parameters for `cores` usable cores."""
    return BatchingParameters(
        max_batch_size=MAX_BATCH_SIZE,
        batch_timeout_micros=0,
        max_enqueued_batches=MAX_ENQUEUED_BATCHES,
        num_batch_threads=max(1, cores - 1),
        run_unbatchable_alone=True,
    )


def apply(args, cores: int) -> list[str]:
    """Fills the unset (None) flags of `args` in place; returns what was derived.

    Sets `args.derived_batching` to the derived `BatchingParameters` when
    batching was turned on here (None otherwise: TF Serving's meaning).
    """
    derived = []
    args.derived_batching = None
    if args.enable_batching is None:
        args.enable_batching = True
        if not args.batching_parameters_file:
            args.derived_batching = batching_for(cores)
            p = args.derived_batching
            derived.append(
                f"batching on (max_batch_size {p.max_batch_size}, batch_timeout_micros "
                f"{p.batch_timeout_micros}, max_enqueued_batches {p.max_enqueued_batches}, "
                f"num_batch_threads {p.num_batch_threads})"
            )
        else:
            derived.append(f"batching on ({args.batching_parameters_file})")
    session = args.tensorflow_session_parallelism
    if args.tensorflow_intra_op_parallelism is None:
        args.tensorflow_intra_op_parallelism = session or 1
        derived.append(f"TF intra-op threads {args.tensorflow_intra_op_parallelism}")
    if args.tensorflow_inter_op_parallelism is None:
        args.tensorflow_inter_op_parallelism = session or -1
        derived.append(
            f"TF inter-op threads {args.tensorflow_inter_op_parallelism}"
            + (" (ops run in the calling thread)" if not session else "")
        )
    return derived


def describe(cores: int, derived: list[str]) -> str:
    """The start-up log line."""
    if not derived:
        return f"{cores} usable core(s); every performance flag was given explicitly"
    return f"{cores} usable core(s); defaults for the flags not given: " + "; ".join(derived)
