"""gRPC PredictionService and ModelService over the tensorflow-serving-api protos.

The servicers run on grpc.aio in the same event loop as REST; signature calls
go through the shared batching scheduler and complete via loop callbacks.

Methods are registered on raw bytes, so the server controls decoding:

* an undecodable message answers INTERNAL with an empty message, as TF
  Serving's grpc++ server does (`GenericDeserialize` fails before the
  handler runs and sends `Status(INTERNAL, InitializationErrorString())`,
  which is empty for proto3 messages);
* requests and responses over `OFFLOAD_BYTES` (or tensors of more than
  `_OFFLOAD_ELEMENTS` elements, e.g. a small request declaring a big
  broadcast shape) are parsed, decoded and serialized on a worker thread,
  not on the event loop;
* every tensor and example list is charged to the request's
  `serving.limits.Budget` before it is allocated.

Over 400 lines: both TF Serving gRPC services (PredictionService's five methods,
ModelService's two) and the raw-bytes registration, offloading and error mapping they
share; each method mirrors one upstream handler's checks and messages.
"""

import asyncio
import concurrent.futures
import logging
import math
import time

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from serving import inference, limits, model_info
from serving.errors import Code, ServingError
from serving.servable import serialize_input
from serving.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger(__name__)

OFFLOAD_BYTES = 1 << 20  # bigger messages are (de)serialized off the event loop
_OFFLOAD_ELEMENTS = 1 << 18  # tensors with more elements are built off the loop
_PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
_MODEL_SERVICE = "tensorflow.serving.ModelService"


def _request_id(request, context) -> bytes:
    """`x-request-id` call metadata, else the request's `client_id`."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return value.encode() if isinstance(value, str) else value
    return request.client_id


def _resolve_spec(manager, spec_holder):
    if not spec_holder.HasField("model_spec"):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    return _resolve(manager, spec_holder.model_spec)


def _resolve(manager, spec):
    if not spec.name:
        raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return manager.resolve(spec.name, version, label)


def _predict_feeds(signature, request, budget: limits.Budget) -> dict:
    sent = set(request.inputs)
    wanted = set(signature.inputs)
    if len(sent) != len(wanted):
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
        )
    feeds = {}
    for alias, spec in signature.inputs.items():
        if alias not in request.inputs:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Signature input alias: {alias}(feed name: {spec.tensor_name}) not found in "
                f"request and no default value provided. Inputs expected to be in the "
                f"request {{{','.join(sorted(sent))}}}, or default input alias set: ",
            )
        try:
            feeds[alias] = from_tensor_proto(request.inputs[alias], alias, budget)
        except ServingError:
            raise
        except Exception:
            raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {alias}") from None
    return feeds


def _output_filter(signature, request) -> tuple:
    if not request.output_filter:
        return signature.output_names
    seen = []
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to "
                f"be in the set {{{','.join(signature.output_names)}}}.",
            )
        if alias in seen:
            raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return tuple(seen)


def checked_examples(request_input, budget: limits.Budget):
    """`serialize_input` after charging the examples (and context copies) to `budget`."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context_bytes = request_input.example_list.examples, 0
    elif kind == "example_list_with_context":
        examples = request_input.example_list_with_context.examples
        context_bytes = request_input.example_list_with_context.context.ByteSize()
    else:
        examples, context_bytes = (), 0
    limits.charge_examples(
        budget, len(examples), context_bytes, sum(e.ByteSize() for e in examples)
    )
    return serialize_input(request_input)


