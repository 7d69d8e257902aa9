"""The anomalies gate reads ExampleValidator output and stops on anomalies."""

import os

import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.anomalies_gate import gate


def _anomalies(
    column=None,
    short="Unexpected string values",
    long="Examples contain values missing from the schema: Bitcoin (~2%).",
):
    result = anomalies_pb2.Anomalies()
    if column:
        info = result.anomaly_info[column]
        reason = info.reason.add()
        reason.short_description = short
        reason.description = long
    return result


def _write(root, split, anomalies):
    folder = os.path.join(root, f"Split-{split}")
    os.makedirs(folder)
    with open(os.path.join(folder, gate.ANOMALIES_FILE), "wb") as f:
        f.write(anomalies.SerializeToString())


def test_no_anomalies_passes(tmp_path):
    _write(tmp_path, "train", _anomalies())
    _write(tmp_path, "eval", _anomalies())
    gate.check(gate.read_anomalies(str(tmp_path), ["train", "eval"]), "span 3")


def test_anomaly_names_split_column_and_reason(tmp_path):
    _write(tmp_path, "train", _anomalies("payment_type"))
    _write(tmp_path, "eval", _anomalies())
    with pytest.raises(gate.AnomaliesFoundError) as error:
        gate.check(gate.read_anomalies(str(tmp_path), ["train", "eval"]), "span 2017")
    message = str(error.value)
    assert "1 data anomaly" in message
    assert "split 'train' in span 2017, column 'payment_type': Unexpected string values" in message
    assert "Bitcoin" in message
    assert "'eval'" not in message


def test_dataset_level_anomaly(tmp_path):
    anomalies = _anomalies()
    anomalies.dataset_anomaly_info.reason.add().description = "Low number of examples"
    _write(tmp_path, "train", anomalies)
    lines = gate.describe(gate.read_anomalies(str(tmp_path), ["train"]))
    assert lines == ["split 'train', whole dataset: Low number of examples"]


def test_every_anomaly_is_listed_sorted_with_all_its_reasons():
    train = _anomalies("payment_type")
    second = train.anomaly_info["payment_type"].reason.add()
    second.short_description, second.description = "Out of domain", "2 unexpected values."
    train.anomaly_info["company"].description = "Column dropped"  # no reasons: its description
    train.dataset_anomaly_info.reason.add().description = "Low number of examples"
    train.dataset_anomaly_info.reason.add().description = "High number of examples"
    evaluation = _anomalies()
    evaluation.dataset_anomaly_info.description = "Whole split is empty"
    with pytest.raises(gate.AnomaliesFoundError) as error:
        gate.check({"train": train, "eval": evaluation}, "span 3")
    assert str(error.value) == (
        "4 data anomalies against the curated schema; the run stops before Transform:\n"
        "  - split 'eval' in span 3, whole dataset: Whole split is empty\n"
        "  - split 'train' in span 3, column 'company': Column dropped\n"
        "  - split 'train' in span 3, column 'payment_type': Unexpected string values: "
        "Examples contain values missing from the schema: Bitcoin (~2%).; "
        "Out of domain: 2 unexpected values.\n"
        "  - split 'train' in span 3, whole dataset: "
        "Low number of examples; High number of examples"
    )


def test_reads_each_split_from_its_own_folder(tmp_path):
    _write(tmp_path, "train", _anomalies("fare"))
    _write(tmp_path, "eval", _anomalies("tips"))
    by_split = gate.read_anomalies(str(tmp_path), ["train", "eval"])
    assert {split: list(a.anomaly_info) for split, a in by_split.items()} == {
        "train": ["fare"],
        "eval": ["tips"],
    }
    with pytest.raises(FileNotFoundError, match="Split-test"):
        gate.read_anomalies(str(tmp_path), ["test"])


def test_check_without_a_source_names_the_split_only():
    with pytest.raises(gate.AnomaliesFoundError) as error:
        gate.check({"train": _anomalies("fare", "Out of range", "Negative fares.")})
    assert str(error.value).endswith(
        "\n  - split 'train', column 'fare': Out of range: Negative fares."
    )
