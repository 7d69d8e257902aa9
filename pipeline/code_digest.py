"""Code fingerprints derived from what a node's code really imports.

TFX caches an execution on its inputs and exec properties, not on the code
it runs: neither the code our Transform, Trainer, Tuner and ModelSelection
run by dotted path (``components.model.run_fn``) nor the executors of our
custom components (their executor spec names a class, not its source). The
runner puts a digest of that code into each node's exec properties so that an
edit re-runs the node. A hand-written list of files goes stale (it once omitted
``components/spans.py``, whose span order changes the model, so editing it
gave a stale cache hit). Here the digest covers the transitive closure of the
project's own modules that the entry modules import, found by reading their
``import`` statements with :mod:`ast` (nothing is imported or executed).

Imports of third-party packages are not followed: their versions are pinned
by ``requirements/lock.txt``. The project's packages are found where Python
imports them from (``package_dir``), a checkout or an installed wheel alike.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import os

# The project's top-level packages (first-party imports are followed).
FIRST_PARTY = ("core", "components", "pipeline", "serving", "lineage", "monitoring", "reporting")

# Entry modules per node: the executor module and the module functions it
# calls (tests/pipeline/test_pipeline_construction.py checks that each custom
# node's executor class is covered).
NODE_ENTRY_MODULES = {
    # TFX's Transform, Trainer and Tuner with our executors' span order, running
    # our module functions; ModelSelection is ours.
    "transform": ("components.span_order", "components.preprocessing"),
    "trainer": ("components.span_order", "components.model"),
    "tuner": ("components.span_order", "components.tuning"),
    "selection": ("components.model_selection.component",),
    # Our class- and function-based components: their executors. InfraCanary
    # also runs ``python -m serving.server`` in a child process, which no
    # import statement shows.
    "example_gen": ("components.example_gen.executor",),
    "statistics_gen": ("components.statistics_gen.executor",),
    "evaluator": ("components.evaluator.executor",),
    "anomalies_gate": ("components.anomalies_gate.component",),
    "behavioral": ("components.behavioral.component",),
    "infra_canary": ("components.infra_canary.executor", "serving.server"),
    "pusher": ("components.pusher.executor",),
}


@functools.cache
def package_dir(package: str) -> str:
    """The folder of the top-level ``package``, as Python imports it (without running it).

    Raises:
      ModuleNotFoundError: ``package`` is not importable.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package!r} is not an importable package")
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def _package_parent(root: str | None, package: str) -> str | None:
    """The folder ``package`` is in: ``root`` if given, else where it is imported from.

    None if ``root`` is None and ``package`` is not importable.
    """
    if root is not None:
        return root
    try:
        return os.path.dirname(package_dir(package))
    except ModuleNotFoundError:
        return None


def _module_file(root: str | None, dotted: str) -> str | None:
    """The source file of ``dotted`` (module or package), if any.

    ``root`` is the folder the project's packages are in; None means the
    packages Python imports.
    """
    parent = _package_parent(root, dotted.split(".")[0])
    if parent is None:
        return None
    base = os.path.join(parent, *dotted.split("."))
    if os.path.isfile(base + ".py"):
        return base + ".py"
    init = os.path.join(base, "__init__.py")
    return init if os.path.isfile(init) else None


def _with_parents(dotted: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__``."""
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports(path: str, dotted: str, is_package: bool) -> list[str]:
    """Dotted names a module's import statements may load (module or attribute)."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    package = dotted if is_package else dotted.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.append(base)
            # `from pkg import name`: name may be a submodule.
            names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def module_closure(root: str | None, entries: tuple[str, ...] | list[str]) -> dict[str, str]:
    """First-party modules reachable from ``entries``: dotted name -> file path.

    Raises:
      FileNotFoundError: an entry module has no source file under ``root``.
    """
    found: dict[str, str] = {}
    pending = []
    for entry in entries:
        if _module_file(root, entry) is None:
            raise FileNotFoundError(f"entry module {entry!r} has no source file under {root}")
        pending.extend(_with_parents(entry))
    while pending:
        dotted = pending.pop()
        if dotted in found or dotted.split(".")[0] not in FIRST_PARTY:
            continue
        path = _module_file(root, dotted)
        if path is None:  # an attribute (`from pkg import function`), not a module
            continue
        found[dotted] = path
        is_package = path.endswith("__init__.py")
        for name in _imports(path, dotted, is_package):
            if name:
                pending.extend(_with_parents(name))
    return found


def fingerprint(root: str | None, entries: tuple[str, ...] | list[str]) -> str:
    """16-hex-digit digest of the sources (names and bytes) of ``entries``' closure."""
    digest = hashlib.sha256()
    for dotted, path in sorted(module_closure(root, entries).items()):
        with open(path, "rb") as f:
            digest.update(dotted.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:16]


def node_fingerprints(root: str | None = None) -> dict[str, str]:
    """Fingerprint per node of :data:`NODE_ENTRY_MODULES`.

    ``root`` is the folder the project's packages are in (a test's copy of
    the tree); None, the default, means the packages Python imports.
    """
    return {node: fingerprint(root, entries) for node, entries in NODE_ENTRY_MODULES.items()}


# Packages whose code a run executes (pipeline, components, the server they start).
SOURCE_PACKAGES = ("core", "pipeline", "components", "serving", "lineage", "reporting")


def source_digest(packages: tuple[str, ...] = SOURCE_PACKAGES) -> str:
    """16-hex-digit digest of every ``.py`` file of ``packages`` (the run-level cache).

    A package that is not importable (not part of this tree) has nothing to digest.
    """
    digest = hashlib.sha256()
    for package in packages:
        try:
            top = package_dir(package)
        except ModuleNotFoundError:
            continue
        parent = os.path.dirname(top)
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    digest.update(os.path.relpath(path, parent).encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]
