"""The flags of both runners and the settings they become."""

import pytest

from core import resources
from pipeline import flags, kubeflow_runner, local_runner
from pipeline.settings import TrainingSettings

KUBEFLOW_REQUIRED = [
    *("--image", "i", "--pipeline-root", "r", "--data-root", "d"),
    *("--schema-dir", "s", "--serving-dir", "v"),
]


def test_negative_processes_or_zero_parallel_are_usage_errors(capsys):
    for argv in (["--processes", "-1"], ["--parallel", "0"], ["--num-spans", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            local_runner.parse_args(argv)
        assert exit_info.value.code == 2
        assert "must be >=" in capsys.readouterr().err


def test_training_budget_flags(capsys):
    args = local_runner.parse_args(
        ["--train-epochs", "2", "--tune-epochs", "0", "--cv-epochs", "0.5", "--cv-max-rows", "9"]
        + ["--train-patience", "0"]
    )
    settings = flags.training_settings(args)
    assert settings.train_epochs == 2.0 and settings.tune_epochs == 0.0
    assert settings.train_patience == 0
    assert flags.training_settings(local_runner.parse_args([])).train_patience == 3
    assert settings.cv_epochs == 0.5 and settings.cv_max_rows == 9
    for bad in (["--train-epochs", "-1"], ["--cv-epochs", "nan"], ["--cv-max-rows", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            local_runner.parse_args(bad)
        assert exit_info.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_tune_max_rows_flag_zero_tunes_on_every_row_and_negative_is_a_usage_error(capsys):
    assert flags.training_settings(local_runner.parse_args([])).tune_max_rows == 60_000
    for value in (0, 60_001):
        args = local_runner.parse_args(["--tune-max-rows", str(value)])
        assert flags.training_settings(args).tune_max_rows == value
    with pytest.raises(SystemExit) as exit_info:
        local_runner.parse_args(["--tune-max-rows", "-5"])
    assert exit_info.value.code == 2
    assert "--tune-max-rows: must be >= 0 (0 = every row), got '-5'" in capsys.readouterr().err


def test_eval_max_rows_flag_zero_scores_every_row_and_negative_is_a_usage_error(capsys):
    assert flags.training_settings(local_runner.parse_args([])).eval_max_rows == 30_000
    args = local_runner.parse_args(["--eval-max-rows", "0"])
    assert flags.training_settings(args).eval_max_rows == 0
    with pytest.raises(SystemExit) as exit_info:
        local_runner.parse_args(["--eval-max-rows", "-5"])
    assert exit_info.value.code == 2
    assert "--eval-max-rows: must be >= 0 (0 = every row), got '-5'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--train-steps", "0"],
        ["--cv-folds", "1"],
        ["--min-auc", "1.5"],
        ["--tune-trials", "-2"],
        ["--max-auc-drop", "-0.1"],
    ],
)
def test_settings_out_of_range_are_usage_errors_naming_the_flag(argv, capsys):
    for parse in (
        local_runner.parse_args,
        lambda a: kubeflow_runner.parse_args(KUBEFLOW_REQUIRED + a),
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse(argv)
        assert exit_info.value.code == 2
        assert f"argument {argv[0]}:" in capsys.readouterr().err


def test_both_runners_share_the_training_flags_and_their_defaults():
    local = flags.training_settings(local_runner.parse_args(["--no-canary", "--seed", "7"]))
    kubeflow = flags.training_settings(
        kubeflow_runner.parse_args([*KUBEFLOW_REQUIRED, "--no-canary", "--seed", "7"])
    )
    assert local == kubeflow == TrainingSettings(canary=False, seed=7)


def test_local_defaults_are_the_bundled_data_and_the_run_dir(monkeypatch, tmp_path):
    args = local_runner.parse_args([])
    assert args.data_dir == resources.data_root()
    assert args.schema_dir == resources.schema_dir()
    monkeypatch.setenv("TAXI_RUN_DIR", str(tmp_path))
    assert local_runner.parse_args([]).output_dir == str(tmp_path)
