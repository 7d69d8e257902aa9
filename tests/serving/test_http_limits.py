"""The HTTP layer against hostile clients (serving/http.py, no TensorFlow).

Each test starts `echo_http_server.py` as a subprocess with a memory limit
(RLIMIT_DATA), so a regression shows up as a failed request or a dead
server, never as a test machine out of memory. No test measures time: slow
paths are waited for with generous deadlines.
"""

import gzip
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import zlib

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ours]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEADLINE = 60.0


class EchoServer:
    """echo_http_server.py on a free port, with resource limits."""

    def __init__(self, args, log_path, data_bytes=400 << 20, open_files=None):
        def limit():
            resource.setrlimit(resource.RLIMIT_DATA, (data_bytes, data_bytes))
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "echo_http_server.py"), *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(os.environ, PYTHONPATH=REPO_ROOT),
            cwd=REPO_ROOT,
            preexec_fn=limit,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"echo server did not start: {self.read_log()}")
        self.port = int(line.split()[1])

    def connect(self, timeout=DEADLINE) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def get(self, path: str) -> tuple:
        """One request on a fresh connection: (status, parsed JSON body)."""
        with self.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, _, body = read_response(sock)
        return status, json.loads(body)

    def read_log(self) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


@pytest.fixture
def echo_server(tmp_path):
    started = []

    def start(*args, **limits):
        server = EchoServer(list(args), str(tmp_path / f"echo{len(started)}.log"), **limits)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Reader:
    """Reads HTTP/1.1 responses (Content-Length framed) from one socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self):
        """(status, headers dict, body), or None at EOF before a response."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            if not self._more():
                raise ConnectionError("EOF inside a response body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def at_eof(self) -> bool:
        """True once the server closed (ignores a reset after its last response)."""
        try:
            return not self._more() and not self.buffer
        except ConnectionResetError:
            return True


def read_response(sock):
    response = Reader(sock).response()
    assert response is not None, "connection closed without a response"
    return response


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


# -- 2.2: sizes -------------------------------------------------------------------


def test_header_url_and_count_limits(echo_server):
    server = echo_server()
    cases = [
        (b"GET /ok HTTP/1.1\r\nX-Big: " + b"a" * 50_000 + b"\r\n\r\n", 200, None),
        (b"GET /ok HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431, "too large"),
        (b"GET /ok HTTP/1.1\r\n" + b"X-A: b\r\n" * 100 + b"\r\n", 200, None),
        (b"GET /ok HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431, "limit 100"),
        (b"GET /" + b"u" * 8000 + b" HTTP/1.1\r\n\r\n", 200, None),
        (b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "limit 8192 bytes"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400, "Malformed HTTP request"),
    ]
    for raw, status, fragment in cases:
        with server.connect() as sock:
            sock.sendall(raw)
            got, headers, body = read_response(sock)
        assert got == status, (raw[:40], body)
        if fragment:
            assert fragment in error_of(body)
            assert headers["connection"] == "close"


def test_huge_header_is_cut_off_early(echo_server):
    """A 256 MB header: the server answers 431 after ~64 KiB and stops reading."""
    server = echo_server(data_bytes=300 << 20)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 256 << 20:
                sock.sendall(b"a" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass  # the server closed after answering
        status, _, body = read_response(sock)
    assert status == 431
    assert sent < 256 << 20  # it did not swallow the whole header
    assert server.get("/count")[0] == 200  # and it is alive


def test_body_and_gunzipped_body_limits(echo_server):
    server = echo_server("--max_request_bytes=1048576")
    limit = 1 << 20
    payload = os.urandom(1000) * (limit // 1000)
    bomb = gzip.compress(b"\0" * (100 << 20), compresslevel=9)  # ~100 KB -> 100 MB
    assert len(bomb) < 200_000
    cases = [
        ({}, payload, 200),
        ({}, payload + b"x" * (limit - len(payload) + 1), 413),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"y" * limit), 200),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"y" * (limit + 1)), 413),
        ({"Content-Encoding": "gzip"}, bomb, 413),
        ({"Content-Encoding": "gzip"}, gzip.compress(payload)[:-10], 400),  # truncated
        ({"Content-Encoding": "gzip"}, b"not gzip at all", 400),
    ]
    for headers, body, status in cases:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with server.connect() as sock:
            sock.sendall(
                f"POST /echo HTTP/1.1\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
            )
            try:
                sock.sendall(body)
            except OSError:
                pass  # an early 413 may close before the body is sent
            got, _, answer = read_response(sock)
        assert got == status, (headers, len(body), answer)
        if status == 200:
            expected = gzip.decompress(body) if headers else body
            assert json.loads(answer)["crc32"] == zlib.crc32(expected)
        elif status == 413:
            assert "limit 1048576 bytes" in error_of(answer)
    assert server.proc.poll() is None


def test_chunked_body_over_the_limit(echo_server):
    server = echo_server("--max_request_bytes=100000")
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"2710\r\n" + b"z" * 10000 + b"\r\n")
        except OSError:
            pass
        status, _, body = read_response(sock)
    assert status == 413


