"""TF Serving's REST API: URL grammar, check order, bodies and status codes.

Every `/v1/...` request gets TF Serving's JSON answer (a framework error
page can never leak); the Prometheus path is served when monitoring is on;
every other path gets libevent's HTML 404, as upstream.
"""

import concurrent.futures
import logging
import re
import time
import urllib.parse

from tensorflow_serving.apis import input_pb2

from serving import inference, json_codec, json_response, limits, model_info
from serving.batching import BatchSlice
from serving.deferred_rows import DeferredRows
from serving.errors import Code, ServingError
from serving.json_dialect import parse_json_object, parse_nan_as_none

log = logging.getLogger(__name__)

_V1 = re.compile(r"/v1/.*", re.I | re.S)
_POST = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.I,
)
_GET = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.I,
)
_INT64_MAX = 2**63 - 1
_NOT_FOUND_HTML = (
    b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
    b"<H1>Not Found</H1>\n</BODY></HTML>\n"
)
_CORS = (
    (b"Access-Control-Allow-Origin", b"*"),
    (b"Access-Control-Allow-Methods", b"POST, GET"),
    (b"Access-Control-Allow-Headers", b"Content-Type"),
)
_ORIGIN = re.compile(rb"https?://")
_PARSE_OFF_LOOP_BYTES = 256 << 10  # bigger bodies are parsed on a worker thread


