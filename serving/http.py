"""A minimal HTTP/1.1 server on asyncio + httptools (no web framework).

It frames requests and responses: keep-alive, pipelining (responses are
written in request order), chunked and gzip request bodies, half-closed
clients (a client that shuts down its sending side still gets its
responses). It also defends itself (`HttpLimits`): the request line and
headers, the URL, the body and the gunzipped body are capped (431, 414,
413; a gzip body is inflated only up to the cap), a client that pipelines
without reading responses is no longer read from, slow or idle clients are
timed out (408 or a silent close), and the number of open connections is
capped (the oldest idle connection makes room, else 503). Timeouts are
checked by one periodic sweep, not a timer per request.

Routing and everything a client sees in a body belongs to the application
object, whose `handle(request)` must eventually call `request.respond(...)`
exactly once (possibly from a later loop callback).

Over 400 lines: one HTTP/1.1 connection state machine (``_Connection``: framing,
pipelining order, flow control, limits and timeouts all read and change its
per-connection state) and the server that owns the connections and sweeps them;
splitting the limits from the protocol callbacks would spread one state machine over two
files.
"""

import asyncio
import collections
import dataclasses
import email.utils
import json
import logging
import resource
import time
import zlib

import httptools

log = logging.getLogger(__name__)

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
JSON = b"application/json"
_OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
SHUTTING_DOWN = "The server is shutting down"

# Connection phases.
_IDLE = 0  # between requests
_HEAD = 1  # reading the request line and headers
_BODY = 2  # reading the body
_DONE = 3  # failed or shutting down: nothing more is parsed

_HEAD_SLICE = 4096  # header bytes fed per parser call (bounds the overcount of the header cap)
_BODY_SLICE = 65536
_LINGER_SECONDS = 2.0  # after an error, read and drop what the client still sends ...
_LINGER_BYTES = 1 << 20  # ... for this long, and at most this much
_MAX_REFUSED = 64  # connections over the cap that may linger after their 503


