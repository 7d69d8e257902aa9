"""The `serving-client` command: one REST or gRPC call to a model server, JSON out.

Examples:
    serving-client predict --model taxi --json '{"instances": [...]}'
    serving-client predict --model taxi --csv data.csv --row 3
    serving-client classify --model taxi --signature_name classification --csv data.csv
    serving-client predict --model taxi --csv data.csv --grpc 127.0.0.1:8500
    serving-client status --model taxi

CSV rows are converted with the signature's input dtypes (read from the
model's metadata), so string cells become ints/floats where the model wants;
an empty cell is "missing" (`serving.client.build_instance`). The library
itself is `serving.client`.
"""

import argparse
import csv
import json
import os
import sys

from serving.client import (
    DEFAULT_URL,
    ServingClient,
    ServingClientError,
    build_instance,
    bytes_json,
    instance_columns,
)


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
    return bytes_json(value) if isinstance(value, bytes) else value


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
