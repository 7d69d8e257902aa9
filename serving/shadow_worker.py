"""The shadow's candidate runs in a worker process of its own.

Run in the serving process, the candidate's session runs and the record
building took the interpreter lock from the threads that answer clients:
measured on the 2-core VM (`bench/bench_serving.py`), the HTTP loop and the
batch thread then spent 8 and 6 µs more per request, on top of the shadow
thread's own 6-9 µs, and shadow at 100% cost 11% throughput; a model run at
the same rate in another process cost 3%. So the server's shadow thread only
takes the queued copies, gathers them into batches and sends each batch here
(`ShadowWorker.submit`); this process loads the shadow version from its
directory (once per version), runs it, builds the batch's record
(serving/shadow_record.py) and writes it with the request logger's rotating
writer, then answers with what the server's metrics count (status, calls,
latency, per-row differences).

Bounded and contained: at most `MAX_INFLIGHT` batches are sent and not yet
answered (the shadow thread waits, so the serving side's queue fills and
drops, counted, instead of the pipe growing); a worker that dies (crash,
OOM kill) is noticed by the result reader, its unanswered batches are counted
as `ERROR` and logged (their records are lost with it), and the next batch
starts a new worker, at most once per `RESTART_SECONDS` (batches in between
are counted `ERROR`). The worker exits when the server says so or the
server's end of the socket closes, so it never outlives the server; it
ignores SIGINT and SIGTERM (a Ctrl-C or a process-group SIGTERM reaches the
server, whose shutdown drains the queued copies into it first). A candidate
that fails to load or run is an `ERROR` record with the message, as in the
serving process.

Messages are pickled (protocol 5) over a socket pair wrapped in
`multiprocessing.connection.Connection`, which frames them.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

MAX_INFLIGHT = 4  # batches sent and not yet answered
RESTART_SECONDS = 10.0  # a dead worker is replaced at most this often
START_TIMEOUT = 120.0  # seconds a new worker has to say it is ready (imports TF)


class WorkerUnavailable(Exception):
    """The worker died and may not be restarted yet, or did not start."""


class ShadowWorker:
    """The serving process's handle on the worker process.

    Args:
      on_result: called on the result thread with (model, shadow version,
        status, calls, latency µs or None, per-row |shadow - stable| or None)
        for every batch: answered, or lost with a dead worker.
      session_config: the ConfigProto the worker's sessions use.
      tags: MetaGraph tags to load.
      max_file_bytes, max_files: the request logger's rotation limits.
    """

    def __init__(
        self,
        on_result,
        session_config=None,
        tags=("serve",),
        max_file_bytes: int = 64 << 20,
        max_files: int = 10,
    ):
        self._on_result = on_result
        self._settings = {
            "session_config": session_config.SerializeToString() if session_config else b"",
            "tags": list(tags),
            "max_file_bytes": max_file_bytes,
            "max_files": max_files,
        }
        self._lock = threading.Condition()
        self._pending: collections.deque = collections.deque()  # (model, version, calls) sent
        self._conn = None
        self._proc = None
        self._started = float("-inf")  # monotonic time of the last start
        self._closed = False

    # -- the shadow thread ------------------------------------------------------

    def submit(self, batch: dict) -> None:
        """Sends one batch (waits while `MAX_INFLIGHT` are unanswered).

        `batch` holds: model, stable_version, shadow_version, path,
        signature_key, feeds, stable_outputs, ids, stable_latency (per row),
        share, now, dropped, prefix, copies (the mirrored calls it holds).
        Raises WorkerUnavailable when no worker runs and none may start yet.
        """
        with self._lock:
            while self._conn is not None and len(self._pending) >= MAX_INFLIGHT:
                self._lock.wait(0.5)
            if self._conn is None:
                self._start()
            conn = self._conn
            self._pending.append((batch["model"], str(batch["shadow_version"]), batch["copies"]))
        data = pickle.dumps(("run", batch), protocol=5)
        try:
            conn.send_bytes(data)
        except OSError:  # died meanwhile: the reader counts what was pending, this included
            pass

    def start(self) -> None:
        """Starts the worker ahead of the first batch (a failure is logged: `submit` retries)."""
        with self._lock:
            if self._conn is None:
                try:
                    self._start()
                except WorkerUnavailable as e:
                    log.warning("%s", e)

    def _start(self) -> None:
        """Starts a worker (the lock held); WorkerUnavailable if too soon after the last."""
        if self._closed:
            raise WorkerUnavailable("the shadow worker is closed")
        if time.monotonic() - self._started < RESTART_SECONDS:
            raise WorkerUnavailable("the shadow worker died; restarting it shortly")
        self._started = time.monotonic()
        ours, theirs = socket.socketpair()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH", "")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, path) if p))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serving.shadow_worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            ours.close()
            raise WorkerUnavailable(f"could not start the shadow worker: {e}") from None
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        try:
            conn.send_bytes(pickle.dumps(self._settings, protocol=5))
            if not conn.poll(START_TIMEOUT) or pickle.loads(conn.recv_bytes()) != "ready":
                raise OSError("no ready message")
        except (OSError, EOFError) as e:
            conn.close()
            proc.kill()
            proc.wait()
            raise WorkerUnavailable(f"the shadow worker did not start: {e}") from None
        self._conn, self._proc = conn, proc
        log.info("Shadow worker started (pid %d)", proc.pid)
        threading.Thread(
            target=self._read, args=(conn, proc), name="shadow-results", daemon=True
        ).start()

    # -- the result thread ------------------------------------------------------

    def _read(self, conn: Connection, proc) -> None:
        """Hands each answer to `on_result`; on EOF counts the unanswered as lost."""
        while True:
            try:
                result = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            with self._lock:
                if self._pending:
                    self._pending.popleft()
                self._lock.notify_all()
            self._report(*result)
        with self._lock:
            lost = list(self._pending)
            self._pending.clear()
            if self._conn is conn:
                self._conn = None
            self._lock.notify_all()
        conn.close()
        code = proc.wait()
        if lost or not self._closed:
            log.error(
                "Shadow worker (pid %d) ended with exit code %s; %d mirrored calls in %d "
                "batches lost",
                proc.pid,
                code,
                sum(calls for _, _, calls in lost),
                len(lost),
            )
        for model, version, calls in lost:
            self._report(model, version, "ERROR", calls, None, None)

    def _report(self, *result) -> None:
        """`on_result(*result)`; what it raises is logged (this thread must go on)."""
        try:
            self._on_result(*result)
        except Exception:
            log.exception("Shadow result not counted")

    def close(self, timeout: float = 30.0) -> None:
        """Lets the worker finish what was sent (bounded), then stops it."""
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: not self._pending, timeout=timeout)
            conn, proc = self._conn, self._proc
        if conn is None:
            return
        try:
            conn.send_bytes(pickle.dumps(("stop", None), protocol=5))
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        """The running worker's pid (None: none runs)."""
        with self._lock:
            return self._proc.pid if self._conn is not None else None


