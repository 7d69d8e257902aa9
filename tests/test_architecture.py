"""The structure ARCHITECTURE.md describes, checked on the source text.

Nothing is imported: each module is parsed (``ast``) and every ``import`` /
``from ... import`` in it counts, at module level or inside a function.

* A library module imports only its own package or lower layers (LAYERS).
  Apps (APP_PATTERNS: command lines, runners, the scenario) may import anything.
* No two project modules import each other.
* No non-test module is over MAX_LINES lines unless its docstring has a line
  starting ``Over 400 lines:`` that says why.

The KNOWN_* sets are accepted exceptions, each with its reason; they are empty.
An entry that no longer occurs fails too, so the sets only shrink.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import os

import pytest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Low to high; a module may import its own package or a package of a lower layer.
LAYERS = {
    "core": 0,
    "serving": 1,
    "lineage": 1,
    "monitoring": 2,
    "components": 3,
    "reporting": 4,
    "pipeline": 5,
}
# Entry points (paths relative to the checkout): they may import any layer.
APP_PATTERNS = (
    "*/cli.py",
    "*/cli/*.py",
    "*/__main__.py",
    "*_cli.py",
    "pipeline/local_runner.py",
    "pipeline/kubeflow_runner.py",
    "monitoring/scenario/*.py",
)
# Folders of non-package code whose sizes are checked too.
TOOL_DIRS = ("bench", "scripts")
MAX_LINES = 400
REASON = "Over 400 lines:"

# (importer, imported) module pairs allowed to break the layering: none. Add one only with
# the reason next to it, and remove it when the reason is gone (a stale entry fails).
KNOWN_LAYER_VIOLATIONS: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[tuple[str, str]] = set()
# Non-test modules over MAX_LINES without a reason at their top: none (same rule).
KNOWN_OVERSIZE: set[str] = set()


def project_modules(root: str, packages=tuple(LAYERS)) -> dict[str, str]:
    """Dotted module name -> file, for every ``.py`` of the layered packages under ``root``."""
    modules = {}
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def _resolve(name: str, modules: dict) -> str | None:
    """The project module ``name`` means: itself, else its nearest existing parent."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _statements(nodes):
    """Every statement, nested ones too (in functions, classes, if/try/with blocks)."""
    for node in nodes:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, ()))


def imports_of(module: str, path: str, modules: dict) -> set[str]:
    """The project modules that ``module`` imports anywhere in its source."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names = []
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # ``from pkg import sub`` imports the module pkg.sub when there is one.
            names += [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
    found = {_resolve(name, modules) for name in names}
    return {target for target in found if target and target != module}


def is_app(module: str, modules: dict, root: str) -> bool:
    relative = os.path.relpath(modules[module], root).replace(os.sep, "/")
    return any(fnmatch.fnmatch(relative, pattern) for pattern in APP_PATTERNS)


@functools.lru_cache(maxsize=4)  # parsed once per root per session (read-only results)
def import_graph(root: str) -> tuple[dict, dict]:
    modules = project_modules(root)
    return modules, {module: imports_of(module, path, modules) for module, path in modules.items()}


def layer_violations(root: str) -> set[tuple[str, str]]:
    """(importer, imported) where a library module imports a higher layer or a sibling package."""
    modules, graph = import_graph(root)
    found = set()
    for module, targets in graph.items():
        if is_app(module, modules, root):
            continue
        own = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != own and LAYERS[other] >= LAYERS[own]:
                found.add((module, target))
    return found


def mutual_imports(root: str) -> set[tuple[str, str]]:
    """Pairs of modules that import each other (a sorted pair each)."""
    _, graph = import_graph(root)
    return {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if module < target and module in graph.get(target, ())
    }


def oversize_without_reason(root: str) -> set[str]:
    """Non-test modules over MAX_LINES whose docstring gives no reason (paths from ``root``)."""
    paths = list(project_modules(root).values())
    for tools in TOOL_DIRS:
        folder = os.path.join(root, tools)
        if os.path.isdir(folder):
            paths += [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py")]
    found = set()
    for path in paths:
        with open(path) as f:
            source = f.read()
        if source.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(source, path)) or ""
        if not any(line.startswith(REASON) for line in docstring.splitlines()):
            found.add(os.path.relpath(path, root).replace(os.sep, "/"))
    return found


def _check(found: set, known: set, what: str, fix: str) -> None:
    new, gone = sorted(found - known), sorted(known - found)
    message = []
    if new:
        message.append(f"{what} ({fix}):\n  " + "\n  ".join(map(str, new)))
    if gone:
        message.append(
            "no longer found; remove from the KNOWN set:\n  " + "\n  ".join(map(str, gone))
        )
    assert not message, "\n".join(message)


def test_no_library_module_imports_a_higher_layer():
    _check(
        layer_violations(CHECKOUT),
        KNOWN_LAYER_VIOLATIONS,
        "imports of a higher layer or a sibling package",
        "see ARCHITECTURE.md: move the code down, or pass the value in",
    )


def test_no_two_modules_import_each_other():
    _check(
        mutual_imports(CHECKOUT),
        KNOWN_CYCLES,
        "modules that import each other",
        "move what both need into a third module",
    )


def test_no_module_is_over_400_lines_without_a_reason():
    _check(
        oversize_without_reason(CHECKOUT),
        KNOWN_OVERSIZE,
        f"modules over {MAX_LINES} lines",
        f"split them, or add a docstring line starting {REASON!r} that says why",
    )


def test_core_imports_nothing_from_the_project():
    modules, graph = import_graph(CHECKOUT)
    assert {m for m in modules if m.startswith("core")} >= {"core", "core.env", "core.resources"}
    for module, targets in graph.items():
        if module.split(".")[0] == "core":
            assert all(t.split(".")[0] == "core" for t in targets), (module, targets)


def test_every_package_imports_the_environment_bootstrap_first():
    """``import core.env`` is the first import of each package's ``__init__`` (ARCHITECTURE.md)."""
    for package in LAYERS:
        path = os.path.join(CHECKOUT, package, "__init__.py")
        if package == "core" or not os.path.exists(path):
            continue
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        first = next((n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), None)
        assert isinstance(first, ast.Import) and first.names[0].name == "core.env", package