def default_max_connections() -> int:
    """3/4 of the soft open-files limit (the rest is for models, logs and gRPC)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(1, soft * 3 // 4)


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """What one client may cost; see the `--rest_api_*` flags in serving/config.py."""

    max_body_bytes: int = 64 << 20  # also the size of a gunzipped body
    max_header_bytes: int = 64 << 10  # request line and headers
    max_header_count: int = 100
    max_url_bytes: int = 8 << 10
    max_pipelined_requests: int = 64  # read but not yet answered, per connection
    max_unsent_bytes: int = 256 << 10  # response bytes the client has not read yet
    header_timeout: float = 15.0
    body_timeout: float = 60.0
    idle_timeout: float = 75.0
    max_connections: int = 0  # 0: default_max_connections()


def limits_from_flags(args) -> HttpLimits:
    """HttpLimits from the `--rest_api_*` and `--max_request_bytes` flags."""
    return HttpLimits(
        max_body_bytes=args.max_request_bytes,
        max_header_bytes=args.rest_api_max_header_bytes,
        max_header_count=args.rest_api_max_header_count,
        max_url_bytes=args.rest_api_max_url_bytes,
        max_pipelined_requests=args.rest_api_max_pipelined_requests,
        max_unsent_bytes=args.rest_api_max_unsent_response_bytes,
        header_timeout=args.rest_api_header_timeout_seconds,
        body_timeout=args.rest_api_body_timeout_seconds,
        idle_timeout=args.rest_api_idle_timeout_seconds,
        max_connections=args.rest_api_max_connections,
    )


class _Clock:
    """Caches the `Date` header value for one second."""

    second = 0
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = email.utils.formatdate(now, usegmt=True).encode()
        return cls.value


def _error_body(message: str) -> bytes:
    return b'{\n    "error": %s\n}' % json.dumps(message).encode()


def _raw_response(status: int, message: str) -> bytes:
    body = _error_body(message)
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        % (
            status,
            _REASONS[status],
            len(body),
        )
        + b"Connection: close\r\n\r\n"
        + body
    )


class Request:
    """One parsed HTTP request and its pending response slot."""

    __slots__ = ("method", "url", "headers", "body", "keep_alive", "timer", "_conn", "_response")

    def __init__(self, conn, method: str, url: str, headers: dict, body: bytes, keep_alive: bool):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.timer = None  # optional deadline handle, cancelled on respond
        self._conn = conn
        self._response = None

    @property
    def responded(self) -> bool:
        return self._response is not None

    def respond(
        self, status: int, body: bytes, content_type: bytes = JSON, extra_headers: tuple = ()
    ) -> None:
        """Queues the response; it is written once earlier ones are out."""
        if self._response is not None:
            return
        if self.timer is not None:
            self.timer.cancel()
        if status == 200 and content_type is JSON:
            first = _OK_JSON
        else:
            first = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n" % (
                status,
                _REASONS.get(status, b"Unknown"),
                content_type,
            )
        head = [first, b"Date: ", _Clock.date(), b"\r\nContent-Length: %d\r\n" % len(body)]
        for name, value in extra_headers:
            head.append(name + b": " + value + b"\r\n")
        if self.keep_alive and self._conn.server.draining:
            self.keep_alive = False
        if not self.keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        self._response = b"".join(head) + (body if self.method != "HEAD" else b"")
        self._conn.flush()


class _Connection(asyncio.Protocol):
    def __init__(self, server: "HttpServer"):
        self.server = server
        self._app = server.app
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self._transport = None
        self._pending = collections.deque()  # requests in order, answered or not
        self._stash = b""  # input not parsed yet because the client is too far ahead
        self._paused = False  # reading paused (pipelining back-pressure)
        self._paused_at = 0.0
        self._write_paused = False  # the transport's buffer is over max_unsent_bytes
        self._feeding = False
        self._eof = False
        self._discarded = 0
        self.phase = _IDLE
        self.since = server.now  # when the current phase began (sweep-granular clock)
        self._reset()

    def _reset(self):
        self._url = b""
        self._headers = {}
        self._header_count = 0
        self._head_bytes = 0
        self._body = []
        self._size = 0
        self._inflater = None
        self._inflated = 0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        transport.set_write_buffer_limits(high=self._limits.max_unsent_bytes)
        self.server.add(self)

    def connection_lost(self, exc):
        self._transport = None
        self.phase = _DONE
        self._stash = b""
        self.server.discard(self)

    def pause_writing(self):
        self._write_paused = True
        self._pause()

    def resume_writing(self):
        self._write_paused = False
        self._maybe_resume()

    def eof_received(self):
        """The client shut down its sending side: answer what was read, then close."""
        self._eof = True
        if self.phase == _DONE and not self._pending:
            return False
        if self.phase in (_HEAD, _BODY) and not self._stash:
            self.phase = _DONE  # this request can never complete
        return self._busy()  # True keeps the transport open to write the responses

    def data_received(self, data: bytes):
        if self.phase == _DONE:  # failed: drop what the client still sends (lingering close)
            self._discarded += len(data)
            if self._discarded > _LINGER_BYTES:
                self.close()
            return
        if self._stash or self._feeding:
            self._stash += data
            return
        self._feed(data)

    # -- parsing ------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._feeding = True
        try:
            limit = self._limits.max_pipelined_requests
            while data and self.phase != _DONE:
                if len(self._pending) >= limit or self._write_paused:
                    self._stash = data
                    self._pause()
                    return
                if self.phase == _BODY:
                    size = _BODY_SLICE
                else:
                    room = self._limits.max_header_bytes - self._head_bytes
                    size = max(1, min(_HEAD_SLICE, room + 1))
                chunk, data = data[:size], data[size:]
                try:
                    self._parser.feed_data(chunk)
                except httptools.HttpParserUpgrade:
                    self._fail(400, "Protocol upgrades are not supported")
                except httptools.HttpParserError as e:
                    self._fail(400, f"Malformed HTTP request: {e}")
                if self.phase == _HEAD:
                    # A message that began inside this chunk is charged the whole chunk,
                    # so the cap may act up to _HEAD_SLICE bytes early.
                    self._head_bytes += len(chunk)
                    if self._head_bytes > self._limits.max_header_bytes:
                        self._fail(
                            431,
                            f"Request header fields too large (limit "
                            f"{self._limits.max_header_bytes} bytes)",
                        )
        finally:
            self._feeding = False
        if self._eof and self.phase != _DONE and not data:
            if self.phase != _IDLE:
                self.phase = _DONE
            self._close_if_done()

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._paused_at = time.monotonic()
            self._transport.pause_reading()

    def _maybe_resume(self) -> None:
        if not self._paused or self._write_paused or self._transport is None:
            return
        if len(self._pending) > self._limits.max_pipelined_requests // 2:
            return
        self._paused = False
        if self._stash:
            stash, self._stash = self._stash, b""
            asyncio.get_running_loop().call_soon(self._resume_feed, stash)
        elif not self._eof:
            self._transport.resume_reading()

    def _resume_feed(self, stash: bytes) -> None:
        if self._transport is None:
            return
        self._feed(stash)  # may pause again
        if not self._paused and not self._eof and self._transport is not None:
            self._transport.resume_reading()

    # -- httptools callbacks ------------------------------------------------------

    def on_message_begin(self):
        if self.phase == _DONE:
            return
        self._reset()
        self.phase = _HEAD
        self.since = self.server.now

    def on_url(self, url: bytes):
        if self.phase == _DONE:
            return
        self._url += url
        if len(self._url) > self._limits.max_url_bytes:
            self._fail(414, f"Request URL too long (limit {self._limits.max_url_bytes} bytes)")

    def on_header(self, name: bytes, value: bytes):
        if self.phase == _DONE:
            return
        self._header_count += 1
        if self._header_count > self._limits.max_header_count:
            self._fail(
                431, f"Too many request header fields (limit {self._limits.max_header_count})"
            )
            return
        self._headers[name.lower()] = value

    def on_headers_complete(self):
        if self.phase == _DONE:
            return
        self.phase = _BODY
        self.since = self.server.now
        limit = self._limits.max_body_bytes
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            self._fail(413, f"Request body too large (limit {limit} bytes)")
            return
        if b"gzip" in self._headers.get(b"content-encoding", b"").lower():
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # as curl expects

    def on_body(self, body: bytes):
        if self.phase == _DONE:
            return
        limit = self._limits.max_body_bytes
        self._size += len(body)
        if self._size > limit:
            self._fail(413, f"Request body too large (limit {limit} bytes)")
            return
        if self._inflater is not None:
            room = limit - self._inflated
            try:  # inflate only up to the limit, never the whole bomb
                body = self._inflater.decompress(body, room + 1)
            except zlib.error:
                self._fail(400, "Invalid gzip request body")
                return
            self._inflated += len(body)
            if self._inflated > limit or self._inflater.unconsumed_tail:
                self._fail(413, f"Decompressed request body too large (limit {limit} bytes)")
                return
        self._body.append(body)

    def on_message_complete(self):
        if self.phase == _DONE:
            return
        self.phase = _IDLE
        self.since = self.server.now
        if self._inflater is not None and not self._inflater.eof:
            self._fail(400, "Invalid gzip request body: truncated")
            return
        request = Request(
            self,
            self._parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        self._pending.append(request)
        if self.server.draining:
            request.keep_alive = False
            request.respond(503, _error_body(SHUTTING_DOWN))
            return
        try:
            self._app.handle(request)
        except Exception:
            log.exception("Unhandled error for %s %s", request.method, request.url)
            request.respond(500, _error_body("Internal error"))

    # -- responses ------------------------------------------------------------------

    def flush(self):
        pending = self._pending
        while pending and pending[0]._response is not None:
            request = pending.popleft()
            if self._transport is None:
                continue
            self._transport.write(request._response)
            if not request.keep_alive:
                self.phase = _DONE
                pending.clear()
                self._stash = b""
                self._linger()
                return
        if not pending:
            self.since = self.server.now
        if self._paused:
            self._maybe_resume()
        if self._eof or self.server.draining:
            self._close_if_done()

    def _busy(self) -> bool:
        return bool(self._pending) or bool(self._stash)

    def _close_if_done(self) -> None:
        """Closes a half-closed (or draining) connection once everything is answered."""
        if self._transport is None or self._busy():
            return
        if self._eof or (self.server.draining and self.phase in (_IDLE, _DONE)):
            self.phase = _DONE
            self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        """Answers `status` after the earlier responses and closes the connection."""
        if self.phase == _DONE:
            return
        self.phase = _DONE
        self._stash = b""
        request = Request(self, "GET", "", {}, b"", False)
        self._pending.append(request)
        request.respond(status, _error_body(message))

    def _linger(self) -> None:
        """Half-closes after the last response; the sweep closes after a grace period."""
        transport = self._transport
        self.since = time.monotonic()
        if self._eof or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()

    # -- called by HttpServer -----------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self.phase == _IDLE and not self._busy()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def refuse(self, response: bytes, linger: bool) -> None:
        """Answers before reading anything (connection limit) and closes."""
        self.phase = _DONE
        self._transport.write(response)
        if linger:
            self._linger()  # the client can read the answer before the close
        else:
            self._transport.close()

    def check(self, now: float) -> None:
        """Applies the timeouts (called by the server's periodic sweep)."""
        limits = self._limits
        if self._paused:  # back-pressure: the client must read before it may send
            if self._write_paused and now - self._paused_at > limits.idle_timeout:
                self.close()
            return
        elapsed = now - self.since
        if self.phase == _HEAD and elapsed > limits.header_timeout:
            self._fail(408, "Timed out reading the request headers")
        elif self.phase == _BODY and elapsed > limits.body_timeout:
            self._fail(408, "Timed out reading the request body")
        elif self.phase == _IDLE and not self._busy() and elapsed > limits.idle_timeout:
            self.close()
        elif self.phase == _DONE and not self._pending and elapsed > _LINGER_SECONDS:
            self.close()


class HttpServer:
    """The listening socket, its connections, the timeout sweep and shutdown."""

    def __init__(self, app, limits: HttpLimits):
        self.app = app
        if not limits.max_connections:
            limits = dataclasses.replace(limits, max_connections=default_max_connections())
        self.limits = limits
        self.draining = False
        self.now = time.monotonic()  # updated by the sweep: phases are timed to its interval
        self.connections: dict = {}  # insertion-ordered: oldest first
        self._server = None
        self._sweeper = None
        self._turned_away = 0
        self._last_warning = -1e9

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )
        limits = self.limits
        log.info(
            "REST limits: %d connections, %d-byte bodies, timeouts %gs header / %gs body / "
            "%gs idle",
            limits.max_connections,
            limits.max_body_bytes,
            limits.header_timeout,
            limits.body_timeout,
            limits.idle_timeout,
        )
        interval = min(1.0, limits.header_timeout / 2, limits.body_timeout / 2)
        self._sweeper = loop.call_later(interval, self._sweep, interval)

    def _sweep(self, interval: float) -> None:
        self.now = now = time.monotonic()
        for conn in list(self.connections):
            conn.check(now)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep, interval)

    def add(self, conn: _Connection) -> None:
        if len(self.connections) >= self.limits.max_connections:
            victim = next((c for c in self.connections if c.idle), None)
            self._warn_limit(victim is not None)
            if victim is None:
                # Refused connections linger like failed ones, but only a few at a
                # time: under a flood, closing at once frees descriptors first.
                lingering = len(self.connections) - self.limits.max_connections
                self.connections[conn] = None
                conn.refuse(
                    _raw_response(503, "Too many open connections"), lingering < _MAX_REFUSED
                )
                return
            victim.close()
            self.connections.pop(victim, None)
        self.connections[conn] = None

    def discard(self, conn: _Connection) -> None:
        self.connections.pop(conn, None)

    def _warn_limit(self, evicted: bool) -> None:
        self._turned_away += 1
        now = time.monotonic()
        if now - self._last_warning < 10:
            return
        self._last_warning = now
        log.warning(
            "REST connection limit reached (%d open, --rest_api_max_connections=%d): %s; "
            "%d connection(s) affected since the last warning",
            len(self.connections),
            self.limits.max_connections,
            "closed the oldest idle connection" if evicted else "answered 503",
            self._turned_away,
        )
        self._turned_away = 0

    def close(self) -> None:
        """Stops accepting connections."""
        if self._server is not None:
            self._server.close()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stops accepting; later requests get 503; waits up to `grace` s for answers."""
        self.draining = True
        self.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        deadline = time.monotonic() + grace
        while any(not c.idle for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close()


async def start_http_server(app, host: str, port: int, limits: HttpLimits) -> HttpServer:
    """Starts serving `app` and returns the running `HttpServer`."""
    server = HttpServer(app, limits)
    await server.start(host, port)
    return server
