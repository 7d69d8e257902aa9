"""gRPC contract tests using TF Serving's own Python stubs."""

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)


@pytest.fixture(scope="module")
def stubs(grpc_target):
    channel = grpc.insecure_channel(grpc_target)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def predict_request(name="half_plus_two", x=((1.0,), (2.0,)), **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(list(x), dtype=tf.float32))
    return request


def test_predict_uses_typed_fields_and_model_spec(stubs):
    response = stubs[0].Predict(predict_request(version=123), 10)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0]
    assert response.outputs["y"].tensor_content == b""
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_predict_by_label_and_output_filter(stubs):
    request = predict_request(version_label="canary")
    request.output_filter.append("y")
    response = stubs[0].Predict(request, 10)
    assert list(response.outputs["y"].float_val) == [3.5, 4.0]


@pytest.mark.parametrize(
    "request_kwargs, code, fragment",
    [
        (dict(name="intentionally_missing_model"), grpc.StatusCode.NOT_FOUND, "Servable"),
        (
            dict(version=5),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 5)",
        ),
        (
            dict(version_label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
        (
            dict(signature_name="nope"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (dict(name=""), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_predict_errors(stubs, request_kwargs, code, fragment):
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(predict_request(**request_kwargs), 10)
    assert error.value.code() == code
    assert fragment in error.value.details()


def test_predict_wrong_input_name(stubs):
    request = predict_request()
    request.inputs["z"].CopyFrom(request.inputs["x"])
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].Predict(request, 10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature: 2!=1" in error.value.details()


def _examples(request, values):
    for value in values:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(value)
    return request


def test_classify_and_regress(stubs):
    classify = _examples(classification_pb2.ClassificationRequest(), [20.0])
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.version.value = 123
    classify.model_spec.signature_name = "classify_x_to_y"
    result = stubs[0].Classify(classify, 10)
    assert result.result.classifications[0].classes[0].score == 12.0
    regress = _examples(regression_pb2.RegressionRequest(), [80.0, 2.0])
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.version.value = 123
    regress.model_spec.signature_name = "regress_x_to_y"
    result = stubs[0].Regress(regress, 10)
    assert [r.value for r in result.result.regressions] == [42.0, 3.0]
    assert result.model_spec.signature_name == "regress_x_to_y"


def test_metadata(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = stubs[0].GetModelMetadata(request, 10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert "regress_x_to_y" in signatures.signature_def
    assert response.model_spec.version.value == 124
    request.metadata_field[:] = ["bogus"]
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].GetModelMetadata(request, 10)
    assert "Metadata field bogus is not supported" in error.value.details()


def test_model_status(stubs):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    response = stubs[1].GetModelStatus(request, 10)
    assert [s.version for s in response.model_version_status] == [124, 123]
    assert all(s.state == 30 for s in response.model_version_status)
    request.model_spec.name = "missing"
    with pytest.raises(grpc.RpcError) as error:
        stubs[1].GetModelStatus(request, 10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def multi_request(*tasks, xs=(1.0, 2.0)):
    """A MultiInferenceRequest: tasks are (model, signature_name, method) triples."""
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.model_spec.version.value = 123
    return _examples(request, xs)


def test_multi_inference_classify_and_regress_in_one_call(stubs):
    request = multi_request(
        ("half_plus_two", "classify_x_to_y", "classify"),
        ("half_plus_two", "regress_x_to_y", "regress"),
    )
    response = stubs[0].MultiInference(request, 10)
    assert len(response.results) == 2
    classify, regress = response.results
    assert [
        [c.score for c in item.classes] for item in classify.classification_result.classifications
    ] == [[2.5], [3.0]]
    assert [r.value for r in regress.regression_result.regressions] == [2.5, 3.0]
    assert classify.model_spec.name == "half_plus_two"
    assert classify.model_spec.version.value == 123
    assert classify.model_spec.signature_name == "classify_x_to_y"
    assert regress.model_spec.signature_name == "regress_x_to_y"


@pytest.mark.parametrize(
    "tasks, xs, code, message",
    [
        (
            [("half_plus_two", "classify_x_to_y", "classify"), ("multi", "x", "regress")],
            (1.0,),
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            [("half_plus_two", "classify_x_to_y", "classify"), ("", "regress_x_to_y", "regress")],
            (1.0,),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Found ModelSpec with an empty model name.",
        ),
        (
            [
                ("half_plus_two", "regress_x_to_y", "regress"),
                ("half_plus_two", "regress_x_to_y", "classify"),
            ],
            (1.0,),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [("half_plus_two", "nope", "classify")],
            (1.0,),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            [("half_plus_two", "serving_default", "predict")],
            (1.0,),
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            [("half_plus_two", "", "regress")],
            (1.0,),
            grpc.StatusCode.INVALID_ARGUMENT,
            "No regression inputs found in SignatureDef: ",
        ),
        (
            [("half_plus_two", "classify_x_to_y", "classify")],
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Input is empty.",
        ),
        ([], (1.0,), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (
            [("intentionally_missing_model", "classify_x_to_y", "classify")],
            (1.0,),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(intentionally_missing_model, 123)",
        ),
    ],
)
def test_multi_inference_errors(stubs, tasks, xs, code, message):
    with pytest.raises(grpc.RpcError) as error:
        stubs[0].MultiInference(multi_request(*tasks, xs=xs), 10)
    assert error.value.code() == code
    assert error.value.details().startswith(message)
