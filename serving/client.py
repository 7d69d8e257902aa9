"""Client for TF Serving's REST and gRPC APIs (our server or the official image).

Library:
    client = ServingClient("http://127.0.0.1:8501", grpc_target="127.0.0.1:8500")
    client.predict("taxi", instances=[{"trip_miles": 1.2, ...}])
    client.classify("taxi", examples=[{...}], signature_name="classification")

CLI (`serving-client`):
    serving-client predict --model taxi --json '{"instances": [...]}'
    serving-client predict --model taxi --csv data.csv --row 3
    serving-client classify --model taxi --signature_name classification --csv data.csv
    serving-client predict --model taxi --csv data.csv --grpc 127.0.0.1:8500
    serving-client status --model taxi

CSV rows are converted with the signature's input dtypes (read from the
model's metadata), so string cells become ints/floats where the model wants.
An empty cell is "missing": NaN for float inputs (JSON `NaN`, which TF
Serving accepts), "" for strings; an integer input (DT_INT64) cannot say
"missing", so an empty cell for one is an error, not a silent 0.
"""

import argparse
import base64
import csv
import json
import math
import os
import sys

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
            values = [_bytes_json(v) for v in values]
        row[name] = values[0] if len(values) == 1 else values
    return row


def _bytes_json(value: bytes):
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


# -- CLI ---------------------------------------------------------------------


def _read_rows(path: str, row: int = None) -> list:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [rows[row]] if row is not None else rows


def _load_json(text: str):
    if text == "-":
        return json.load(sys.stdin)
    if os.path.exists(text):
        with open(text) as f:
            return json.load(f)
    return json.loads(text)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="serving-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["predict", "classify", "regress", "status", "metadata"])
    parser.add_argument("--url", default=os.environ.get("SERVING_URL", DEFAULT_URL))
    parser.add_argument("--grpc", default=None, help="host:port; predict over gRPC")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--label", default=None)
    parser.add_argument("--signature_name", default=None)
    parser.add_argument(
        "--json", default=None, help="request body (inline JSON, a file, or - for stdin)"
    )
    parser.add_argument("--csv", default=None, help="CSV file with a header row")
    parser.add_argument("--row", type=int, default=None, help="0-based CSV row (default all)")
    parser.add_argument("--timeout", type=float, default=10.0)
    return parser


def run(args) -> dict:
    """Executes one CLI command and returns the JSON-able answer."""
    client = ServingClient(args.url, args.grpc, args.timeout)
    spec = {"version": args.version, "label": args.label}
    if args.command == "status":
        return client.status(args.model, args.version)
    if args.command == "metadata":
        return client.metadata(args.model, **spec)
    if args.json is not None:
        body = _load_json(args.json)
        if args.command == "predict":
            return client.predict(
                args.model,
                body.get("instances"),
                body.get("inputs"),
                args.signature_name or body.get("signature_name"),
                **spec,
            )
        call = client.classify if args.command == "classify" else client.regress
        return call(
            args.model,
            body["examples"],
            args.signature_name or body.get("signature_name"),
            body.get("context"),
            **spec,
        )
    if args.csv is None:
        raise SystemExit("one of --json or --csv is required")
    rows = _read_rows(args.csv, args.row)
    if args.command == "predict":
        dtypes = client.input_dtypes(args.model, args.signature_name, **spec)
        instances = []
        for index, row in enumerate(rows):
            try:
                instances.append(build_instance(row, dtypes))
            except ValueError as e:
                number = index if args.row is None else args.row
                raise SystemExit(f"{args.csv}: row {number}: {e}") from None
        if args.grpc:
            outputs = client.predict_grpc(
                args.model, instance_columns(instances, dtypes), args.signature_name, **spec
            )
            return {"outputs": {k: _jsonable(v.tolist()) for k, v in outputs.items()}}
        return client.predict(args.model, instances, signature_name=args.signature_name, **spec)
    examples = [{k: v for k, v in r.items() if v != ""} for r in rows]
    examples = [{k: _csv_json(v) for k, v in e.items()} for e in examples]
    call = client.classify if args.command == "classify" else client.regress
    return call(args.model, examples, args.signature_name, **spec)


def _jsonable(value):
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return _bytes_json(value) if isinstance(value, bytes) else value


def _csv_json(value: str):
    for kind in (int, float):
        try:
            return kind(value) if kind is int else float(value)
        except ValueError:
            continue
    return value


def main(argv=None) -> int:
    """Entry point for the `serving-client` console script."""
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except ServingClientError as e:
        print(json.dumps({"status": e.status, "error": e.message}), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