# -- the worker process ---------------------------------------------------------


class _Candidates:
    """The loaded shadow version of each model (a new version replaces the old)."""

    def __init__(self, settings: dict):
        from tensorflow.core.protobuf import config_pb2

        self._config = None
        if settings["session_config"]:
            self._config = config_pb2.ConfigProto.FromString(settings["session_config"])
        self._tags = tuple(settings["tags"])
        self._loaded: dict = {}  # model -> ((version, path), Servable or the load error)

    def get(self, model: str, version: int, path: str):
        """The Servable, or raises the error its load raised (not retried for that path)."""
        from serving.servable import Servable

        key = (version, path)
        held = self._loaded.get(model)
        if held is None or held[0] != key:
            if held is not None and not isinstance(held[1], Exception):
                held[1].close(drain_timeout=0)
            try:
                servable = Servable(model, version, path, self._tags, self._config)
            except Exception as e:  # kept: every batch of this version says why
                servable = RuntimeError(f"the shadow version {version} did not load: {e}")
            held = self._loaded[model] = (key, servable)
        if isinstance(held[1], Exception):
            raise held[1]
        return held[1]


def _run_batch(candidates: _Candidates, writers: dict, settings: dict, batch: dict) -> tuple:
    """Runs one batch, writes its record; returns the result message."""
    from serving.request_log import _RotatingWriter
    from serving.shadow_record import row_abs_diff, shadow_record

    error, outputs, diff = "", {}, None
    started = time.perf_counter()
    try:
        shadow = candidates.get(batch["model"], batch["shadow_version"], batch["path"])
        signature = shadow.signatures.get(batch["signature_key"])
        if signature is None:
            raise ValueError(f'signature "{batch["signature_key"]}" not in the shadow version')
        outputs = shadow.run(signature, batch["feeds"])
    except Exception as e:
        error = getattr(e, "message", None) or str(e) or type(e).__name__
    latency_us = (time.perf_counter() - started) * 1e6
    if not error:
        diff = row_abs_diff(outputs, batch["stable_outputs"])
    prefix = batch["prefix"]
    if prefix:
        record = shadow_record(
            batch["model"],
            batch["stable_version"],
            batch["shadow_version"],
            batch["signature_key"],
            batch["share"],
            batch["now"],
            batch["feeds"],
            outputs,
            batch["stable_outputs"],
            batch["ids"],
            batch["stable_latency"],
            latency_us,
            error,
            batch["dropped"],
        )
        writer = writers.get(prefix)
        if writer is None:
            writer = writers[prefix] = _RotatingWriter(
                prefix, settings["max_file_bytes"], settings["max_files"]
            )
        writer.write(record)
    status = "ERROR" if error else "OK"
    if error:
        log.warning("Shadow batch of %s failed: %s", batch["model"], error)
    return (
        batch["model"],
        str(batch["shadow_version"]),
        status,
        batch["copies"],
        latency_us,
        diff,
    )


def main(argv=None) -> int:
    """The worker: `python -m serving.shadow_worker <socket fd>` (started by ShadowWorker)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s shadow-worker %(levelname)s %(message)s"
    )
    # the server decides when this process ends (a "stop" message, or EOF when it exits):
    # Ctrl-C in a terminal or a SIGTERM to the whole process group must not kill the
    # worker before the server has drained its queued copies into it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import core.env  # noqa: F401 - legacy Keras before TensorFlow

    conn = Connection(int(argv[0]))
    settings = pickle.loads(conn.recv_bytes())
    candidates = _Candidates(settings)
    writers: dict = {}
    conn.send_bytes(pickle.dumps("ready"))
    try:
        while True:
            try:
                kind, batch = pickle.loads(conn.recv_bytes())
            except EOFError:  # the server is gone
                break
            if kind == "stop":
                break
            result = _run_batch(candidates, writers, settings, batch)
            if not conn.poll(0):  # nothing more queued: make what was written readable
                for writer in writers.values():
                    writer.flush()
            conn.send_bytes(pickle.dumps(result, protocol=5))
    finally:
        for writer in writers.values():
            writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
