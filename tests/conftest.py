"""Shared test set-up: legacy Keras for TF 2.16, quiet logs, tiers, one pipeline run.

``taxi_run`` runs the real pipeline once per test session on a small sample
of the bundled data (three spans of 400 rows), then once more with
``--force`` (all cache hits), and is shared by every end-to-end test
(pipeline, serving, monitoring). Tests must not change it (checked at the end
of the session): they work on copies (``copy_of``).

Tiers (markers ``unit``, ``integration``, ``e2e``, set here from the
``slow``/``e2e`` marks; a test using a server fixture is ``slow``, one using a
pipeline run is ``e2e``): ``e2e`` runs the pipeline, ``integration`` is
``slow`` (servers, subprocesses, > 1 s), ``unit`` is everything else. With
``TAXI_TEST_TIER=unit`` (``make test-unit``) a unit test that starts a
process, forks, opens a socket or launches a TFX component fails.

Under ``CI=true`` a skipped test is a failure: CI must not pass because a
dependency was missing.
"""

import hashlib
import os
import shutil
import socket

import pytest

import core.env  # noqa: F401 - legacy Keras before any test imports TensorFlow

# isort: split

from taxi_runs import shared_run

# Processes started by tests or by the code under test (servers, pipelines,
# CLIs) import this checkout's packages, as the tests do, whichever copy is installed.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [CHECKOUT, os.environ.get("PYTHONPATH")]))

REUSE_RUN_ENV = "TAXI_TEST_RUN"


def _run_state(output_dir: str) -> dict:
    """What a test must not change in the shared run: MLMD and the served versions."""
    metadata = os.path.join(output_dir, "metadata.sqlite")
    with open(metadata, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    serving = os.path.join(output_dir, "serving", "taxi")
    return {"metadata.sqlite": digest, "served versions": sorted(os.listdir(serving))}


@pytest.fixture(scope="session")
def taxi_run(tmp_path_factory):
    """The shared run (``taxi_runs.shared_run``): paths and the runner's outputs.

    Read-only: a test that changes its MLMD store or serving dir
    fails the session (at teardown). ``TAXI_TEST_RUN=<dir>`` reuses a run made
    by ``python tests/taxi_runs.py <dir>`` (to iterate on e2e tests quickly).
    """
    reuse = os.environ.get(REUSE_RUN_ENV)
    if reuse:
        run = {"root": reuse, "data_dir": os.path.join(reuse, "data")}
        run["output_dir"] = os.path.join(reuse, "out")
        for name in ("stdout", "forced_stdout"):
            with open(os.path.join(reuse, f"{name}.txt")) as f:
                run[name] = f.read()
    else:
        run = shared_run(str(tmp_path_factory.mktemp("taxi_run")))
    output_dir = run["output_dir"]
    before = _run_state(output_dir)
    yield {
        **run,
        "metadata": os.path.join(output_dir, "metadata.sqlite"),
        "serving_dir": os.path.join(output_dir, "serving", "taxi"),
    }
    assert _run_state(output_dir) == before, "a test changed the shared taxi_run (use a copy)"


@pytest.fixture
def copy_of(tmp_path):
    """Copies a directory into this test's tmp dir (runs must not share state)."""

    def copy(source: str, name: str) -> str:
        target = str(tmp_path / name)
        shutil.copytree(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def mariadb():
    """A MariaDB server for the session (tests/mariadb_server.py); each test uses its own
    database (`mariadb.url()`). Skipped where MariaDB is not installed."""
    from mariadb_server import MariaDB, binaries

    if binaries() is None:
        pytest.skip("MariaDB is not installed (scripts/setup.sh --browser installs it)")
    server = MariaDB().start()
    yield server
    server.stop()


TIER_ENV = "TAXI_TEST_TIER"
_CALL_FAILED = pytest.StashKey[bool]()


# A test that uses one of these fixtures is marked ``slow`` (and ``e2e``) here.
SERVER_FIXTURES = {"start_server", "contract_server", "rest_url", "grpc_target"}
PIPELINE_FIXTURES = {"taxi_run", "pipeline_runs"}


def _tier(item) -> str:
    if "e2e" in item.keywords:
        return "e2e"
    return "integration" if "slow" in item.keywords else "unit"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks each test with its tier, before ``-m`` selects on it."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & PIPELINE_FIXTURES and "e2e" not in item.keywords:
            item.add_marker("e2e")
        if fixtures & (SERVER_FIXTURES | PIPELINE_FIXTURES) and "slow" not in item.keywords:
            item.add_marker("slow")
        item.add_marker(_tier(item))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true``, a skip is reported as a failure (no silent skips in CI)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which fails the run: {reason}"


class _Forbidden:
    """Replaces a callable; each call is recorded and raises."""

    def __init__(self, what: str, calls: list):
        self.what, self.calls = what, calls

    def __call__(self, *args, **kwargs):
        self.calls.append(self.what)
        raise RuntimeError(
            f"{TIER_ENV}=unit: this test {self.what}; mark it @pytest.mark.slow (integration)"
        )


_unit_violations: list = []


@pytest.fixture(scope="session", autouse=True)
def _unit_tier_guard():
    """With TAXI_TEST_TIER=unit: no subprocess, fork, socket or TFX component launch."""
    if os.environ.get(TIER_ENV) != "unit":
        yield
        return
    import _posixsubprocess

    import matplotlib.font_manager  # noqa: F401 - builds its font cache once (runs fc-list)
    from tfx.orchestration.portable import launcher

    forbidden = [
        (_posixsubprocess, "fork_exec", "starts a process"),  # subprocess, multiprocessing
        (os, "fork", "forks"),
        (os, "forkpty", "forks"),
        (os, "posix_spawn", "starts a process"),
        (os, "posix_spawnp", "starts a process"),
        (socket.socket, "bind", "binds a socket (a server)"),
        (socket.socket, "connect", "connects to a socket"),
        (launcher.Launcher, "launch", "launches a TFX component (a pipeline run)"),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, what in forbidden:
            patch.setattr(owner, name, _Forbidden(what, _unit_violations))
        yield


@pytest.fixture(autouse=True)
def _unit_tier_check(_unit_tier_guard, request):
    """Fails a unit test that tried a forbidden call, even if the code caught the error."""
    del _unit_violations[:]
    yield
    if _unit_violations and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail(f"{TIER_ENV}=unit: this test {', '.join(sorted(set(_unit_violations)))}")


def pytest_terminal_summary(terminalreporter, config):
    """Prints the order's seed again at the end when the order was shuffled."""
    seed = getattr(config.option, "random_order_seed", None) or "default:"
    if not seed.startswith("default:"):
        terminalreporter.write_line(f"test order seed: {seed} (replay: make test SEED={seed})")
