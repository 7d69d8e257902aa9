"""RequestLogMonitor: a request-log window -> ExampleStatistics + ExampleAnomalies in MLMD."""

import importlib.util
import os

import pytest
import tensorflow as tf

from components.request_log_monitor import component
from monitoring import artifacts, drift

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(REPO, "data", "schema", "schema.pbtxt")


def _logs_support():
    """tests/monitoring/conftest.py's row and log builders."""
    path = os.path.join(REPO, "tests", "monitoring", "conftest.py")
    spec = importlib.util.spec_from_file_location("monitoring_test_support", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def window(tmp_path):
    """Logs: 40 normal rows in [1000, 1100), 40 shifted rows in [1100, 1200); training stats."""
    support = _logs_support()
    (tmp_path / "logs").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "logs" / "taxi.1.000001.tfrecord")) as writer:
        for i, row in enumerate(support.taxi_rows(40, seed=1)):
            writer.write(support.predict_log([row], 1000 + i, 1, f"a{i}"))
        for i, row in enumerate(support.taxi_rows(40, seed=2, shift=True)):
            writer.write(support.predict_log([row], 1100 + i, 1, f"b{i}"))
        writer.write(b"not a prediction log")
    schema = drift.load_schema(SCHEMA)
    training = drift.statistics_from_rows(support.taxi_rows(200, seed=3), schema)
    artifacts.write_statistics(str(tmp_path / "training"), "train", training)
    os.makedirs(tmp_path / "schema")
    with open(SCHEMA) as f, open(tmp_path / "schema" / "schema.pbtxt", "w") as out:
        out.write(f.read())
    return tmp_path


def test_monitor_window_writes_the_validator_layout(window):
    facts = component.monitor_window(
        str(window / "logs" / "taxi"),
        1100,
        1200,
        str(window / "schema"),
        str(window / "training"),
        str(window / "stats"),
        str(window / "anomalies"),
        max_malformed_fraction=0.5,
    )
    assert facts["rows"] == 40 and facts["malformed_records"] == 1
    assert facts["previous_window_rows"] == 40 and facts["drift_features"] >= 1
    assert "fare" in facts["findings"] and "payment_type" in facts["findings"]
    anomalies = artifacts.read_anomalies(str(window / "anomalies"), "serving")
    assert anomalies.drift_skew_info
    assert os.path.exists(window / "stats" / "Split-serving" / "FeatureStats.pb")


def test_bad_windows_fail_with_a_message(window):
    args = [str(window / "schema"), str(window / "training"), "/tmp/x", "/tmp/y"]
    prefix = str(window / "logs" / "taxi")
    with pytest.raises(component.MonitoringInputError, match="malformed"):
        component.monitor_window(prefix, 1100, 1200, *args)  # 1 of 81 malformed, none allowed
    with pytest.raises(component.MonitoringInputError, match="missing window"):
        component.monitor_window(prefix, 5000, 6000, *args, max_malformed_fraction=0.5)
    with pytest.raises(component.MonitoringInputError, match="no request log files"):
        component.monitor_window(str(window / "none"), 1100, 1200, *args)


@pytest.mark.slow
def test_monitoring_pipeline_run_records_artifacts_in_mlmd(window):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.monitoring_pipeline import create_monitoring_pipeline

    metadata = str(window / "metadata.sqlite")
    LocalDagRunner().run(
        create_monitoring_pipeline(
            pipeline_name="monitoring-test",
            pipeline_root=str(window / "root"),
            metadata_path=metadata,
            log_prefix=str(window / "logs" / "taxi"),
            start=1100,
            end=1200,
            schema_file=SCHEMA,
            training_statistics_uri=str(window / "training"),
            training_statistics_split_names='["train"]',
            max_malformed_fraction=0.5,
        )
    )
    store = metadata_store.MetadataStore(
        metadata_store_pb2.ConnectionConfig(
            sqlite=metadata_store_pb2.SqliteMetadataSourceConfig(filename_uri=metadata)
        )
    )
    (anomalies,) = store.get_artifacts_by_type("ExampleAnomalies")
    assert anomalies.properties["split_names"].string_value == '["serving"]'
    assert anomalies.custom_properties["rows"].int_value == 40
    assert anomalies.custom_properties["drift_features"].int_value >= 1
    assert artifacts.read_anomalies(anomalies.uri, "serving").drift_skew_info
    (statistics,) = [
        a
        for a in store.get_artifacts_by_type("ExampleStatistics")
        if a.uri != str(window / "training")
    ]
    assert os.path.exists(os.path.join(statistics.uri, "Split-serving", "FeatureStats.pb"))
    (execution,) = [
        e
        for e in store.get_executions()
        if e.last_known_state == metadata_store_pb2.Execution.COMPLETE
        and store.get_execution_types_by_id([e.type_id])[0].name.endswith("RequestLogMonitor")
    ]
    inputs = {
        ev.artifact_id
        for ev in store.get_events_by_execution_ids([execution.id])
        if ev.type == metadata_store_pb2.Event.INPUT
    }
    assert len(inputs) == 2  # the schema and the training statistics: lineage
