"""A minimal HTTP/1.1 server on asyncio + httptools (no web framework).

It only frames requests and responses: keep-alive, pipelining (responses
are written in request order), chunked request bodies, gzip request bodies
(capped like TF Serving at 100 MB), and a request size limit (413). Routing
and everything a client sees in a body belongs to the application object,
whose `handle(request)` must eventually call `request.respond(...)` exactly
once (possibly from a later loop callback).
"""

import asyncio
import collections
import email.utils
import logging
import time
import zlib

import httptools

log = logging.getLogger(__name__)

MAX_GZIP_BYTES = 100 * 1024 * 1024
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    409: b"Conflict",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
JSON = b"application/json"
_OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


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
        if not self.keep_alive:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        self._response = b"".join(head) + (body if self.method != "HEAD" else b"")
        self._conn.flush()


class _Connection(asyncio.Protocol):
    def __init__(self, app, max_body_bytes: int):
        self._app = app
        self._max_body = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport = None
        self._pending = collections.deque()
        self._closing = False
        self._reset()

    def _reset(self):
        self._url = b""
        self._headers = {}
        self._body = []
        self._size = 0
        self._too_large = False

    # asyncio.Protocol
    def connection_made(self, transport):
        self._transport = transport

    def connection_lost(self, exc):
        self._transport = None

    def data_received(self, data: bytes):
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400)
        except httptools.HttpParserError:
            if not self._too_large:
                self._fail(400)

    # httptools callbacks
    def on_message_begin(self):
        self._reset()

    def on_url(self, url: bytes):
        self._url += url

    def on_header(self, name: bytes, value: bytes):
        self._headers[name.lower()] = value

    def on_headers_complete(self):
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._too_large = True
            self._fail(413)
        elif self._headers.get(b"expect", b"").lower() == b"100-continue":
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # as curl expects

    def on_body(self, body: bytes):
        self._size += len(body)
        if self._size > self._max_body:
            self._too_large = True
            self._fail(413)
            return
        self._body.append(body)

    def on_message_complete(self):
        if self._closing:
            return
        body = b"".join(self._body)
        if b"gzip" in self._headers.get(b"content-encoding", b"").lower():
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(body, MAX_GZIP_BYTES)
                if inflater.unconsumed_tail:
                    raise zlib.error("too large")
            except zlib.error:
                self._fail(400)
                return
        request = Request(
            self,
            self._parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            self._headers,
            body,
            self._parser.should_keep_alive(),
        )
        self._pending.append(request)
        try:
            self._app.handle(request)
        except Exception:
            log.exception("Unhandled error for %s %s", request.method, request.url)
            request.respond(500, b'{\n    "error": "Internal error"\n}')

    # responses
    def flush(self):
        pending = self._pending
        while pending and pending[0]._response is not None:
            request = pending.popleft()
            if self._transport is None:
                continue
            self._transport.write(request._response)
            if not request.keep_alive:
                self._closing = True
                self._transport.close()
                pending.clear()

    def _fail(self, status: int):
        if self._transport is not None:
            body = b""
            if status == 413:
                body = b'{\n    "error": "Request body too large"\n}'
            self._transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, _REASONS.get(status, b""), len(body))
                + body
            )
            self._transport.close()
        self._closing = True


async def start_http_server(app, host: str, port: int, max_body_bytes: int):
    """Starts serving `app` and returns the `asyncio.Server`."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Connection(app, max_body_bytes), host, port, reuse_address=True, backlog=1024
    )
