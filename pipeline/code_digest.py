"""Code fingerprints derived from what a node's code really imports.

TFX caches an execution on its inputs and exec properties. Our Transform,
Trainer, Tuner and ModelSelection run code referenced by dotted path
(``components.model.run_fn``), which TFX does not hash; the runner puts a
digest of that code into each node's properties so that an edit re-runs the
node. A hand-written list of files goes stale (it once omitted
``components/spans.py``, whose span order changes the model, so editing it
gave a stale cache hit). Here the digest covers the transitive closure of the
project's own modules that the entry modules import, found by reading their
``import`` statements with :mod:`ast` (nothing is imported or executed).

Imports of third-party packages are not followed: their versions are pinned
by ``requirements/lock.txt``.
"""

from __future__ import annotations

import ast
import hashlib
import os

# The project's top-level packages (first-party imports are followed).
FIRST_PARTY = ("components", "pipeline", "serving", "monitoring", "reporting", "lineage")

# Entry modules per node: the executor module and the module functions it calls.
NODE_ENTRY_MODULES = {
    "transform": ("components.span_order", "components.preprocessing"),
    "trainer": ("components.span_order", "components.model"),
    "tuner": ("components.span_order", "components.tuning"),
    "selection": ("components.model_selection.component",),
}


def _module_file(root: str, dotted: str) -> str | None:
    """The source file of ``dotted`` under ``root`` (module or package), if any."""
    base = os.path.join(root, *dotted.split("."))
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


def module_closure(root: str, entries: tuple[str, ...] | list[str]) -> dict[str, str]:
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


def fingerprint(root: str, entries: tuple[str, ...] | list[str]) -> str:
    """16-hex-digit digest of the sources (names and bytes) of ``entries``' closure."""
    digest = hashlib.sha256()
    for dotted, path in sorted(module_closure(root, entries).items()):
        with open(path, "rb") as f:
            digest.update(dotted.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:16]


def node_fingerprints(root: str) -> dict[str, str]:
    """Fingerprint per node of :data:`NODE_ENTRY_MODULES` for the tree at ``root``."""
    return {node: fingerprint(root, entries) for node, entries in NODE_ENTRY_MODULES.items()}