def test_pipelining_without_reading_is_back_pressured(echo_server):
    """Requests the app has not answered stop the reading at 64 per connection."""
    server = echo_server()
    assert server.get("/hold")[0] == 200
    count = 20_000
    sock = server.connect()
    request = b"GET /echo/%d HTTP/1.1\r\nHost: t\r\n\r\n"
    burst = b"".join(request % i for i in range(count))
    sender = threading.Thread(target=lambda: sock.sendall(burst), daemon=True)
    sender.start()
    # Wait until the server has taken 64 requests, then until it stops taking more.
    deadline = time.monotonic() + DEADLINE
    while server.get("/count")[1]["handled"] < 64:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    handled, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_handled = server.get("/count")[1]["handled"]
        if now_handled != handled:
            handled, stable_since = now_handled, time.monotonic()
        elif time.monotonic() - stable_since > 2:
            break
        time.sleep(0.2)
    # The 64th request stops the reading, but the 4 KiB slice it came in is parsed.
    assert 64 <= handled <= 64 + 4096 // len(request), handled
    assert server.get("/release")[1]["released"] > 0
    reader = Reader(sock)
    for i in range(count):
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["url"] == f"/echo/{i}"
    sender.join(DEADLINE)
    sock.close()


def test_unread_responses_are_back_pressured(echo_server):
    """A client that pipelines but never reads: the server stops reading it."""
    server = echo_server("--rest_api_max_unsent_response_bytes=65536")
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # 7 KB requests, 71 KB responses: 20,000 of them would be 1.4 GB of answers.
    big = b"GET /echo/" + b"p" * 7000 + b"?pad=65536 HTTP/1.1\r\n\r\n"
    sent = [0]

    def send():
        try:
            for _ in range(20_000):
                sock.sendall(big)
                sent[0] += 1
        except OSError:
            pass

    threading.Thread(target=send, daemon=True).start()
    handled, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        now_handled = server.get("/count")[1]["handled"]
        if now_handled != handled:
            handled, stable_since = now_handled, time.monotonic()
        elif time.monotonic() - stable_since > 2:
            break
        time.sleep(0.2)
    # Kernel buffers (a few MB) hold some answers; then the server stops reading.
    assert handled < 2_000, handled
    assert sent[0] < 20_000
    sock.close()
    assert server.proc.poll() is None


# -- 2.3: timeouts and the connection cap ---------------------------------------------


def test_header_body_and_idle_timeouts(echo_server):
    server = echo_server(
        "--rest_api_header_timeout_seconds=1",
        "--rest_api_body_timeout_seconds=1",
        "--rest_api_idle_timeout_seconds=1",
    )
    with server.connect() as sock:  # slow loris: headers never end
        sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: 1\r\n")
        status, headers, body = read_response(sock)
        assert status == 408 and "headers" in error_of(body)
        assert headers["connection"] == "close"
    with server.connect() as sock:  # Content-Length promises more than is sent
        sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789")
        status, _, body = read_response(sock)
        assert status == 408 and "body" in error_of(body)
    with server.connect() as sock:  # an idle keep-alive connection is closed
        reader = Reader(sock)
        sock.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
        assert reader.response()[0] == 200
        assert reader.at_eof()


def test_connection_cap_under_a_low_open_files_limit(echo_server):
    """ulimit -n 400 and 390 idle connections: new requests still get answers."""
    server = echo_server(open_files=400)
    idle = []
    try:
        for _ in range(390):
            idle.append(server.connect())
        for i in range(5):
            status, body = server.get(f"/echo/{i}")
            assert status == 200 and body["url"] == f"/echo/{i}"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + DEADLINE
    while "REST connection limit reached" not in server.read_log():
        assert time.monotonic() < deadline, server.read_log()
        time.sleep(0.1)
    assert "--rest_api_max_connections=300" in server.read_log()  # 3/4 of 400


def test_connection_cap_answers_503_when_nothing_is_idle(echo_server):
    server = echo_server("--rest_api_max_connections=3")
    busy = [server.connect() for _ in range(3)]
    for sock in busy:
        # One answered request, then one cut mid-headers, in one segment: once the
        # answer is here, the server has parsed the rest too (not idle, not evictable).
        sock.sendall(b"GET /echo HTTP/1.1\r\n\r\nGET /slow HTTP/1.1\r\nX-Slow: 1\r\n")
        assert read_response(sock)[0] == 200
    with server.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
        status, _, body = read_response(sock)
    assert status == 503 and error_of(body) == "Too many open connections"
    for sock in busy:
        sock.close()


# -- 2.9: half-closed clients ------------------------------------------------------------


@pytest.mark.parametrize("requests_sent", [1, 3])
def test_half_closed_client_gets_its_responses(echo_server, requests_sent):
    """shutdown(SHUT_WR) after sending; the answers come later (as from a model)."""
    server = echo_server()
    assert server.get("/hold")[0] == 200
    with server.connect() as sock:
        for i in range(requests_sent):
            body = b'{"instances": [%d]}' % i
            sock.sendall(b"POST /echo/%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (i, len(body)))
            sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DEADLINE
        while server.get("/count")[1]["handled"] < requests_sent:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # let the server see the EOF before the answers exist
        assert server.get("/release")[1]["released"] == requests_sent
        reader = Reader(sock)
        for i in range(requests_sent):
            response = reader.response()
            assert response is not None, "closed without answering"
            assert response[0] == 200 and json.loads(response[2])["url"] == f"/echo/{i}"
        assert reader.at_eof()
