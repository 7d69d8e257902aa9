"""Shadow traffic: a share of predict requests mirrored to a candidate version.

With `--shadow_traffic_share=s` and `--shadow_version=N` (or
`--shadow_version_label=L`), each predict call (REST or gRPC) that the server
answered is, with probability `s`, copied to that version of the same model.
The client's answer is already on its way when the copy is queued: the
shadow never delays or changes it. On the serving thread a copy is a few
references (the decoded inputs, the stable outputs - for a request of a
merged batch, the batch's arrays and its row range - the request id, the
latency) put on a bounded list in one `extend`: no array is copied, no
future or callback is made, and (merged batch) no object the garbage
collector tracks outlives the request; when the queue is full the copy is
dropped and counted
(metric, the next record's `_shadow_dropped`, a log line at most every
`WARN_SECONDS`). One thread of its own (the shadow thread) takes what
queued in batches of up to `MAX_BATCH_ROWS` rows, back to back; at start
and once it has drained the queue it waits until `WAKE_COPIES` copies (at
most half the queue size) are queued or `PASS_SECONDS` passed, so it takes
the interpreter lock in bursts. Consecutive copies of one merged batch of
the stable scheduler become one run over the batch's own arrays (the whole
arrays when every row was mirrored, else views), and runs are concatenated
once per input. The server hands each batch to the shadow worker process
(serving/shadow_worker.py: the shadow version's session run and the
record's encoding there cost the serving threads no interpreter time);
without a worker, the shadow version runs on the shadow thread (the derived
inter-op setting runs ops in the calling thread, so it never queues behind
the stable batch threads) and the record is built on the request logger's
writer thread. Errors and a missing shadow version are counted and recorded;
nothing is raised to the serving path.

Records are `PredictionLog` TFRecords of one batch each (format:
serving/shadow_record.py) written with the request logger's rotation and limits
to `--shadow_log_prefix`, by default `<dir of the model's filename_prefix>/shadow/<its
basename>` (a sub-directory, so readers of the request-log directory do not
mix them in). The server runs the shadow version in a worker process
(serving/shadow_worker.py), which writes them; a `ShadowMirror` made without a
worker runs it on its thread and writes through the request logger.

Read them with `taxi-monitor shadow` (monitoring/shadow.py). Metrics:
`:serving:shadow_request_count{model_name,version,status}` (status OK,
ERROR, DROPPED, NO_SHADOW, SAME_VERSION), `:serving:shadow_latency` (µs per
batch) and `:serving:shadow_abs_diff` (per row: the largest absolute
difference between the shadow's and the stable float outputs).

Over 400 lines: the serving-thread hook, the shadow thread's loop and the
gathering of queued copies into batches are one queue's two ends; split,
each part would need the others' internals.
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
import random
import threading
import time

import numpy as np

from serving.batching import BatchSlice, _task_rows
from serving.errors import ServingError, invalid
from serving.request_log import MAX_REQUEST_ID_BYTES
from serving.shadow_record import row_abs_diff, shadow_record
from serving.shadow_worker import WorkerUnavailable

log = logging.getLogger(__name__)

WARN_SECONDS = 10.0  # at most one "queue full" log line per this many seconds
MAX_BATCH_ROWS = 1024  # the taxi model costs least per row at 1-2k rows (cache)
WAKE_COPIES = 8192  # after draining, wait for this many copies (capped at half the queue) ...
PASS_SECONDS = 1.0  # ... or this long: bursts of several batches cost less per row
POLL_SECONDS = 0.05  # how often the waiting worker looks at the queue's length


class _Run:
    """Queued copies whose rows are consecutive: rows `start:end` of one merged
    batch's arrays (`start` None: one copy's own `feeds` and `outputs`), with
    each copy's request id and latency (and row count, `rows`, unless every
    copy is one row)."""

    __slots__ = (
        "servable",
        "signature_key",
        "feeds",
        "outputs",
        "start",
        "end",
        "ids",
        "latencies",
        "rows",
    )

    def __init__(self, servable, signature_key, feeds, outputs, start, end, ids, latencies, rows):
        self.servable = servable
        self.signature_key = signature_key
        self.feeds = feeds
        self.outputs = outputs
        self.start = start
        self.end = end
        self.ids = ids
        self.latencies = latencies
        self.rows = rows  # None: one row per copy

    def parts(self) -> tuple:
        """(inputs, stable outputs) of the run's rows: the batch arrays or views of them."""
        if self.start is None:
            return self.feeds, self.outputs
        start, end, outputs = self.start, self.end, self.outputs
        if start == 0 and end == len(next(iter(outputs.values()))):  # every row mirrored
            return self.feeds, outputs
        return (
            {a: v[start:end] for a, v in self.feeds.items()},
            {a: v[start:end] for a, v in outputs.items()},
        )


