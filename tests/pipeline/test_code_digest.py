"""Code fingerprints follow the modules a node's code really imports."""

import os
import shutil

import pytest

from pipeline import code_digest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The nodes that read the spans' examples in span order.
SPAN_READERS = ("transform", "trainer", "tuner", "selection")


def _write(root, relpath, text):
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path)
    _write(root, "components/__init__.py", "")
    _write(root, "components/entry.py", "import numpy\nfrom components import helper\n")
    _write(root, "components/helper.py", "def f():\n    from .deep.leaf import g\n    return g\n")
    _write(root, "components/deep/__init__.py", "X = 1\n")
    _write(root, "components/deep/leaf.py", "def g():\n    return 1\n")
    _write(root, "components/unrelated.py", "Y = 2\n")
    return root


def test_closure_follows_absolute_relative_and_function_level_imports(tree):
    closure = code_digest.module_closure(tree, ["components.entry"])
    assert sorted(closure) == [
        "components",
        "components.deep",
        "components.deep.leaf",
        "components.entry",
        "components.helper",
    ]


def test_an_edit_to_a_transitive_import_changes_the_fingerprint(tree):
    before = code_digest.fingerprint(tree, ["components.entry"])
    _write(tree, "components/unrelated.py", "Y = 3\n")
    assert code_digest.fingerprint(tree, ["components.entry"]) == before
    _write(tree, "components/deep/leaf.py", "def g():\n    return 2\n")
    assert code_digest.fingerprint(tree, ["components.entry"]) != before
    _write(tree, "components/deep/__init__.py", "X = 2\n")
    assert len({before, code_digest.fingerprint(tree, ["components.entry"])}) == 2


def test_a_missing_entry_module_is_named(tree):
    with pytest.raises(FileNotFoundError, match="components.nope"):
        code_digest.fingerprint(tree, ["components.nope"])


def test_every_node_covers_the_span_order_it_trains_on():
    # components/spans.py decides the order the spans are read in, which changes
    # the model: the hand-written list this replaced omitted it (a stale cache hit).
    for node in SPAN_READERS:
        closure = code_digest.module_closure(REPO_ROOT, code_digest.NODE_ENTRY_MODULES[node])
        assert "components.spans" in closure, node
        assert "components.features" in closure, node
    trainer = code_digest.module_closure(REPO_ROOT, code_digest.NODE_ENTRY_MODULES["trainer"])
    assert "components.model" in trainer and "components.tuning" not in trainer


def test_editing_spans_py_changes_the_fingerprint_of_every_span_reader(tmp_path):
    root = str(tmp_path)
    # The packages the nodes' code imports (components, core).
    imported = {
        dotted.split(".")[0]
        for entries in code_digest.NODE_ENTRY_MODULES.values()
        for dotted in code_digest.module_closure(REPO_ROOT, entries)
    }
    for package in sorted(imported):
        shutil.copytree(
            os.path.join(REPO_ROOT, package),
            os.path.join(root, package),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    before = code_digest.node_fingerprints(root)
    assert before == code_digest.node_fingerprints(REPO_ROOT)
    with open(os.path.join(root, "components", "spans.py"), "a") as f:
        f.write("\n# an edit\n")
    after = code_digest.node_fingerprints(root)
    changed = {node for node in before if after[node] != before[node]}
    assert changed == set(SPAN_READERS), (before, after)


def test_without_a_root_the_imported_packages_are_digested():
    # The runner passes no root: the packages are found where Python imports
    # them from (here the checkout; in a wheel install, site-packages).
    assert code_digest.package_dir("components") == os.path.join(REPO_ROOT, "components")
    assert code_digest.node_fingerprints() == code_digest.node_fingerprints(REPO_ROOT)
    with pytest.raises(ModuleNotFoundError, match="no_such_package"):
        code_digest.package_dir("no_such_package")
