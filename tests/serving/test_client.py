"""Client library and CLI against the contract server."""

import json
import math

import pytest

from serving import client as client_lib
from serving import client_cli
from serving.client import ServingClient, ServingClientError, build_instance


def test_build_instance_coerces_csv_cells():
    dtypes = {"age": "DT_INT64", "name": "DT_STRING", "score": "DT_FLOAT", "tract": "DT_DOUBLE"}
    row = {"age": "3", "name": "a", "score": "1", "tract": "17031081500"}
    assert build_instance(row, dtypes) == {
        "age": 3,
        "name": "a",
        "score": 1.0,
        "tract": 17031081500.0,
    }
    assert build_instance({**row, "age": "3.0"}, dtypes)["age"] == 3
    # Integers in a DT_DOUBLE input stay JSON integers (valid for an int64 version too).
    assert client_lib.json_body(build_instance(row, dtypes)) == (
        b'{"age": 3, "name": "a", "score": 1.0, "tract": 17031081500}'
    )
    assert build_instance({**row, "tract": "2.5"}, dtypes)["tract"] == 2.5


@pytest.mark.parametrize("cell", ["", "  ", None, float("nan")])
def test_missing_cells_are_nan_or_empty_never_zero(cell):
    dtypes = {"name": "DT_STRING", "score": "DT_FLOAT", "tract": "DT_DOUBLE"}
    instance = build_instance({"name": cell, "score": cell, "tract": cell}, dtypes)
    assert instance["name"] == ""
    assert math.isnan(instance["score"]) and math.isnan(instance["tract"])
    assert math.isnan(build_instance({}, dtypes)["tract"])
    # JSON as TF Serving reads it: the NaN literal.
    assert client_lib.json_body({"instances": [instance]}) == (
        b'{"instances": [{"name": "", "score": NaN, "tract": NaN}]}'
    )


def test_integer_inputs_cannot_be_missing_or_fractional():
    with pytest.raises(client_lib.MissingValueError, match="age is missing, but .* DT_INT64"):
        build_instance({"age": ""}, {"age": "DT_INT64"})
    with pytest.raises(ValueError, match="age: '1.5' is not an integer"):
        build_instance({"age": "1.5"}, {"age": "DT_INT64"})


def test_instance_columns_keep_nan_as_float64():
    dtypes = {"name": "DT_STRING", "tract": "DT_DOUBLE"}
    columns = client_lib.instance_columns(
        [build_instance({"name": "x", "tract": "17031081500"}, dtypes), build_instance({}, dtypes)],
        dtypes,
    )
    assert columns["name"].tolist() == [b"x", b""]
    assert columns["tract"].dtype == "float64"
    assert columns["tract"][0] == 17031081500 and math.isnan(columns["tract"][1])


def test_example_to_row_skips_empty_features():
    import tensorflow as tf

    example = tf.train.Example()
    example.features.feature["a"].float_list.value.append(1.5)
    example.features.feature["b"].bytes_list.SetInParent()
    example.features.feature["c"].bytes_list.value.extend([b"x", b"\xff"])
    assert client_lib.example_to_row(example) == {"a": 1.5, "c": ["x", {"b64": "/w=="}]}


def test_model_path_encodes_names():
    assert client_lib.model_path("a/b", label="x y") == "/v1/models/a%2Fb/labels/x%20y"
    assert client_lib.model_path("m", version=3) == "/v1/models/m/versions/3"


def test_client_rest_and_grpc(rest_url, grpc_target):
    client = ServingClient(rest_url, grpc_target)
    assert client.predict("half_plus_two", [[1.0]], version=123) == {"predictions": [[2.5]]}
    assert client.regress("half_plus_two", [{"x": 80.0}], "regress_x_to_y", label="stable") == {
        "results": [42.0]
    }
    outputs = client.predict_grpc("half_plus_two", {"x": [[1.0]]}, version=123)
    assert outputs["y"].tolist() == [[2.5]]
    assert client.input_dtypes("multi") == {
        "age": "DT_INT64",
        "name": "DT_STRING",
        "score": "DT_FLOAT",
    }
    with pytest.raises(ServingClientError) as error:
        client.predict("nope", [[1.0]])
    assert error.value.status == 404


def test_cli_csv_and_json(rest_url, grpc_target, tmp_path, capsys):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("name,age,score,unused\nann,30,0.5,x\nbob,40,1,y\n")
    assert (
        client_cli.main(
            ["predict", "--url", rest_url, "--model", "multi", "--csv", str(csv_path), "--row", "1"]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["predictions"][0]["greeting"] == "bob!"
    assert (
        client_cli.main(
            [
                "predict",
                "--url",
                rest_url,
                "--grpc",
                grpc_target,
                "--model",
                "multi",
                "--csv",
                str(csv_path),
            ]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["outputs"]["age_plus"] == [31, 41]
    assert (
        client_cli.main(
            [
                "classify",
                "--url",
                rest_url,
                "--model",
                "half_plus_two",
                "--version",
                "123",
                "--json",
                '{"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}',
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"results": [[["", 12.0]]]}
    assert client_cli.main(["status", "--url", rest_url, "--model", "missing"]) == 1


def test_cli_refuses_an_empty_cell_for_an_int64_input(rest_url, tmp_path):
    """`multi` takes age as DT_INT64 (as taxi versions pushed before NaN inputs did)."""
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("name,age,score\nann,30,0.5\nbob,,1\n")
    argv = ["predict", "--url", rest_url, "--model", "multi", "--csv", str(csv_path)]
    with pytest.raises(SystemExit) as error:
        client_cli.main(argv)
    assert str(error.value).startswith(f"{csv_path}: row 1: age is missing, but the signature")
