"""The monitoring library imports no higher layer, and its apps do not import each other."""

import ast
import os

import pytest

MONITORING = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "monitoring"
)
APPS = {"scenario", "cli"}  # the app layer of the package


def _imports(path: str) -> set[str]:
    """Every module a file imports (`from a import b` counts as `a` and `a.b`)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _forbidden(module: str) -> bool:
    top = module.split(".")[0]
    if top in ("reporting", "components", "pipeline"):
        return True
    return module.startswith(("monitoring.cli", "monitoring.scenario"))


LIBRARY = sorted(
    name for name in os.listdir(MONITORING) if name.endswith(".py") and name not in APPS
)


@pytest.mark.parametrize("name", LIBRARY)
def test_library_module_imports_no_higher_layer(name):
    bad = sorted(m for m in _imports(os.path.join(MONITORING, name)) if _forbidden(m))
    assert not bad, f"monitoring/{name} imports {bad}"


def test_scenario_and_cli_do_not_import_each_other_both_ways():
    folder = os.path.join(MONITORING, "scenario")
    for name in os.listdir(folder):
        if name.endswith(".py"):
            modules = _imports(os.path.join(folder, name))
            assert not [m for m in modules if m.startswith("monitoring.cli")], name
    for name in os.listdir(os.path.join(MONITORING, "cli")):
        if name.endswith(".py") and name != "__init__.py":  # __init__ registers the scenario
            modules = _imports(os.path.join(MONITORING, "cli", name))
            assert not [m for m in modules if m.startswith("monitoring.scenario")], name
