"""Beam flags and worker processes: decided without a pipeline run."""

import os

import pytest

from pipeline import beam_setup, code_digest, configs

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_in_memory_mode_names_the_project_setup_file():
    args = beam_setup.beam_args("in_memory", [])
    assert args[: len(configs.BEAM_ARGS_IN_MEMORY)] == configs.BEAM_ARGS_IN_MEMORY
    setup = [a for a in args if a.startswith("--setup_file=")]
    assert setup == [f"--setup_file={os.path.join(CHECKOUT, 'setup.py')}"]
    assert os.path.isfile(setup[0].split("=", 1)[1])


def test_setup_file_is_found_next_to_the_imported_packages(tmp_path, monkeypatch):
    # Installed from a wheel: no setup.py beside the packages, so none is named
    # (TFX then stages its own sdist) and a remote runner's sdist cannot be built.
    installed = tmp_path / "site-packages" / "pipeline"
    installed.mkdir(parents=True)
    monkeypatch.setattr(code_digest, "package_dir", lambda name: str(installed))
    assert beam_setup.setup_file() is None
    assert not [a for a in beam_setup.beam_args("in_memory", []) if "--setup_file" in a]
    with pytest.raises(FileNotFoundError, match="--extra_package"):
        beam_setup.build_package(str(tmp_path / "dist"))
    (tmp_path / "site-packages" / "setup.py").write_text("")
    assert beam_setup.setup_file() == str(tmp_path / "site-packages" / "setup.py")


def test_multi_processing_mode_and_extra_flags_are_kept():
    args = beam_setup.beam_args("multi_processing", ["--direct_num_workers=2"])
    assert configs.BEAM_ARGS_MULTI_PROCESS[0] in args
    assert args.index("--direct_num_workers=2") > args.index(configs.BEAM_ARGS_MULTI_PROCESS[-1])


def test_a_user_dependency_flag_is_not_overridden():
    for flag in (
        "--setup_file=/x/setup.py",
        "--extra_package=/x/p.tar.gz",
        "--requirements_file=r",
    ):
        args = beam_setup.beam_args("in_memory", [flag])
        assert flag in args
        assert not [a for a in args if a.startswith("--setup_file=") and a != flag]


def test_tfx_does_not_build_its_ephemeral_package_with_these_flags(monkeypatch):
    from tfx.utils import dependency_utils

    def fail():
        raise AssertionError("TFX would copy itself and run setup.py sdist")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", fail)
    args = beam_setup.beam_args("in_memory", [])
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_worker_processes_default_to_one_per_core_up_to_parallel(monkeypatch):
    monkeypatch.setattr(beam_setup.sys, "platform", "linux")
    monkeypatch.setattr(beam_setup.os, "cpu_count", lambda: 2)
    assert beam_setup.worker_processes(None, parallel=4) == 2
    assert beam_setup.worker_processes(None, parallel=1) == 0  # serial: no workers
    monkeypatch.setattr(beam_setup.os, "cpu_count", lambda: 16)
    assert beam_setup.worker_processes(None, parallel=4) == 4
    assert beam_setup.worker_processes(0, parallel=4) == 0  # asked for threads only
    assert beam_setup.worker_processes(3, parallel=1) == 3


def test_no_default_workers_where_fork_is_unsound(monkeypatch):
    monkeypatch.setattr(beam_setup.sys, "platform", "darwin")
    assert beam_setup.worker_processes(None, parallel=4) == 0
    assert beam_setup.worker_processes(2, parallel=4) == 2  # asked for: the user's call