class PredictionServicer:
    """Predict, Classify, Regress, MultiInference and GetModelMetadata (grpc.aio).

    Args:
      manager: the ModelManager.
      scheduler: the batching Scheduler.
      metrics: ServingMetrics.
      request_logger: RequestLogger or None.
      request_limits: caps on each request's decoded tensors.
      executor: where big messages are parsed, decoded and serialized.
      shadow: the ShadowMirror (serving/shadow.py) or None.
    """

    def __init__(
        self,
        manager,
        scheduler,
        metrics,
        request_logger=None,
        request_limits: limits.RequestLimits = limits.UNLIMITED,
        executor=None,
        shadow=None,
    ):
        self.manager = manager
        self.scheduler = scheduler
        self.metrics = metrics
        self.request_logger = request_logger
        self.limits = request_limits
        self.executor = executor
        self.shadow = shadow

    async def _offload(self, big: bool, fn, *args):
        if not big or self.executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _call(self, api: str, raw: bytes, context, request_class, body):
        """Parses, runs `body(request, big)` and serializes; errors end the call.

        No reference to the request, its tensors or a traceback outlives a
        failed call: the error loses its traceback and the status is set on
        the context (`_fail`) instead of raised.
        """
        started = time.perf_counter()
        big = len(raw) > OFFLOAD_BYTES
        request = await self._offload(big, _parse, request_class, raw)
        if request is None:
            return _fail(context, grpc.StatusCode.INTERNAL, "")
        del raw
        model = _model_name(request)
        error = None
        try:
            response, version, examples = await body(request, big)
            del request
            payload = await self._offload(
                response.ByteSize() > OFFLOAD_BYTES, response.SerializeToString
            )
        except ServingError as e:
            error = _detached(e)
        except MemoryError:
            error = ServingError(
                Code.RESOURCE_EXHAUSTED,
                "Out of memory while processing the request; lower "
                "--max_request_tensor_elements / --max_decoded_request_bytes",
            )
        if error is not None:
            self.metrics.record_request(model, None, api, "GRPC", error.code.name)
            return _fail(context, error.grpc_code, error.grpc_details())
        latency = (time.perf_counter() - started) * 1e6
        self.metrics.record_request(model, version, api, "GRPC", "OK", latency, examples)
        return payload

    async def _run(self, servable, signature, feeds):
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(outputs, error):
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(outputs)

        self.scheduler.submit(servable, signature, feeds, done, loop)
        return await future

    async def Predict(self, raw, context):
        async def body(request, big):
            started = time.perf_counter()
            servable = _resolve_spec(self.manager, request)
            signature = inference.predict_signature_grpc(
                servable, request.model_spec.signature_name
            )
            declared = sum(
                [math.prod([d.size for d in t.tensor_shape.dim]) for t in request.inputs.values()]
            )
            feeds = await self._offload(
                big or declared > _OFFLOAD_ELEMENTS,
                _predict_feeds,
                signature,
                request,
                self.limits.budget(),
            )
            fetch = _output_filter(signature, request)
            outputs = await self._run(servable, signature, feeds)
            spec = model_info.model_spec(servable.name, servable.version, signature.key)
            elements = sum(outputs[a].size for a in fetch)
            response = await self._offload(
                elements > _OFFLOAD_ELEMENTS, _predict_response, spec, outputs, fetch
            )
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                logger.log_predict(
                    servable,
                    signature.key,
                    feeds,
                    {a: outputs[a] for a in fetch},
                    _request_id(request, context),
                )
            if self.shadow is not None:
                self.shadow.offer(
                    servable,
                    signature.key,
                    feeds,
                    outputs if len(fetch) == len(outputs) else {a: outputs[a] for a in fetch},
                    (time.perf_counter() - started) * 1e6,
                    _request_id(request, context),
                )
            rows = [v.shape[0] for v in feeds.values() if v.ndim]
            return response, servable.version, rows[0] if rows else 0

        return await self._call("Predict", raw, context, predict_pb2.PredictRequest, body)

    async def Classify(self, raw, context):
        async def body(request, big):
            servable = _resolve_spec(self.manager, request)
            examples = await self._offload(
                big, checked_examples, request.input, self.limits.budget()
            )
            signature = inference.classify_signature(servable, request.model_spec.signature_name)
            outputs = await self._run(servable, signature, {"inputs": examples})
            results = inference.classification_results(outputs, len(examples))
            spec = model_info.model_spec(servable.name, servable.version, signature.key)
            response = classification_pb2.ClassificationResponse(model_spec=spec)
            inference.fill_classifications(results, response.result)
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                logger.log_classify(servable, signature.key, request.input, results)
            return response, servable.version, len(examples)

        return await self._call(
            "Classify", raw, context, classification_pb2.ClassificationRequest, body
        )

    async def Regress(self, raw, context):
        async def body(request, big):
            servable = _resolve_spec(self.manager, request)
            examples = await self._offload(
                big, checked_examples, request.input, self.limits.budget()
            )
            signature = inference.regress_signature(servable, request.model_spec.signature_name)
            outputs = await self._run(servable, signature, {"inputs": examples})
            values = inference.regression_results(outputs, len(examples))
            spec = model_info.model_spec(servable.name, servable.version, signature.key)
            response = regression_pb2.RegressionResponse(model_spec=spec)
            for value in values:
                response.result.regressions.add(value=value)
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                logger.log_regress(servable, signature.key, request.input, values)
            return response, servable.version, len(examples)

        return await self._call("Regress", raw, context, regression_pb2.RegressionRequest, body)

    async def MultiInference(self, raw, context):
        """Classify/regress tasks of one model over one input, in one session run."""

        async def body(request, big):
            spec = request.tasks[0].model_spec if request.tasks else None
            if spec is None or not spec.name:
                # upstream resolves ModelSpec::default_instance() (no name).
                raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
            servable = _resolve(self.manager, spec)
            tasks, signature = inference.multi_inference_plan(servable, request)
            examples = await self._offload(
                big, checked_examples, request.input, self.limits.budget()
            )
            feeds = {alias: examples for alias in signature.inputs}
            outputs = await self._run(servable, signature, feeds)
            response = inference.multi_inference_response(servable, tasks, outputs, len(examples))
            return response, servable.version, len(examples)

        return await self._call(
            "MultiInference", raw, context, inference_pb2.MultiInferenceRequest, body
        )

    async def GetModelMetadata(self, raw, context):
        async def body(request, big):
            servable = _resolve_spec(self.manager, request)
            model_info.check_metadata_fields(list(request.metadata_field))
            return model_info.metadata_response(servable), servable.version, 0

        return await self._call(
            "GetModelMetadata", raw, context, get_model_metadata_pb2.GetModelMetadataRequest, body
        )


