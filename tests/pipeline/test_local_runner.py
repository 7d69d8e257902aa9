"""Runner helpers that need no pipeline run: Beam flags."""

import os

import pytest

from pipeline import configs, local_runner


def test_in_memory_mode_names_the_project_setup_file():
    args = local_runner.beam_args("in_memory", [])
    assert args[: len(configs.BEAM_ARGS_IN_MEMORY)] == configs.BEAM_ARGS_IN_MEMORY
    setup = [a for a in args if a.startswith("--setup_file=")]
    assert setup == [f"--setup_file={os.path.join(local_runner.REPO_ROOT, 'setup.py')}"]
    assert os.path.isfile(setup[0].split("=", 1)[1])


def test_multi_processing_mode_and_extra_flags_are_kept():
    args = local_runner.beam_args("multi_processing", ["--direct_num_workers=2"])
    assert configs.BEAM_ARGS_MULTI_PROCESS[0] in args
    assert args.index("--direct_num_workers=2") > args.index(configs.BEAM_ARGS_MULTI_PROCESS[-1])


def test_a_user_dependency_flag_is_not_overridden():
    for flag in (
        "--setup_file=/x/setup.py",
        "--extra_package=/x/p.tar.gz",
        "--requirements_file=r",
    ):
        args = local_runner.beam_args("in_memory", [flag])
        assert flag in args
        assert not [a for a in args if a.startswith("--setup_file=") and a != flag]


def test_tfx_does_not_build_its_ephemeral_package_with_these_flags(monkeypatch):
    from tfx.utils import dependency_utils

    def fail():
        raise AssertionError("TFX would copy itself and run setup.py sdist")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", fail)
    args = local_runner.beam_args("in_memory", [])
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_worker_processes_default_to_one_per_core_up_to_parallel(monkeypatch):
    monkeypatch.setattr(local_runner.sys, "platform", "linux")
    monkeypatch.setattr(local_runner.os, "cpu_count", lambda: 2)
    assert local_runner.worker_processes(None, parallel=4) == 2
    assert local_runner.worker_processes(None, parallel=1) == 0  # serial: no workers
    monkeypatch.setattr(local_runner.os, "cpu_count", lambda: 16)
    assert local_runner.worker_processes(None, parallel=4) == 4
    assert local_runner.worker_processes(0, parallel=4) == 0  # asked for threads only
    assert local_runner.worker_processes(3, parallel=1) == 3


def test_negative_processes_or_zero_parallel_are_usage_errors(capsys):
    for argv in (["--processes", "-1"], ["--parallel", "0"]):
        try:
            local_runner.parse_args(argv)
        except SystemExit as e:
            assert e.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
        assert "must be >=" in capsys.readouterr().err


def test_no_default_workers_where_fork_is_unsound(monkeypatch):
    monkeypatch.setattr(local_runner.sys, "platform", "darwin")
    assert local_runner.worker_processes(None, parallel=4) == 0
    assert local_runner.worker_processes(2, parallel=4) == 2  # asked for: the user's call


def test_training_budget_flags(capsys):
    args = local_runner.parse_args(
        ["--train-epochs", "2", "--tune-epochs", "0", "--cv-epochs", "0.5", "--cv-max-rows", "9"]
    )
    settings = local_runner.training_settings(args)
    assert settings["train_epochs"] == 2.0 and settings["tune_epochs"] == 0.0
    assert settings["cv_epochs"] == 0.5 and settings["cv_max_rows"] == 9
    for bad in (["--train-epochs", "-1"], ["--cv-epochs", "nan"], ["--cv-max-rows", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            local_runner.parse_args(bad)
        assert exit_info.value.code == 2
        assert bad[0] in capsys.readouterr().err