def shadow_prefix(filename_prefix: str) -> str:
    """The default shadow log prefix next to a model's request-log `filename_prefix`."""
    directory, base = os.path.split(filename_prefix)
    return os.path.join(directory, "shadow", base)


def _row_ids(request_id: bytes, rows: int) -> list:
    """`request_logs.row_request_ids` in bytes: the id for one row, `<id>/<i>` for a batch."""
    if len(request_id) > MAX_REQUEST_ID_BYTES:  # as the request log: not logged
        request_id = b""
    if rows == 1 or not request_id:
        return [request_id] * rows
    return [b"%s/%d" % (request_id, i) for i in range(rows)]


class ShadowMirror:
    """Mirrors predict calls to a shadow version on a thread of its own.

    Args:
      manager: the ModelManager (resolves the shadow version per batch).
      share: probability that a predict call is mirrored (0 = off).
      version: the shadow version number, or None.
      label: the shadow version label, or None (exactly one of the two).
      request_logger: the RequestLogger that writes the records (None: none).
      log_prefix: where records go ("" = next to each model's request logs).
      metrics: ServingMetrics or None.
      queue_size: copies buffered before dropping (a waiting worker wakes at
        `WAKE_COPIES` copies or half the queue size, whichever is fewer).
      random: the sampling source (tests pin it).
      worker: None: the shadow thread runs the shadow version and the request
        logger's thread writes the records; else a factory called with the
        result callback, e.g. `serving.shadow_worker.ShadowWorker` (what the
        server uses): batches are sent to its process, which runs the
        version loaded from its directory and writes the records.
    """

    def __init__(
        self,
        manager,
        share: float,
        version: int | None = None,
        label: str | None = None,
        request_logger=None,
        log_prefix: str = "",
        metrics=None,
        queue_size: int = 20000,
        random=random.random,
        worker=None,
    ):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"--shadow_traffic_share must be in [0, 1], got {share}")
        if share > 0 and (version is None) == (label is None):
            raise ValueError(
                "--shadow_traffic_share needs exactly one of --shadow_version and "
                "--shadow_version_label"
            )
        self.share = share
        self.version = version
        self.label = label
        self._manager = manager
        self._logger = request_logger
        self._log_prefix = log_prefix
        self._metrics = metrics
        self._random = random
        self._copies = _Copies()  # one `extend` per copy, atomic: no lock on the loop
        self._queue_size = queue_size
        self._wake = max(1, min(WAKE_COPIES, queue_size // 2))  # copies that end a wait
        self._dropped: dict = {}  # model -> calls dropped since its last record
        self._dropped_lock = threading.Lock()  # taken only when dropping (overload)
        self._warned = float("-inf")  # monotonic time of the last "queue full" line
        self._closed = threading.Event()
        self._worker = None
        self._thread = None
        if share > 0 and worker is not None:
            self._worker = worker(self._result)
        if share > 0:
            self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
            self._thread.start()

    def describe(self) -> str:
        target = f"version {self.version}" if self.label is None else f"label {self.label!r}"
        return f"shadow: {self.share:.0%} of predict calls mirrored to {target}"

    # -- serving thread -------------------------------------------------------

    def offer(self, servable, signature_key, feeds, outputs, latency_us, request_id=b"") -> None:
        """Maybe queues a copy of an answered predict call (never blocks, never raises).

        A copy is `_FIELDS` references put on a list in one `extend`
        (atomic under the GIL): nothing is copied, and nothing that the
        garbage collector tracks outlives the call (a copy of a merged batch's
        request keeps the batch's arrays and its row range, not the request's
        dicts), so mirroring hardly makes the collector run more often.
        With the queue full it is dropped and counted. `feeds` is read only
        when `outputs` is not a `BatchSlice` (a request that ran alone).
        """
        if self._thread is None or (self.share < 1.0 and self._random() >= self.share):
            return
        copies = self._copies
        if len(copies.filling) + len(copies.taking) >= self._queue_size * _FIELDS:
            self._count(servable.name, "", "DROPPED")
            with self._dropped_lock:
                self._dropped[servable.name] = self._dropped.get(servable.name, 0) + 1
            return
        if type(outputs) is BatchSlice:
            copies.filling.extend(
                (
                    servable,
                    signature_key,
                    outputs.batch_feeds,
                    outputs.batch_outputs,
                    outputs.start,
                    outputs.end,
                    latency_us,
                    request_id,
                )
            )
        else:
            copies.filling.extend(
                (servable, signature_key, feeds, outputs, None, None, latency_us, request_id)
            )

    # -- shadow thread ----------------------------------------------------------

    def _work(self) -> None:
        if self._worker is not None:
            self._worker.start()
        rows = 0  # the previous batch's: a full one means more are queued
        while True:
            if rows < MAX_BATCH_ROWS:  # drained (or starting): wait for a burst
                self._wait_for_copies()
            closing = self._closed.is_set()
            groups, rows = _take(self._copies, MAX_BATCH_ROWS)
            for runs in groups.values():
                self._run_safely(runs)
            if closing and not len(self._copies):
                return

    def _wait_for_copies(self) -> None:
        """Returns once `self._wake` copies are queued, `PASS_SECONDS` passed or
        `close()` was called (the serving thread is not involved: the worker
        looks at the queue's length every `POLL_SECONDS`)."""
        deadline = time.monotonic() + PASS_SECONDS
        wake = self._wake * _FIELDS
        while len(self._copies) < wake:
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.wait(min(POLL_SECONDS, left)):
                return

    def _run_safely(self, runs: list) -> None:
        try:
            self._run(runs)
        except _Unmergeable:  # input shapes differ: one batch per shape (odd ones alone)
            shapes: dict = {}  # a run's rows share their shapes (one batch, or one copy)
            for run in runs:
                try:
                    key = _task_rows(run.parts()[0])[1]
                except ServingError:
                    key = object()
                shapes.setdefault(key, []).append(run)
            for group in shapes.values():
                if len(shapes) > 1:
                    self._run_safely(group)
                else:  # same shapes, yet the outputs do not concatenate
                    self._run_one_by_one(group)
        except Exception:  # never let the worker die
            log.exception("Shadow batch failed")
            count = sum(len(run.ids) for run in runs)
            self._count(runs[0].servable.name, "", "ERROR", count)

    def _run_one_by_one(self, runs: list) -> None:
        for run in runs:
            try:
                self._run([run])
            except Exception:
                log.exception("Shadow copy failed")
                self._count(run.servable.name, "", "ERROR", len(run.ids))

    def _run(self, runs: list) -> None:
        stable, signature_key = runs[0].servable, runs[0].signature_key
        copies = sum(len(run.ids) for run in runs)
        try:
            shadow = self._manager.resolve(stable.name, self.version, self.label)
        except ServingError:
            self._count(stable.name, "", "NO_SHADOW", copies)
            return
        if shadow is stable:
            self._count(stable.name, str(shadow.version), "SAME_VERSION", copies)
            return
        try:
            feeds, stable_outputs = _gather(runs)
        except ValueError:
            raise _Unmergeable() from None
        if self._worker is not None:
            self._submit(runs, stable, shadow, feeds, stable_outputs, copies)
            return
        error = ""
        outputs = {}
        started = time.perf_counter()
        shadow.enter()
        try:
            signature = shadow.signatures.get(signature_key)
            if signature is None:
                raise invalid(f'signature "{signature_key}" not in the shadow version')
            outputs = shadow.run(signature, feeds)
        except Exception as e:
            error = getattr(e, "message", None) or str(e) or type(e).__name__
        finally:
            shadow.exit()
        latency_us = (time.perf_counter() - started) * 1e6
        status = "ERROR" if error else "OK"
        self._count(stable.name, str(shadow.version), status, copies)
        if self._metrics is not None:
            self._metrics.shadow_latency.observe((stable.name, str(shadow.version)), latency_us)
            if not error:
                self._metrics.shadow_abs_diff.observe_many(
                    (stable.name, str(shadow.version)), row_abs_diff(outputs, stable_outputs)
                )
        self._write(runs, shadow, stable, feeds, outputs, stable_outputs, latency_us, error)

    def _submit(self, runs, stable, shadow, feeds, stable_outputs, copies) -> None:
        """Hands a gathered batch to the worker process (it runs, records and answers)."""
        ids, stable_latency = _ids_and_latencies(runs)
        batch = {
            "model": stable.name,
            "stable_version": stable.version,
            "shadow_version": shadow.version,
            "path": shadow.path,
            "signature_key": runs[0].signature_key,
            "feeds": feeds,
            "stable_outputs": stable_outputs,
            "ids": ids,
            "stable_latency": stable_latency,
            "share": self.share,
            "now": int(time.time()),
            "dropped": self._take_dropped(stable.name),
            "prefix": self._prefix(stable),
            "copies": copies,  # mirrored calls (the metric counts calls, not rows)
        }
        try:
            self._worker.submit(batch)
        except WorkerUnavailable as e:
            if time.monotonic() - self._warned >= WARN_SECONDS:
                self._warned = time.monotonic()
                log.warning("Shadow batch of %s not run: %s", stable.name, e)
            self._count(stable.name, str(shadow.version), "ERROR", copies)

    def _result(self, model, version, status, rows, latency_us, diff) -> None:
        """The worker's answer for one batch (on its result thread): the metrics."""
        self._count(model, version, status, rows)
        if self._metrics is not None:
            if latency_us is not None:
                self._metrics.shadow_latency.observe((model, version), latency_us)
            if diff is not None:
                self._metrics.shadow_abs_diff.observe_many((model, version), diff)

    def _prefix(self, stable) -> str:
        """Where the records of `stable`'s model go ("" = nowhere)."""
        if self._logger is None:
            return ""
        if self._log_prefix:
            return self._log_prefix
        configured = self._logger.prefix(stable.name)
        return shadow_prefix(configured) if configured else ""

    def _write(self, runs, shadow, stable, feeds, outputs, stable_outputs, latency_us, error):
        prefix = self._prefix(stable)
        if not prefix:
            return
        share, now = self.share, int(time.time())
        signature_key = runs[0].signature_key
        dropped = self._take_dropped(stable.name)

        def build() -> bytes:  # on the writer thread
            ids, stable_latency = _ids_and_latencies(runs)
            return shadow_record(
                stable.name,
                stable.version,
                shadow.version,
                signature_key,
                share,
                now,
                feeds,
                outputs,
                stable_outputs,
                ids,
                stable_latency,
                latency_us,
                error,
                dropped,
            )

        self._logger.write(prefix, stable.name, build)

    def _take_dropped(self, model: str) -> int:
        """Calls of `model` dropped since its last record (read and reset); logs them."""
        if not self._dropped:  # no drop yet: no lock
            return 0
        with self._dropped_lock:
            dropped = self._dropped.pop(model, 0)
        if dropped and time.monotonic() - self._warned >= WARN_SECONDS:
            self._warned = time.monotonic()
            log.warning(
                "Shadow queue full (%d copies): %d mirrored calls of %s dropped since its "
                "previous shadow record",
                self._queue_size,
                dropped,
                model,
            )
        return dropped

    def _count(self, model: str, version: str, status: str, amount: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.shadow_request_count.inc((model, version, status), amount)

    def close(self) -> None:
        """Finishes the queued copies (bounded), then stops the worker."""
        if self._thread is None:
            return
        self._closed.set()
        self._thread.join(timeout=30)
        if self._worker is not None:
            self._worker.close()


class _Unmergeable(Exception):
    """The copies' inputs or outputs do not concatenate."""


# a queued copy, as `_FIELDS` consecutive list items: servable, signature key,
# feeds, outputs, start, end, latency µs, request id; `start`/`end` None: the
# feeds and outputs are the request's own, else the merged batch's arrays
_FIELDS = 8
_ONE_ROW_PATH = True  # tests turn it off to compare with the general loop


class _Copies:
    """The queued copies' fields: the serving thread extends `filling` (one
    `extend` of a tuple: atomic under the GIL), the shadow thread takes from
    the left of `taking` and swaps the two lists when `taking` is empty.

    Items leave a list only from its left, by one slice and one `del` of the
    slice's length, so a copy is never lost: a serving thread that read
    `filling` just before a swap extends, on its right, the list the shadow
    thread now takes from (the copy is taken later, maybe one pass late).
    """

    __slots__ = ("filling", "taking")

    def __init__(self):
        self.filling: list = []
        self.taking: list = []

    def __len__(self) -> int:
        return len(self.filling) + len(self.taking)

    def take(self, count: int) -> list:
        """Up to `count` items from the left (fewer: what `taking` held)."""
        if not self.taking:
            self.taking, self.filling = self.filling, self.taking
        taking = self.taking
        items = taking[:count]
        del taking[: len(items)]  # not `count`: items extended meanwhile stay
        return items

    def put_back(self, items: list) -> None:
        """Returns taken `items` to the front, in order."""
        self.taking[0:0] = items


def _rows(feeds: dict) -> int:
    for array in feeds.values():
        return array.shape[0] if array.ndim else 1
    return 0


def _take(queue: _Copies, max_rows: int) -> tuple:
    """Takes copies (up to `max_rows` rows) into runs; returns ({merge key: [runs]}, rows).

    Copies leave the queue in chunks (`_Copies.take`: a slice and a `del`, no
    Python step per item) of at most as many copies as rows are still
    wanted; the copies of a chunk past `max_rows` (copies of several rows) go
    back to its front, in order. Consecutive
    copies of one merged batch (the scheduler answers a batch's requests in
    row order) extend one run: per copy an identity and an integer check, no
    arrays touched. Runs merge when they share servable, signature and output
    aliases.
    """
    groups: dict = {}
    rows = 0
    run = None
    while rows < max_rows:
        items = queue.take((max_rows - rows) * _FIELDS)
        if not items:
            break
        starts, ends = items[4::_FIELDS], items[5::_FIELDS]
        if _ONE_ROW_PATH and None not in starts and set(map(operator.sub, ends, starts)) == {1}:
            run = _one_row_runs(items, starts, ends, run, groups)  # the usual chunk
            rows += len(starts)
            continue
        fields = iter(items)
        taken = 0
        for copy in zip(*[fields] * _FIELDS, strict=True):
            if rows >= max_rows:
                queue.put_back(items[taken * _FIELDS :])
                break
            taken += 1
            servable, signature_key, feeds, outputs, start, end, latency, request_id = copy
            if start is not None:
                count = end - start
                rows += count
                if (
                    run is not None
                    and start == run.end
                    and feeds is run.feeds
                    and servable is run.servable
                    and signature_key == run.signature_key
                ):
                    run.end = end
                    run.ids.append(request_id)
                    run.latencies.append(latency)
                    if run.rows is not None:
                        run.rows.append(count)
                    elif count != 1:
                        run.rows = [1] * (len(run.ids) - 1) + [count]
                    continue
            else:
                count = _rows(feeds)
                rows += count
            run = _Run(
                servable,
                signature_key,
                feeds,
                outputs,
                start,
                end,
                [request_id],
                [latency],
                None if count == 1 else [count],
            )
            groups.setdefault((id(servable), signature_key, tuple(outputs)), []).append(run)
    return groups, rows


def _one_row_runs(items: list, starts: list, ends: list, run, groups: dict):
    """`_take` of a chunk of one-row copies of merged batches, without a Python
    step per copy. The chunk is cut where the batch arrays change (one `map`
    of identities); a piece whose rows are consecutive and whose servable and
    signature are one (the usual: the scheduler answers a batch's requests in
    row order) is one run, checked by list comparisons in C; any other piece
    is cut further where copy i does not continue copy i-1 (`_links`). Each
    run takes its ids and latencies as slices. Returns the last run."""
    servables, keys, feeds = items[0::_FIELDS], items[1::_FIELDS], items[2::_FIELDS]
    outputs, latencies, ids = items[3::_FIELDS], items[6::_FIELDS], items[7::_FIELDS]
    pieces = [
        0,
        *itertools.compress(range(1, len(feeds)), map(operator.is_not, feeds[1:], feeds[:-1])),
        len(feeds),
    ]
    firsts = []
    for first, after in itertools.pairwise(pieces):
        count = after - first
        if (
            starts[first:after] == list(range(starts[first], starts[first] + count))
            and servables[first:after].count(servables[first]) == count
            and keys[first:after].count(keys[first]) == count
        ):
            firsts.append(first)
        else:
            firsts += _links(servables, keys, feeds, starts, ends, first, after)
    firsts.append(len(feeds))
    for first, after in itertools.pairwise(firsts):
        if (
            first == 0
            and run is not None
            and starts[0] == run.end
            and feeds[0] is run.feeds
            and servables[0] is run.servable
            and keys[0] == run.signature_key
        ):  # the previous chunk's last run goes on
            run.end = ends[after - 1]
            run.ids += ids[:after]
            run.latencies += latencies[:after]
            if run.rows is not None:
                run.rows += [1] * after
            continue
        run = _Run(
            servables[first],
            keys[first],
            feeds[first],
            outputs[first],
            starts[first],
            ends[after - 1],
            ids[first:after],
            latencies[first:after],
            None,
        )
        groups.setdefault((id(run.servable), run.signature_key, tuple(run.outputs)), []).append(run)
    return run


def _links(servables, keys, feeds, starts, ends, first: int, after: int) -> list:
    """The first copy of each run among copies `first:after` (`first` included):
    where copy i does not continue copy i-1 (same batch arrays, next row, same
    servable and signature), found by `map` over the fields' slices."""
    same = operator.and_
    before, here = slice(first, after - 1), slice(first + 1, after)
    links = map(
        same,
        map(
            same,
            map(operator.is_, feeds[here], feeds[before]),
            map(operator.eq, starts[here], ends[before]),
        ),
        map(
            same,
            map(operator.is_, servables[here], servables[before]),
            map(operator.eq, keys[here], keys[before]),
        ),
    )
    return [first, *itertools.compress(range(first + 1, after), map(operator.not_, links))]


def _gather(runs: list) -> tuple:
    """(inputs, stable outputs) of the runs' rows, in run order.

    A run covering a whole merged batch is the batch arrays themselves, a
    partial one views of them; several runs are concatenated once per alias.
    """
    if len(runs) == 1:
        return runs[0].parts()
    parts = [run.parts() for run in runs]
    feeds = {a: np.concatenate([p[0][a] for p in parts]) for a in parts[0][0]}
    return feeds, {a: np.concatenate([p[1][a] for p in parts]) for a in parts[0][1]}


def _ids_and_latencies(runs: list) -> tuple:
    """Per row: the request id (`_row_ids`) and the request's server latency."""
    ids, latencies = [], []
    for run in runs:
        if run.rows is None:  # one row per copy (the usual): no Python call per copy
            chunk = run.ids
            if max(map(len, chunk)) > MAX_REQUEST_ID_BYTES:  # as the request log: not logged
                chunk = [i if len(i) <= MAX_REQUEST_ID_BYTES else b"" for i in chunk]
            ids += chunk
            latencies += run.latencies
            continue
        for request_id, latency, rows in zip(run.ids, run.latencies, run.rows, strict=True):
            ids += _row_ids(request_id, rows)
            latencies += [latency] * rows
    return ids, latencies
