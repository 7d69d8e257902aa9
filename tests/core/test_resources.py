"""core.resources: the bundled data and the default run dir."""

import os

from core import resources

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bundled_data_is_the_checkouts_data_folder():
    assert resources.data_root() == os.path.join(CHECKOUT, "data", "taxi")
    assert resources.schema_dir() == os.path.join(CHECKOUT, "data", "schema")
    spans = sorted(os.listdir(resources.data_root()))
    assert spans == ["span-2013", "span-2014", "span-2015", "span-2016"]
    for span in spans:
        assert os.path.isfile(os.path.join(resources.data_root(), span, "data.csv"))
    assert os.path.isfile(os.path.join(resources.schema_dir(), "schema.pbtxt"))


def test_default_run_dir_is_tfx_runs_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(resources.RUN_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resources.default_run_dir() == str(tmp_path / "tfx_runs")


def test_default_run_dir_honours_taxi_run_dir_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAXI_RUN_DIR", "runs/a")
    assert resources.default_run_dir() == str(tmp_path / "runs" / "a")
    monkeypatch.setenv("TAXI_RUN_DIR", "")  # empty = unset
    assert resources.default_run_dir() == str(tmp_path / "tfx_runs")
