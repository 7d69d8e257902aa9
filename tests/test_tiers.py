"""The suite's own rules (tests/conftest.py): tiers, the unit-tier guard, no skips under CI."""

import os

import matplotlib.font_manager  # noqa: F401 - see below
import pytest
from tfx.orchestration.portable import launcher  # noqa: F401 - see below

# The unit-tier guard (tests/conftest.py) imports TFX and matplotlib. Run inline by
# pytester, a first import there would be undone afterwards (pytester restores
# sys.modules), and importing TensorFlow / Beam again in this process then fails
# ("already in the pool") or aborts it. Imported here, they stay imported.
pytest_plugins = ["pytester"]

CONFTEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")

TESTS = """
import os
import socket
import subprocess

import pytest


def test_plain():
    assert True


def test_starts_a_process():
    subprocess.run(["true"], check=True)


def test_hides_the_error():
    try:
        os.fork()
    except RuntimeError:
        pass


def test_binds_a_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))


@pytest.mark.slow
def test_slow():
    assert True


@pytest.mark.e2e
def test_e2e():
    assert True


def test_uses_a_server(rest_url):
    assert rest_url


@pytest.fixture
def rest_url():
    return "http://127.0.0.1:1"


def test_skips():
    pytest.skip("no chromium here")
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """A tiny suite under the project's conftest, without CI or a tier set."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TAXI_TEST_TIER", raising=False)
    with open(CONFTEST) as f:
        pytester.makeconftest(f.read())
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def _names(result, outcome):
    return sorted(
        r.nodeid.split("::")[-1]
        for r in result.getreports("pytest_runtest_logreport")
        if r.when == "call" and getattr(r, outcome)
    )


@pytest.mark.parametrize(
    "tier, expected",
    [
        (
            "unit",
            [
                "test_binds_a_socket",
                "test_hides_the_error",
                "test_plain",
                "test_skips",
                "test_starts_a_process",
            ],
        ),
        ("integration", ["test_slow", "test_uses_a_server"]),
        ("e2e", ["test_e2e"]),
    ],
)
def test_each_test_is_in_exactly_one_tier(suite, tier, expected):
    result = suite.inline_run("-m", tier, "--co")
    assert (
        sorted(i.name for i in result.getcalls("pytest_collection_finish")[0].session.items)
        == expected
    )


def test_unit_tier_fails_processes_forks_and_sockets_even_when_caught(suite, monkeypatch):
    monkeypatch.setenv("TAXI_TEST_TIER", "unit")
    result = suite.inline_run("-m", "unit", "-k", "not skips")
    failed = {r.nodeid.split("::")[-1] for r in result.getfailures()}
    assert failed == {"test_starts_a_process", "test_hides_the_error", "test_binds_a_socket"}
    assert "test_plain" in _names(result, "passed")
    assert "forks" in str([r.longrepr for r in result.getfailures() if "hides" in r.nodeid])


def test_a_skip_fails_under_ci(suite, monkeypatch):
    result = suite.inline_run("-k", "skips")
    assert _names(result, "skipped") == ["test_skips"]
    monkeypatch.setenv("CI", "true")
    result = suite.inline_run("-k", "skips")
    [failure] = result.getfailures()
    assert "skipped under CI=true" in str(failure.longrepr)
    assert "no chromium here" in str(failure.longrepr)