# -- the checks themselves, on a tiny tree --------------------------------------------------


def _tree(root, files: dict) -> str:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_a_new_upward_import_is_found_at_module_level_or_in_a_function(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "serving/__init__.py": "import core.env\n",
            "serving/up.py": "from pipeline import configs\n",
            "serving/late.py": "def f():\n    from monitoring.drift import x\n",
            "serving/ok.py": "from core import resources\nfrom serving import up\n",
            "lineage/__init__.py": "",
            "lineage/side.py": "import serving.ok\n",  # same layer, other package
            "monitoring/__init__.py": "",
            "monitoring/drift.py": "from serving.ok import y\nfrom . import cli\n",
            "monitoring/cli.py": "from pipeline import configs\n",  # an app: allowed
            "pipeline/__init__.py": "",
            "pipeline/configs.py": "from components import features\n",
            "components/__init__.py": "",
            "components/features.py": "",
        },
    )
    assert layer_violations(root) == {
        ("serving.up", "pipeline.configs"),
        ("serving.late", "monitoring.drift"),
        ("lineage.side", "serving.ok"),
    }


def test_modules_importing_each_other_are_found_also_through_relative_imports(tmp_path):
    root = _tree(
        tmp_path,
        {
            "monitoring/__init__.py": "",
            "monitoring/a.py": "def f():\n    from monitoring import b\n",
            "monitoring/b.py": "from .a import f\n",
            "monitoring/c.py": "from monitoring import a\n",
        },
    )
    assert mutual_imports(root) == {("monitoring.a", "monitoring.b")}


def test_a_long_module_needs_a_reason_line_in_its_docstring(tmp_path):
    body = "x = 1\n" * MAX_LINES
    root = _tree(
        tmp_path,
        {
            "serving/__init__.py": "",
            "serving/long.py": '"""Long."""\n' + body,
            "serving/said.py": f'"""Long.\n\n{REASON} one table of 400 cases.\n"""\n' + body,
            "serving/short.py": '"""Short."""\n' + "x = 1\n" * (MAX_LINES - 1),
            "bench/bench_long.py": body + "y = 2\n",
        },
    )
    assert oversize_without_reason(root) == {"serving/long.py", "bench/bench_long.py"}


@pytest.mark.parametrize(
    "relative, app",
    [
        ("monitoring/cli.py", True),
        ("monitoring/cli/window.py", True),
        ("reporting/model_card.py", False),
        ("lineage/cli.py", True),
        ("pipeline/local_runner.py", True),
        ("monitoring/scenario/replay.py", True),
        ("monitoring/drift.py", False),
        ("serving/client.py", False),
    ],
)
def test_apps_are_the_entry_points(tmp_path, relative, app):
    root = _tree(tmp_path, {relative: ""})
    modules = project_modules(root)
    module = relative[: -len(".py")].replace("/", ".").removesuffix(".__init__")
    assert is_app(module, modules, root) is app
