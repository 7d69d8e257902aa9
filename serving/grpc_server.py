"""gRPC PredictionService and ModelService over the tensorflow-serving-api protos.

The servicers run on grpc.aio in the same event loop as REST; signature calls
go through the shared batching scheduler and complete via loop callbacks.
"""

import asyncio
import logging
import time

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import inference, model_info
from serving.errors import Code, ServingError
from serving.servable import serialize_input
from serving.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger(__name__)

_MAX_MESSAGE = 2**31 - 1


def _request_id(request, context) -> bytes:
    """`x-request-id` call metadata, else the request's `client_id`."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return value.encode() if isinstance(value, str) else value
    return request.client_id


def _resolve_spec(manager, spec_holder):
    if not spec_holder.HasField("model_spec"):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    spec = spec_holder.model_spec
    if not spec.name:
        raise ServingError(Code.INVALID_ARGUMENT, "ModelSpec has no name specified.")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return manager.resolve(spec.name, version, label)


def _predict_feeds(signature, request) -> dict:
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
            feeds[alias] = from_tensor_proto(request.inputs[alias])
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


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata (grpc.aio, on the server loop)."""

    def __init__(self, manager, scheduler, metrics, request_logger=None, shadow=None):
        self.manager = manager
        self.scheduler = scheduler
        self.metrics = metrics
        self.request_logger = request_logger
        self.shadow = shadow

    async def _call(self, api: str, request, context, body):
        started = time.perf_counter()
        model = request.model_spec.name if request.HasField("model_spec") else ""
        try:
            response, version, examples = await body()
        except ServingError as e:
            self.metrics.record_request(model, None, api, "GRPC", e.code.name)
            await context.abort(e.grpc_code, e.grpc_details())
        latency = (time.perf_counter() - started) * 1e6
        self.metrics.record_request(model, version, api, "GRPC", "OK", latency, examples)
        return response

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

    async def Predict(self, request, context):
        async def body():
            started = time.perf_counter()
            servable = _resolve_spec(self.manager, request)
            signature = inference.predict_signature_grpc(
                servable, request.model_spec.signature_name
            )
            feeds = _predict_feeds(signature, request)
            fetch = _output_filter(signature, request)
            outputs = await self._run(servable, signature, feeds)
            spec = model_info.model_spec(servable.name, servable.version, signature.key)
            response = predict_pb2.PredictResponse(model_spec=spec)
            for alias in fetch:
                response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias]))
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

        return await self._call("Predict", request, context, body)

    async def Classify(self, request, context):
        async def body():
            servable = _resolve_spec(self.manager, request)
            examples = serialize_input(request.input)
            signature = inference.classify_signature(servable, request.model_spec.signature_name)
            outputs = await self._run(servable, signature, {"inputs": examples})
            results = inference.classification_results(outputs, len(examples))
            spec = model_info.model_spec(servable.name, servable.version, signature.key)
            response = classification_pb2.ClassificationResponse(model_spec=spec)
            for classes in results:
                item = response.result.classifications.add()
                for label, score in classes:
                    item.classes.add(
                        label=label.decode("utf-8", "replace")
                        if isinstance(label, bytes)
                        else label,
                        score=score,
                    )
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                logger.log_classify(servable, signature.key, request.input, results)
            return response, servable.version, len(examples)

        return await self._call("Classify", request, context, body)

    async def Regress(self, request, context):
        async def body():
            servable = _resolve_spec(self.manager, request)
            examples = serialize_input(request.input)
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

        return await self._call("Regress", request, context, body)

    async def GetModelMetadata(self, request, context):
        async def body():
            servable = _resolve_spec(self.manager, request)
            model_info.check_metadata_fields(list(request.metadata_field))
            return model_info.metadata_response(servable), servable.version, 0

        return await self._call("GetModelMetadata", request, context, body)

    async def MultiInference(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, manager, reload_config=None):
        self.manager = manager
        self._reload_config = reload_config

    async def GetModelStatus(self, request, context):
        try:
            if not request.HasField("model_spec"):
                raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            entries = self.manager.version_states(spec.name, version)
        except ServingError as e:
            await context.abort(e.grpc_code, e.grpc_details())
        return model_info.status_response(entries)

    async def HandleReloadConfigRequest(self, request, context):
        """Applies the config and waits for new models (off the event loop)."""
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if self._reload_config is None:
                raise ServingError(Code.UNIMPLEMENTED, "Config reload is not enabled")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._reload_config, request.config)
        except ServingError as e:
            response.status.error_code = int(e.code)
            response.status.error_message = e.message
        return response


async def start_grpc_server(
    host: str,
    port: int,
    manager,
    scheduler,
    metrics,
    request_logger=None,
    reload_config=None,
    shadow=None,
):
    """Starts the grpc.aio server on the running loop; returns (server, bound_port)."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, scheduler, metrics, request_logger, shadow), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(manager, reload_config), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC port {host}:{port}")
    await server.start()
    return server, bound
