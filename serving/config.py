"""Command-line flags (TF Serving's names and defaults) and config files.

Flags use TF Serving's spelling (`--model_name=x`, `--enable_batching=true`).
Differences from `tensorflow_model_server`: `--rest_api_port` defaults to
8501 (the Docker image's value), `--bind_address` (default 127.0.0.1) chooses
the listening interface, `--max_request_bytes` caps request bodies (413) and
gRPC messages, `--max_request_tensor_elements`/`--max_decoded_request_bytes`
cap decoded tensors, `--enable_grpc_config_reload` (default off) allows
HandleReloadConfigRequest, and the batching and TF thread flags default to
None ("not given"): the server derives fast values for the machine from them
(`serving/defaults.py`).
"""

import argparse
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_MONITORING_PATH = "/monitoring/prometheus/metrics"


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "t", "y"):
        return True
    if value in ("0", "false", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """Returns the flag parser for `serve`."""
    p = argparse.ArgumentParser(
        prog="serve",
        description="TF Serving-compatible model server (REST + gRPC).",
        epilog="Example: serve --model_name=taxi --model_base_path=/abs/serving_model/taxi",
    )
    add = p.add_argument
    flag = lambda name, default, **kw: add(  # noqa: E731
        name, type=_bool, nargs="?", const=True, default=default, **kw
    )
    add("--port", type=int, default=8500, help="gRPC port (0 = pick a free port)")
    add("--rest_api_port", type=int, default=8501, help="REST port (0 disables REST)")
    add("--bind_address", default="127.0.0.1", help="interface for both ports")
    add("--grpc_max_threads", type=int, default=0, help="accepted for compatibility (grpc.aio)")
    add("--rest_api_num_threads", type=int, default=0, help="accepted for compatibility")
    add("--rest_api_timeout_in_ms", type=int, default=30000)
    flag("--rest_api_enable_cors_support", False)
    add("--max_request_bytes", type=int, default=64 << 20)
    add(
        "--max_request_tensor_elements",
        type=int,
        default=0,
        help="elements of all tensors of one request (0 = --max_request_bytes / 4)",
    )
    add(
        "--max_decoded_request_bytes",
        type=int,
        default=0,
        help="decoded bytes of one request's tensors (0 = 8 x --max_request_bytes)",
    )
    flag(
        "--enable_grpc_config_reload",
        False,
        help="allow HandleReloadConfigRequest (any client that reaches the gRPC port "
        "can then load models from any path)",
    )
    add("--model_name", default="default")
    add("--model_base_path", default="")
    add("--model_config_file", default="")
    add("--model_config_file_poll_wait_seconds", type=int, default=0)
    add("--file_system_poll_wait_seconds", type=float, default=1)
    add("--max_num_load_retries", type=int, default=5)
    add("--load_retry_interval_micros", type=int, default=60_000_000)
    flag("--enable_batching", None, help="unset: on, derived from the cores (serving/defaults.py)")
    add("--batching_parameters_file", default="")
    flag("--allow_version_labels_for_unavailable_models", False)
    add("--monitoring_config_file", default="")
    flag("--enable_model_warmup", True)
    add("--num_request_iterations_for_warmup", type=int, default=0)
    add("--saved_model_tags", default="serve")
    add("--tensorflow_intra_op_parallelism", type=int, default=None, help="unset: 1")
    add("--tensorflow_inter_op_parallelism", type=int, default=None, help="unset: -1")
    add("--tensorflow_session_parallelism", type=int, default=0)
    add(
        "--canary_traffic_share",
        type=float,
        default=0.0,
        help="share of unversioned requests routed to the 'canary' label (needs 'stable'); "
        "0 = off (TF Serving's behaviour)",
    )
    add("--shadow_traffic_share", type=float, default=0.0, help="ours: predict calls mirrored")
    add("--shadow_version", type=int, default=None, help="the shadow's version number")
    add("--shadow_version_label", default=None, help="or: the shadow's version label")
    add("--shadow_log_prefix", default="", help="default: <request-log dir>/shadow/<prefix>")
    add("--request_log_max_file_bytes", type=int, default=64 << 20)
    add("--request_log_max_files", type=int, default=10)
    flag("--enable_signature_method_name_check", False)
    add("--log_level", default="INFO")
    flag(
        "--exit_with_parent",
        False,
        help="ours: shut down (as on SIGTERM) when the process that started the server ends, "
        "even by kill -9 (serving.process.ServerProcess sets it)",
    )
    add_http_limit_flags(p)
    return p


def add_http_limit_flags(p: argparse.ArgumentParser) -> None:
    """The REST server's limits and timeouts (ours: serving/http.py, serving/README.md)."""
    add = p.add_argument
    add(
        "--rest_api_max_header_bytes",
        type=int,
        default=64 << 10,
        help="request line + headers (431)",
    )
    add("--rest_api_max_header_count", type=int, default=100, help="header fields (431)")
    add("--rest_api_max_url_bytes", type=int, default=8 << 10, help="URL length (414)")
    add(
        "--rest_api_max_pipelined_requests",
        type=int,
        default=64,
        help="unanswered requests per connection before it is no longer read",
    )
    add(
        "--rest_api_max_unsent_response_bytes",
        type=int,
        default=256 << 10,
        help="response bytes a client has not read before its connection is no longer read",
    )
    add("--rest_api_header_timeout_seconds", type=float, default=15, help="408 and close")
    add("--rest_api_body_timeout_seconds", type=float, default=60, help="408 and close")
    add("--rest_api_idle_timeout_seconds", type=float, default=75, help="keep-alive idle close")
    add(
        "--rest_api_max_connections",
        type=int,
        default=0,
        help="open REST connections (0 = 3/4 of the soft open-files limit); at the cap the "
        "oldest idle connection is closed, else the new one gets 503",
    )


def parse_flags(argv=None) -> argparse.Namespace:
    """Parses flags; like upstream, unknown arguments are reported, not fatal."""
    args, unknown = build_parser().parse_known_args(argv)
    for item in unknown:
        print(f"unknown argument: {item}")
    return args


def model_server_config(args: argparse.Namespace) -> model_server_config_pb2.ModelServerConfig:
    """Builds the ModelServerConfig from `--model_config_file` or the model flags.

    Raises:
      ValueError: with TF Serving's startup error text.
    """
    if args.model_config_file:
        with open(args.model_config_file) as f:
            return parse_model_config(f.read())
    if not args.model_base_path:
        raise ValueError(
            "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = args.model_name
    model.base_path = os.path.abspath(args.model_base_path)
    model.model_platform = "tensorflow"
    return config


def parse_model_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a text-format ModelServerConfig."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(
            f"Error parsing text-format tensorflow.serving.ModelServerConfig: {e}"
        ) from None
    return config


def _monitoring_class():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="serving_local/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    label = descriptor_pb2.FieldDescriptorProto
    prom = file_proto.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, label=label.LABEL_OPTIONAL, type=label.TYPE_BOOL)
    prom.field.add(name="path", number=2, label=label.LABEL_OPTIONAL, type=label.TYPE_STRING)
    mon = file_proto.message_type.add(name="MonitoringConfig")
    mon.field.add(
        name="prometheus_config",
        number=1,
        label=label.LABEL_OPTIONAL,
        type=label.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def monitoring_path(path: str):
    """Reads a MonitoringConfig file; returns the Prometheus path or None if off."""
    if not path:
        return None
    config = _monitoring_class()()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_MONITORING_PATH
