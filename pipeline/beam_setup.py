"""Beam flags for the pipeline's Beam components, and how their workers get our code.

``beam_args`` turns a mode ("in_memory" or "multi_processing") and the user's
extra flags into the components' ``beam_pipeline_args``; on a runner other
than the DirectRunner it stages this project as an sdist (``build_package``).
``worker_processes`` decides how many of our own worker processes run Beam
executors (pipeline/worker_processes.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from pipeline import code_digest, configs

# Beam flags that tell workers where the code comes from (TFX checks the same ones).
DEPENDENCY_FLAGS = (
    "--setup_file",
    "--extra_package",
    "--extra_packages",
    "--requirements_file",
    "--sdk_container_image",
    "--worker_harness_container_image",
)

DIRECT_RUNNERS = ("DirectRunner", "direct", "BundleBasedDirectRunner")


def runner_name(extra: list[str]) -> str:
    """The ``--runner`` of the Beam args (the last one wins, as in Beam), default DirectRunner."""
    runner = "DirectRunner"
    for arg in extra:
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
    return runner


def is_direct(extra: list[str]) -> bool:
    """Whether the Beam args run on the local DirectRunner (in this process or its workers)."""
    return runner_name(extra) in DIRECT_RUNNERS


def has_dependency_flag(args: list[str]) -> bool:
    """Whether ``args`` already say how Beam workers get the code."""
    return any(a.split("=", 1)[0] in DEPENDENCY_FLAGS for a in args)


def setup_file() -> str | None:
    """This project's ``setup.py`` when it runs from a source checkout, else None.

    The checkout is the folder the ``pipeline`` package is imported from; an
    installed wheel has no ``setup.py`` next to its packages.
    """
    path = os.path.join(os.path.dirname(code_digest.package_dir("pipeline")), "setup.py")
    return path if os.path.isfile(path) else None


def build_package(directory: str) -> str:
    """This project's sdist, built once into ``directory`` (reused while the source is the same).

    A runner other than the DirectRunner (Beam's portable job service, Flink,
    Spark, Dataflow) runs the executors' code on its workers, so the code must
    be staged. Naming ``setup.py`` as ``--setup_file`` would make every Beam
    executor build its own sdist in the checkout -- side by side when
    components run in parallel, which races on the egg-info files.

    Raises:
      FileNotFoundError: not running from a source checkout (no ``setup.py``).
    """
    setup = setup_file()
    if setup is None:
        raise FileNotFoundError(
            "no setup.py next to the installed packages to build an sdist from: "
            "pass --beam-arg=--extra_package=<this project's wheel or sdist>"
        )
    target = os.path.join(directory, f"taxi_mlops-{code_digest.source_digest()}.tar.gz")
    if os.path.exists(target):
        return target
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        subprocess.run(
            [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", tmp],
            cwd=os.path.dirname(setup),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        (built,) = os.listdir(tmp)
        os.replace(os.path.join(tmp, built), target)
    return target


def beam_args(mode: str, extra: list[str], package_dir: str | None = None) -> list[str]:
    """Beam flags for ``mode`` ("in_memory" or "multi_processing") plus ``extra``.

    Unless ``extra`` already says how workers get the code: on the
    DirectRunner this project's ``setup.py`` is named as the
    ``--setup_file``, which stops every TFX Beam executor from copying the
    installed ``tfx`` package and building a throw-away sdist of it (1.5-2 s
    per executor, about a dozen executors in a cold run) -- work the local
    DirectRunner never uses. (Installed from a wheel there is no
    ``setup.py``; TFX then builds its sdist as usual.) On any other runner
    the sdist is built once (``build_package`` into ``package_dir``) and
    staged as ``--extra_package``; the DirectRunner-only flags of ``mode``
    are left out.

    Raises:
      ValueError: a runner other than the DirectRunner and no ``package_dir``.
    """
    base = configs.BEAM_ARGS_IN_MEMORY if mode == "in_memory" else configs.BEAM_ARGS_MULTI_PROCESS
    direct = is_direct(extra)
    if not direct:
        base = [a for a in base if not a.startswith("--direct_")]
    args = [*base, *extra]
    if not has_dependency_flag(args):
        if direct:
            setup = setup_file()
            if setup is not None:
                args.append(f"--setup_file={setup}")
        else:
            if package_dir is None:
                raise ValueError(f"runner {runner_name(extra)} needs a package_dir for the sdist")
            args.append(f"--extra_package={build_package(package_dir)}")
    return args


def worker_processes(requested: int | None, parallel: int) -> int:
    """Worker processes for Beam executors: ``requested``, else one per core up to ``parallel``.

    One component at a time (``parallel`` 1) gains nothing from a worker, so
    the default is then none. Workers are forked from a process that has
    imported TF, which is only sound on Linux: elsewhere the default is none.
    """
    if requested is not None:
        return requested
    if parallel <= 1 or not sys.platform.startswith("linux"):
        return 0
    return min(parallel, os.cpu_count() or 1)
