"""What the `taxi-monitor` command modules share: exit codes, flags, time parsing, printing."""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import sys

from core import resources
from monitoring import config, outcome

EXIT_OK, EXIT_FOUND, EXIT_BAD_INPUT = outcome.OK, outcome.FOUND, outcome.BAD_INPUT
METADATA_HELP = ": SQLite file or mysql://USER:PASSWORD@HOST:PORT/DB (default: $TAXI_METADATA)"
DEFAULT_SCHEMA = os.path.join(resources.schema_dir(), "schema.pbtxt")


def parse_time(text: str) -> float:
    """Unix seconds, or ISO 8601 (UTC unless an offset is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use unix seconds or ISO 8601)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def parse_listen(text: str) -> tuple[str, int]:
    """ "host:port" -> (host, port); port 0 lets the OS choose."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"not host:port: {text!r}")
    return host or "127.0.0.1", int(port)


def metadata_default() -> str | None:
    return os.environ.get("TAXI_METADATA")


def check_parent() -> argparse.ArgumentParser:
    """The flags of the skew/drift checks (`window`, `spans`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema (pbtxt)")
    common.add_argument(
        "--metadata",
        default=metadata_default(),
        help=f"ML Metadata of the pipeline run{METADATA_HELP}",
    )
    common.add_argument("--out", required=True, help="output directory")
    common.add_argument("--textfile", help="also write the gauges here (node exporter)")
    common.add_argument(
        "--linf",
        type=float,
        default=config.LINF_THRESHOLD,
        help="L-infinity threshold for categoricals without one in the schema",
    )
    common.add_argument(
        "--jsd",
        type=float,
        default=config.JSD_THRESHOLD,
        help="Jensen-Shannon threshold for numerics without one in the schema",
    )
    return common


def calls(function):
    """An argparse `func` default that calls `function` with the parsed flags it names."""
    names = set(inspect.signature(function).parameters)

    def call(args: argparse.Namespace) -> int:
        return function(**{k: v for k, v in vars(args).items() if k in names})

    call.function = function
    return call


def print_problems(problems) -> None:
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)


def error(message: str) -> int:
    """Prints `error: message` on stderr; returns `EXIT_BAD_INPUT`."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
