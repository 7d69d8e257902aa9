"""The package works from a wheel, outside the checkout.

The wheel is built from a copy of the sources, installed with
``pip install --target``, and used by a fresh interpreter whose only project
code is that install (``PYTHONPATH=<target>``, cwd an empty folder): every
module imports from there, the bundled data are real files there, and a
server started through ``serving.process`` (no ``PYTHONPATH`` of its own)
answers a prediction.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("setup.py", "pyproject.toml", "data", "core", "pipeline", "components")
SOURCES += ("serving", "monitoring", "reporting", "lineage")

PROBE = r"""
import importlib, importlib.util, json, os, pkgutil, sys

target, model_base, log_path = sys.argv[1:4]
packages = sorted(
    name for name in os.listdir(target)
    if os.path.isfile(os.path.join(target, name, "__init__.py"))
)
files = {}
for package in packages:
    module = importlib.import_module(package)
    files[package] = module.__file__
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.endswith(".__main__"):  # runs its command on import: located, not run
            files[info.name] = importlib.util.find_spec(info.name).origin
            continue
        files[info.name] = importlib.import_module(info.name).__file__

from core import resources
from monitoring import drift_thresholds
from serving.process import ServerProcess
import requests

with ServerProcess(["--model_name=hpt", f"--model_base_path={model_base}"], log_path) as server:
    problem = server.wait_available("hpt", 180)
    answer = requests.post(
        f"{server.url}/v1/models/hpt:predict", json={"instances": [[1.0], [3.0]]}, timeout=60
    ).json() if not problem else None
    server.stop(timeout=120)

print(json.dumps({
    "packages": packages,
    "files": files,
    "data_root": resources.data_root(),
    "spans": sorted(os.listdir(resources.data_root())),
    "schema": os.path.join(resources.schema_dir(), "schema.pbtxt"),
    "run_dir": resources.default_run_dir(),
    "null_table": drift_thresholds.NULL_TABLE,
    "problem": problem,
    "answer": answer,
    "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"),
}))
"""


def _model_factory():
    path = os.path.join(CHECKOUT, "tests", "serving", "model_factory.py")
    spec = importlib.util.spec_from_file_location("wheel_model_factory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    shown = " ".join(c if len(c) < 200 else "<script>" for c in map(str, command))
    assert done.returncode == 0, f"{shown}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(target dir, wheel path): the wheel built from a copy of the sources, installed."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = os.path.join(CHECKOUT, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        elif os.path.exists(path):
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root), "."], cwd=source
    )
    (wheel,) = root.glob("*.whl")
    target = root / "target"
    _run([*pip, "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    return str(target), str(wheel)


def test_the_installed_wheel_imports_finds_its_data_and_serves(installed, tmp_path):
    target, _ = installed
    model_base = str(tmp_path / "hpt")
    _model_factory().save_half_plus_two(os.path.join(model_base, "1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env["PYTHONPATH"] = target  # the install only: not the checkout
    done = _run(
        [sys.executable, "-c", PROBE, target, model_base, str(tmp_path / "server.log")],
        cwd=elsewhere,
        env=env,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert {"core", "serving", "pipeline", "components", "monitoring", "reporting"} <= set(
        seen["packages"]
    )
    assert len(seen["files"]) > 60  # every module of every package imported
    outside = {name: f for name, f in seen["files"].items() if not f.startswith(target + os.sep)}
    assert outside == {}

    assert seen["data_root"] == os.path.join(target, "core", "data", "taxi")
    assert seen["spans"] == ["span-2013", "span-2014", "span-2015", "span-2016"]
    assert not os.path.islink(os.path.join(target, "core", "data"))  # files, not the link
    for span in seen["spans"]:
        copied = os.path.join(seen["data_root"], span, "data.csv")
        with (
            open(copied, "rb") as f,
            open(os.path.join(CHECKOUT, "data", "taxi", span, "data.csv"), "rb") as g,
        ):
            assert f.read() == g.read()
    assert os.path.isfile(seen["schema"]) and seen["schema"].startswith(target)
    assert seen["null_table"] == os.path.join(target, "monitoring", "drift_null.json")
    assert os.path.isfile(seen["null_table"])
    assert seen["run_dir"] == str(elsewhere / "tfx_runs")
    assert seen["legacy_keras"] == "1"  # set by core.env on import, not by the caller

    assert seen["problem"] == "", open(tmp_path / "server.log").read()[-3000:]
    assert seen["answer"] == {"predictions": [[2.5], [3.5]]}


def test_the_wheel_holds_the_packages_and_data_but_no_tests(installed):
    import zipfile

    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "core/resources.py" in names and "serving/server.py" in names
    assert "core/data/schema/schema.pbtxt" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "scripts/", "data/"))]
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    with zipfile.ZipFile(wheel) as z:
        scripts = z.read(entry_points[0]).decode()
    for line in scripts.splitlines():
        if "=" in line:
            module = line.split("=", 1)[1].strip().split(":")[0]
            assert (
                module.replace(".", "/") + ".py" in names
                or module.replace(".", "/") + "/__init__.py" in names
            ), line