def _decode(text: str) -> str:
    """Percent-decodes one URL segment (the URL arrives latin-1 decoded)."""
    if "%" not in text and text.isascii():
        return text
    try:
        return urllib.parse.unquote_to_bytes(text.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise ServingError(
            Code.INVALID_ARGUMENT, f"URL segment '{text}' is not valid UTF-8"
        ) from None


def _version(text: str):
    if text is None:
        return None
    if len(text) > 19 or int(text) > _INT64_MAX:  # int() refuses > 4,300 digits
        raise ServingError(
            Code.INVALID_ARGUMENT, f"Failed to convert version: {text} to numeric.", empty_body=True
        )
    return int(text)


class RestApi:
    """The REST application behind `serving.http`.

    Args:
      manager: the ModelManager.
      scheduler: the batching Scheduler.
      metrics: ServingMetrics.
      request_logger: RequestLogger or None.
      monitoring_path: Prometheus path, or None when monitoring is off.
      enable_cors: add TF Serving's CORS headers.
      timeout_ms: `--rest_api_timeout_in_ms` (0: no deadline).
      request_limits: caps on each request's decoded tensors.
    """

    def __init__(
        self,
        manager,
        scheduler,
        metrics,
        request_logger=None,
        monitoring_path=None,
        enable_cors=False,
        timeout_ms: int = 30000,
        request_limits: limits.RequestLimits = limits.UNLIMITED,
        shadow=None,
    ):
        self.manager = manager
        self.scheduler = scheduler
        self.metrics = metrics
        self.request_logger = request_logger
        self.monitoring_path = monitoring_path
        self._extra = _CORS if enable_cors else ()
        self._timeout = timeout_ms / 1000.0 if timeout_ms > 0 else None
        self.limits = request_limits
        self.shadow = shadow  # a ShadowMirror: offered every answered predict call
        self.loop = None
        self._parse_pool = None

    # -- entry ----------------------------------------------------------------

    def handle(self, request) -> None:
        """Dispatches one request; always ends in `request.respond`."""
        url = request.url
        if self.monitoring_path is not None and url.split("?", 1)[0] == self.monitoring_path:
            self._monitoring(request)
        elif _V1.fullmatch(url):
            self._v1(request)
        else:
            request.respond(404, _NOT_FOUND_HTML, b"text/html")

    def _monitoring(self, request) -> None:
        if request.url != self.monitoring_path:
            body = json_response.encode_error(
                f"Unexpected path: {request.url}. Should be {self.monitoring_path}"
            )
            request.respond(400, body)
            return
        request.respond(200, self.metrics.render(), b"text/plain; version=0.0.4")

    def _v1(self, request) -> None:
        method = request.method
        if method == "OPTIONS":
            origin = request.headers.get(b"origin", b"")
            request.respond(200 if _ORIGIN.match(origin) else 400, b"", extra_headers=self._extra)
            return
        started = time.perf_counter()
        model = ""
        try:
            if method == "POST":
                match = _POST.fullmatch(request.url)
                if match is None or match.group(4) not in ("predict", "classify", "regress"):
                    raise self._malformed(request)
                model = _decode(match.group(1))
                version = _version(match.group(2))
                label = _decode(match.group(3)) if match.group(3) is not None else None
                post = (request, match.group(4), model, version, label, started)
                if len(request.body) >= _PARSE_OFF_LOOP_BYTES and self.loop is not None:
                    self._parse_off_loop(post)
                else:
                    nan_doc = parse_nan_as_none(request.body) if post[1] == "predict" else None
                    if nan_doc is not None:
                        self._post(*post, nan_doc, nan_as_none=True)
                    else:
                        self._post(*post, parse_json_object(request.body))
            elif method == "GET":
                match = _GET.fullmatch(request.url)
                if match is None:
                    raise self._malformed(request)
                if match.group(1) is None:
                    raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
                model = _decode(match.group(1))
                version = _version(match.group(2))
                label = _decode(match.group(3)) if match.group(3) is not None else None
                if match.group(4) == "metadata":
                    servable = self.manager.resolve(model, version, label)
                    body = model_info.metadata_json(servable)
                else:
                    entries = self.manager.version_states(model, version)
                    body = model_info.status_json(model_info.status_response(entries))
                self._ok(request, model, None, "", started, body)
            else:
                raise self._malformed(request)
        except ServingError as e:
            self._error(request, model, e)

    @staticmethod
    def _malformed(request) -> ServingError:
        return ServingError(
            Code.INVALID_ARGUMENT, f"Malformed request: {request.method} {request.url}"
        )

    # -- responses --------------------------------------------------------------

    def _ok(self, request, model, version, api, started, body) -> None:
        latency = (time.perf_counter() - started) * 1e6
        self.metrics.record_request(model, version, api, "REST", "OK", latency)
        request.respond(200, body, extra_headers=self._extra)

    def _error(self, request, model, error: ServingError, version=None, api="") -> None:
        self.metrics.record_request(model, version, api, "REST", error.code.name)
        body = b"" if error.empty_body else json_response.encode_error(error.message)
        request.respond(error.http_status, body, extra_headers=self._extra)

    # -- inference ----------------------------------------------------------------

    def _parse_off_loop(self, post: tuple) -> None:
        """Parses a big body on a worker thread (the event loop keeps serving), then posts."""
        if self._parse_pool is None:
            self._parse_pool = concurrent.futures.ThreadPoolExecutor(1, "rest-parse")
        request, model = post[0], post[2]
        future = self.loop.run_in_executor(self._parse_pool, parse_json_object, request.body)

        def parsed(done) -> None:
            try:
                self._post(*post, done.result())
            except ServingError as e:
                self._error(request, model, e)
            except Exception:
                log.exception("Unhandled error for %s %s", request.method, request.url)
                request.respond(500, json_response.encode_error("Internal error"))

        future.add_done_callback(parsed)

    def _post(
        self, request, verb, model, version, label, started, doc: dict, nan_as_none=False
    ) -> None:
        """Decodes, checks and submits a POST; `nan_as_none`: `doc` is a candidate
        from `parse_nan_as_none`, used only if `defer_nan_rows` accepts it."""
        if nan_as_none and type(doc.get("signature_name", "")) is not str:
            doc, nan_as_none = parse_json_object(request.body), False
        signature_name = json_codec.read_signature_name(doc)
        if verb == "predict":
            servable = self.manager.resolve(model, version, label)
            signature = inference.predict_signature_rest(servable, signature_name)
            feeds = None
            if nan_as_none:
                feeds = json_codec.defer_nan_rows(doc, signature.input_dtypes, request.body)
                row = True
                if feeds is None:
                    doc = parse_json_object(request.body)
            if feeds is None:
                feeds, row = json_codec.decode_predict_inputs(
                    doc, signature.input_dtypes, request.body, defer=True
                )
            if type(feeds) is DeferredRows:  # arrays built by the batch thread
                limits.charge_tensors(
                    self.limits.budget(), feeds.elements, feeds.decoded_bytes, feeds.charges
                )
            else:
                limits.charge_arrays(self.limits.budget(), feeds)
            finish = self._finish_predict(
                request,
                servable,
                signature,
                feeds,
                row,
                started,
                request.headers.get(b"x-request-id", b""),
            )
        else:
            examples, context = json_codec.decode_examples(doc)
            servable = self.manager.resolve(model, version, label)
            if verb == "classify":
                signature = inference.classify_signature(servable, signature_name)
            else:
                signature = inference.regress_signature(servable, signature_name)
            prefix = context.SerializeToString() if context is not None else b""
            limits.charge_examples(
                self.limits.budget(),
                len(examples),
                len(prefix),
                sum(e.ByteSize() for e in examples),
            )
            serialized = [prefix + e.SerializeToString() for e in examples]
            feeds = {"inputs": inference.examples_array(serialized)}
            finish = self._finish_examples(
                request, verb, servable, signature, examples, context, len(serialized), started
            )
        try:
            self.scheduler.submit(servable, signature, feeds, finish, self.loop)
        except ServingError as e:
            self._error(request, model, e, servable.version, verb)
            return
        if self._timeout is not None and self.loop is not None and not request.responded:
            request.timer = self.loop.call_later(
                self._timeout, self._expire, request, servable, verb
            )

    def _expire(self, request, servable, verb) -> None:
        """`--rest_api_timeout_in_ms` elapsed: answer 504 (late results are dropped)."""
        request.timer = None
        error = ServingError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        self._error(request, servable.name, error, servable.version, verb)

    def _finish_predict(self, request, servable, signature, feeds, row, started, request_id=b""):
        def done(outputs, error):
            if error is None:
                try:
                    body = json_response.encode_predict_response(outputs, row)
                except ServingError as e:
                    error = e
            if error is not None:
                self._error(request, servable.name, error, servable.version, "predict")
                return
            if type(feeds) is DeferredRows:
                rows = feeds.rows
            else:
                rows = next(iter(feeds.values())).shape[0] if row else 0
            latency = (time.perf_counter() - started) * 1e6
            self.metrics.record_request(
                servable.name, servable.version, "predict", "REST", "OK", latency, rows
            )
            request.respond(200, body, extra_headers=self._extra)
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                logger.log_predict(servable, signature.key, _arrays(feeds), outputs, request_id)
            if self.shadow is not None and self.shadow.share > 0:
                # a merged batch's copy is taken from the batch (its own rows are not needed)
                own = feeds if type(outputs) is BatchSlice else _arrays(feeds)
                self.shadow.offer(servable, signature.key, own, outputs, latency, request_id)

        return done

    def _finish_examples(
        self, request, verb, servable, signature, examples, context, batch, started
    ):
        def done(outputs, error):
            try:
                if error is not None:
                    raise error
                if verb == "classify":
                    results = inference.classification_results(outputs, batch)
                    body = json_response.encode_classify_response(results)
                else:
                    results = inference.regression_results(outputs, batch)
                    body = json_response.encode_regress_response(results)
            except ServingError as e:
                self._error(request, servable.name, e, servable.version, verb)
                return
            latency = (time.perf_counter() - started) * 1e6
            self.metrics.record_request(
                servable.name, servable.version, verb, "REST", "OK", latency, batch
            )
            request.respond(200, body, extra_headers=self._extra)
            logger = self.request_logger
            if logger is not None and logger.sampled(servable.name):
                request_input = _input_proto(examples, context)
                if verb == "classify":
                    logger.log_classify(servable, signature.key, request_input, results)
                else:
                    logger.log_regress(servable, signature.key, request_input, results)

        return done


def _arrays(feeds: dict) -> dict:
    """A request's own input arrays (a built DeferredRows takes its rows now)."""
    return feeds.fill() if type(feeds) is DeferredRows else feeds


def _input_proto(examples, context) -> input_pb2.Input:
    if context is None:
        return input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))
    return input_pb2.Input(
        example_list_with_context=input_pb2.ExampleListWithContext(
            examples=examples, context=context
        )
    )