def _fail(context, code: grpc.StatusCode, details: str) -> bytes:
    """Ends the call with `code` without raising.

    `context.abort` raises an exception whose traceback holds the handler
    frames (and so the request bytes) in a cycle with the call state; a
    status set on the context frees them as soon as the call ends.
    """
    context.set_code(code)
    context.set_details(details)
    return b""


def _detached(error: ServingError) -> ServingError:
    """A copy of `error` without traceback or context.

    The original's traceback reaches the frames that held the request's
    tensors, through a cycle (the awaited future holds the error) that only
    a full garbage collection would free; dropping it frees them at once.
    """
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return ServingError(error.code, error.message)


def _parse(request_class, raw: bytes):
    """The message, or None when `raw` does not decode as `request_class`."""
    try:
        return request_class.FromString(raw)
    except Exception:  # protobuf DecodeError (also for bad UTF-8 in a string field)
        return None


def _model_name(request) -> str:
    if isinstance(request, inference_pb2.MultiInferenceRequest):
        return request.tasks[0].model_spec.name if request.tasks else ""
    return request.model_spec.name if request.HasField("model_spec") else ""


def _predict_response(spec, outputs: dict, fetch: tuple):
    response = predict_pb2.PredictResponse(model_spec=spec)
    for alias in fetch:
        response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias]))
    return response


class ModelServicer:
    """GetModelStatus and HandleReloadConfigRequest.

    Args:
      manager: the ModelManager.
      reload_config: `fn(ModelServerConfig)` applying a config, or None when
        config reload over gRPC is off (`--enable_grpc_config_reload=false`,
        the default): then every reload answers UNIMPLEMENTED and is logged
        with the caller's address.
    """

    def __init__(self, manager, reload_config=None):
        self.manager = manager
        self._reload_config = reload_config

    async def GetModelStatus(self, raw, context):
        request = _parse(get_model_status_pb2.GetModelStatusRequest, raw)
        if request is None:
            return _fail(context, grpc.StatusCode.INTERNAL, "")
        error = None
        try:
            if not request.HasField("model_spec"):
                raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            entries = self.manager.version_states(spec.name, version)
        except ServingError as e:
            error = _detached(e)
        if error is not None:
            return _fail(context, error.grpc_code, error.grpc_details())
        return model_info.status_response(entries).SerializeToString()

    async def HandleReloadConfigRequest(self, raw, context):
        """Applies the config and waits for new models (off the event loop).

        As upstream, a failed reload answers its error as the call's status
        (grpc++ sends no response message with a non-OK status).
        """
        request = _parse(model_management_pb2.ReloadConfigRequest, raw)
        if request is None:
            return _fail(context, grpc.StatusCode.INTERNAL, "")
        peer = context.peer()
        error = None
        if self._reload_config is None:
            log.warning(
                "Refused HandleReloadConfigRequest from %s: config reload over gRPC is "
                "disabled (--enable_grpc_config_reload=false)",
                peer,
            )
            error = ServingError(
                Code.UNIMPLEMENTED,
                "Config reload over gRPC is disabled; start the server with "
                "--enable_grpc_config_reload=true to allow it",
            )
        else:
            log.info(
                "HandleReloadConfigRequest from %s: %s",
                peer,
                text_format.MessageToString(request.config, as_one_line=True),
            )
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._reload_config, request.config)
            except ServingError as e:
                error = _detached(e)
                log.error("ReloadConfig failed: %s", e.message)
        if error is not None:
            return _fail(context, error.grpc_code, error.grpc_details())
        return model_management_pb2.ReloadConfigResponse().SerializeToString()


def _raw_handlers(service: str, servicer, methods: tuple):
    return grpc.method_handlers_generic_handler(
        service,
        {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name)) for name in methods},
    )


async def start_grpc_server(
    host: str,
    port: int,
    manager,
    scheduler,
    metrics,
    request_logger=None,
    reload_config=None,
    max_request_bytes: int = 2**31 - 1,
    request_limits: limits.RequestLimits = limits.UNLIMITED,
    shadow=None,
):
    """Starts the grpc.aio server on the running loop; returns (server, bound_port).

    Args:
      reload_config: `fn(ModelServerConfig)` for HandleReloadConfigRequest, or
        None to refuse config reloads over gRPC.
      max_request_bytes: the largest request message accepted (bigger ones
        answer RESOURCE_EXHAUSTED before they are read).
      request_limits: caps on each request's decoded tensors.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.so_reuseport", 0),
        ],
    )
    executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="grpc-codec")
    predictions = PredictionServicer(
        manager, scheduler, metrics, request_logger, request_limits, executor, shadow
    )
    server.add_generic_rpc_handlers(
        (
            _raw_handlers(
                _PREDICTION_SERVICE,
                predictions,
                ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata"),
            ),
            _raw_handlers(
                _MODEL_SERVICE,
                ModelServicer(manager, reload_config),
                ("GetModelStatus", "HandleReloadConfigRequest"),
            ),
        )
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC port {host}:{port}")
    await server.start()
    return server, bound
