"""Client for TF Serving's REST and gRPC APIs (our server or the official image).

Library:
    client = ServingClient("http://127.0.0.1:8501", grpc_target="127.0.0.1:8500")
    client.predict("taxi", instances=[{"trip_miles": 1.2, ...}])
    client.classify("taxi", examples=[{...}], signature_name="classification")

The `serving-client` command line is `serving.client_cli`.

CSV rows are converted with the signature's input dtypes (read from the
model's metadata), so string cells become ints/floats where the model wants.
An empty cell is "missing": NaN for float inputs (JSON `NaN`, which TF
Serving accepts), "" for strings; an integer input (DT_INT64) cannot say
"missing", so an empty cell for one is an error, not a silent 0.
"""

import base64
import json
import math

import requests

DEFAULT_URL = "http://127.0.0.1:8501"
DEFAULT_SIGNATURE = "serving_default"
_INT_TYPES = {"DT_INT64", "DT_INT32", "DT_INT16", "DT_INT8", "DT_UINT8", "DT_UINT32", "DT_UINT64"}
_FLOAT_TYPES = {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"}


class ServingClientError(Exception):
    """A non-200 answer: HTTP status (or gRPC code name) and the error text."""

    def __init__(self, status, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def model_path(model: str, version: int = None, label: str = None) -> str:
    """Builds `/v1/models/<m>[/versions/<v>|/labels/<l>]` (name/label %-encoded)."""
    path = "/v1/models/" + requests.utils.quote(model, safe="")
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += "/labels/" + requests.utils.quote(label, safe="")
    return path


class MissingValueError(ValueError):
    """A row lacks a value for an input whose dtype cannot say "missing"."""


def is_missing(value) -> bool:
    """True for what a row uses to say "missing": None, an empty cell, NaN."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def coerce_value(value, dtype: str, alias: str = "value"):
    """Converts a CSV cell (string) or JSON value to what a signature dtype needs.

    Missing values (``is_missing``) become NaN for float inputs (the taxi
    model takes its integer features as DT_DOUBLE for this reason) and ""
    for string inputs, which the model reads as "missing". Integers for a
    DT_DOUBLE input stay integers (JSON integers: exact, and also accepted by
    a version of the model that still takes int64).

    Raises:
      MissingValueError: a missing value for an integer or bool input (such a
        signature cannot say "missing"; zero would be a different answer).
      ValueError: a cell that does not parse as the dtype (for integer
        inputs: not an exact integer).
    """
    if is_missing(value):
        if dtype in _FLOAT_TYPES:
            return math.nan
        if dtype == "DT_STRING":
            return ""
        raise MissingValueError(
            f"{alias} is missing, but the signature takes it as {dtype}, which cannot say "
            "missing (models exported before integer inputs became DT_DOUBLE)"
        )
    if isinstance(value, str):
        if dtype in _INT_TYPES:
            return _exact_int(value.strip(), alias)
        if dtype == "DT_DOUBLE" and _is_int_literal(value.strip()):
            # Sent as a JSON integer: exact as a double, and still valid for an
            # int64 version of the model (e.g. the other side of a canary split).
            return int(value)
        if dtype in _FLOAT_TYPES:
            return float(value)
        if dtype == "DT_BOOL":
            return value.strip().lower() in ("1", "true")
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and dtype in _FLOAT_TYPES and dtype != "DT_DOUBLE":
        return float(value)
    return value


def _is_int_literal(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _exact_int(text: str, alias: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "3.0" is 3; "1.5" is an error
        if not number.is_integer():
            raise ValueError(f"{alias}: {text!r} is not an integer") from None
        return int(number)


def build_instance(row: dict, input_dtypes: dict) -> dict:
    """Builds one named `instances` element from a row, per signature dtypes.

    An absent, None, empty or NaN value is "missing": NaN for float inputs,
    "" for strings (see ``coerce_value``).
    """
    return {
        alias: coerce_value(row.get(alias), dtype, alias) for alias, dtype in input_dtypes.items()
    }


def instance_columns(instances: list, input_dtypes: dict) -> dict:
    """Instances (from ``build_instance``) -> one numpy array per input, typed by dtype."""
    import numpy as np

    numpy_types = {
        "DT_STRING": object,
        "DT_FLOAT": np.float32,
        "DT_DOUBLE": np.float64,
        "DT_INT64": np.int64,
        "DT_INT32": np.int32,
        "DT_BOOL": np.bool_,
    }
    columns = {}
    for alias, dtype in input_dtypes.items():
        values = [i[alias] for i in instances]
        if dtype == "DT_STRING":
            values = [v.encode() if isinstance(v, str) else v for v in values]
        columns[alias] = np.array(values, dtype=numpy_types.get(dtype))
    return columns


def json_body(body) -> bytes:
    """Serializes a request body as TF Serving's JSON: NaN and Infinity as literals.

    TF Serving (rapidjson) accepts ``NaN``/``Infinity``; ``requests``' own
    ``json=`` refuses them, so request bodies are encoded here.
    """
    return json.dumps(body, allow_nan=True).encode()


def example_to_row(example) -> dict:
    """Flattens a tf.train.Example into {feature: scalar-or-list} JSON values.

    Features without values (missing CSV cells) are left out.
    """
    row = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        if not values:
            continue
        if kind == "bytes_list":
            values = [bytes_json(v) for v in values]
        row[name] = values[0] if len(values) == 1 else values
    return row


def bytes_json(value: bytes):
    """A bytes value as TF Serving's JSON writes it: text if UTF-8, else ``{"b64": ...}``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


class ServingClient:
    """REST (and optionally gRPC) client.

    Args:
      url: REST base URL, e.g. `http://127.0.0.1:8501`.
      grpc_target: `host:port` of the gRPC API (needed for `*_grpc` calls).
      timeout: per-request timeout in seconds.
    """

    def __init__(self, url: str = DEFAULT_URL, grpc_target: str = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.grpc_target = grpc_target
        self.timeout = timeout
        self._session = requests.Session()
        self._stubs = None

    # -- REST ---------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict = None) -> dict:
        response = self._session.request(
            method,
            self.url + path,
            data=None if body is None else json_body(body),
            headers=None if body is None else {"Content-Type": "application/json"},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ServingClientError(response.status_code, message)
        return response.json()

    def status(self, model: str, version: int = None) -> dict:
        """GET model status."""
        return self._call("GET", model_path(model, version))

    def metadata(self, model: str, version: int = None, label: str = None) -> dict:
        """GET model metadata."""
        return self._call("GET", model_path(model, version, label) + "/metadata")

    def input_dtypes(self, model: str, signature_name: str = None, **spec) -> dict:
        """Returns {input alias: DT_* name} of a signature, from metadata."""
        signatures = self.metadata(model, **spec)["metadata"]["signature_def"]["signature_def"]
        inputs = signatures[signature_name or DEFAULT_SIGNATURE]["inputs"]
        return {alias: info["dtype"] for alias, info in sorted(inputs.items())}

    def predict(
        self,
        model: str,
        instances: list = None,
        inputs=None,
        signature_name: str = None,
        version: int = None,
        label: str = None,
    ) -> dict:
        """POST :predict with row (`instances`) or columnar (`inputs`) data."""
        body = {"instances": instances} if inputs is None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", model_path(model, version, label) + ":predict", body)

    def classify(
        self,
        model: str,
        examples: list,
        signature_name: str = None,
        context: dict = None,
        version: int = None,
        label: str = None,
    ) -> dict:
        """POST :classify with JSON examples."""
        return self._examples("classify", model, examples, signature_name, context, version, label)

    def regress(
        self,
        model: str,
        examples: list,
        signature_name: str = None,
        context: dict = None,
        version: int = None,
        label: str = None,
    ) -> dict:
        """POST :regress with JSON examples."""
        return self._examples("regress", model, examples, signature_name, context, version, label)

    def _examples(self, verb, model, examples, signature_name, context, version, label):
        body = {"examples": examples}
        if signature_name:
            body["signature_name"] = signature_name
        if context is not None:
            body["context"] = context
        return self._call("POST", model_path(model, version, label) + ":" + verb, body)

    # -- gRPC ---------------------------------------------------------------

    def _prediction_stub(self):
        if self._stubs is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            if not self.grpc_target:
                raise ValueError("grpc_target is required for gRPC calls")
            channel = grpc.insecure_channel(self.grpc_target)
            self._stubs = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return self._stubs

    def predict_grpc(
        self,
        model: str,
        inputs: dict,
        signature_name: str = None,
        version: int = None,
        label: str = None,
    ) -> dict:
        """gRPC Predict; `inputs` maps alias -> array-like; returns alias -> ndarray.

        Plain Python float lists are sent as DT_FLOAT; pass ndarrays to control dtypes.
        """
        import grpc
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if signature_name:
            request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = int(version)
        elif label is not None:
            request.model_spec.version_label = label
        for alias, value in inputs.items():
            array = np.asarray(value)
            if array.dtype == np.float64 and not isinstance(value, np.ndarray):
                array = array.astype(np.float32)  # plain Python floats mean DT_FLOAT
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
        try:
            response = self._prediction_stub().Predict(request, self.timeout)
        except grpc.RpcError as e:
            raise ServingClientError(e.code().name, e.details()) from None
        return {alias: tf.make_ndarray(t) for alias, t in response.outputs.items()}
