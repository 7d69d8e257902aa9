"""Model status and metadata responses (protos and their REST JSON)."""

import orjson
from google.protobuf import any_pb2, json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)

from serving.errors import Code, ServingError

_STATE = get_model_status_pb2.ModelVersionStatus.State


def status_response(entries: list) -> get_model_status_pb2.GetModelStatusResponse:
    """Builds a GetModelStatusResponse from [(version, VersionState)]."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state in entries:
        item = response.model_version_status.add()
        item.version = version
        item.state = _STATE.Value(state.state)
        item.status.error_code = int(state.error_code)
        item.status.error_message = state.error_message
    return response


def status_json(response) -> bytes:
    """Proto-JSON as TF Serving prints it (snake_case, defaults included)."""
    return json_format.MessageToJson(
        response, including_default_value_fields=True, preserving_proto_field_name=True, indent=1
    ).encode("utf-8")


def model_spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
    """Builds a ModelSpec with a resolved version."""
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


def check_metadata_fields(fields) -> None:
    """Validates GetModelMetadataRequest.metadata_field (only signature_def)."""
    if not fields:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "GetModelMetadataRequest must specify at least one metadata_field",
        )
    for field in fields:
        if field != "signature_def":
            raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")


def metadata_response(servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Builds the gRPC GetModelMetadataResponse for a servable."""
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=model_spec(servable.name, servable.version)
    )
    packed = any_pb2.Any()
    packed.Pack(servable.signature_def_map())
    response.metadata["signature_def"].CopyFrom(packed)
    return response


def metadata_json(servable) -> bytes:
    """The REST metadata body: model_spec plus a twice-nested signature_def."""
    cached = getattr(servable, "_metadata_dict", None)
    if cached is None:
        cached = json_format.MessageToDict(
            servable.signature_def_map(),
            including_default_value_fields=True,
            preserving_proto_field_name=True,
        )
        servable._metadata_dict = cached
    spec = json_format.MessageToDict(
        model_spec(servable.name, servable.version),
        including_default_value_fields=True,
        preserving_proto_field_name=True,
    )
    body = {"model_spec": spec, "metadata": {"signature_def": cached}}
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)
