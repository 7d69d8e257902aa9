"""Prometheus metrics in TF Serving's names and exposition format.

TF Serving exports `:tensorflow:serving:request_count` (a counter without a
`_total` suffix), histograms in microseconds and no `# HELP` lines.
`prometheus_client` always appends `_total` to counters and writes HELP lines,
so this module keeps its own tiny registry and renders the upstream text
format exactly; the output parses with `prometheus_client.parser`.

Metrics TF Serving does not have (per-version request counts, model load and
unload events, per-version availability) live under the `:serving:` prefix.

Request metrics of models that were never configured are counted under the
model name `__unknown__` (TF Serving adds one series per name a client sends,
so a client could grow the page without bound).
"""

import bisect
import threading

import numpy as np

_LATENCY_BUCKETS = tuple(10 * 1.8**k for k in range(33))
_EXAMPLE_BUCKETS = tuple(float(2**k) for k in range(15))
UNKNOWN_MODEL = "__unknown__"
_DIFF_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _format_number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return format(value, ".6g")


def _escape(value: str) -> str:
    value = str(value)
    if not value.isascii():  # lone surrogates (undecodable file names) become U+FFFD
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, label_names: tuple):
        self.name = name
        self.label_names = label_names
        self._values: dict = {}
        self._lock = threading.Lock()

    def _labels(self, key: tuple, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.label_names, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def render(self) -> list:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# TYPE {self.name} {self.kind}"]
        for key, value in items:
            lines.extend(self._render_one(key, value))
        return lines

    def _render_one(self, key, value) -> list:
        return [f"{self.name}{self._labels(key)} {_format_number(value)}"]

    def get(self, *labels):
        """Returns the current value for `labels` (tests, introspection)."""
        return self._values.get(tuple(labels))


class Counter(_Metric):
    """A monotonically increasing value per label set."""

    kind = "counter"

    def inc(self, labels: tuple, amount: float = 1) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount


class Gauge(_Metric):
    """A value that can go up and down per label set."""

    kind = "gauge"

    def set(self, labels: tuple, value: float) -> None:
        with self._lock:
            self._values[labels] = value


class Histogram(_Metric):
    """Cumulative-bucket histogram; stores [bucket counts..., sum, count]."""

    kind = "histogram"

    def __init__(self, name: str, label_names: tuple, buckets: tuple):
        super().__init__(name, label_names)
        self.buckets = buckets
        self._bounds = np.asarray(buckets, np.float64)

    def observe(self, labels: tuple, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            state = self._values.get(labels)
            if state is None:
                state = self._values[labels] = [0] * (len(self.buckets) + 3)
            state[index] += 1
            state[-2] += value
            state[-1] += 1

    def observe_many(self, labels: tuple, values) -> None:
        """Observes each of `values` (a sequence of numbers) under one lock.

        An ndarray is counted with numpy (no Python call per value), into the
        buckets `observe` would choose (NaN included: the first bucket, as bisect).
        """
        if isinstance(values, np.ndarray):
            values = values.astype(np.float64, copy=False).ravel()
            indexes = np.searchsorted(self._bounds, values, side="left")
            indexes[np.isnan(values)] = 0
            counts = np.bincount(indexes, minlength=len(self.buckets) + 1)
            used = np.flatnonzero(counts).tolist()
            pairs = list(zip(used, counts[used].tolist(), strict=True))
            total, count = float(values.sum()), len(values)
        else:
            indexes = [bisect.bisect_left(self.buckets, v) for v in values]
            pairs = [(index, 1) for index in indexes]
            total, count = sum(values), len(indexes)
        with self._lock:
            state = self._values.get(labels)
            if state is None:
                state = self._values[labels] = [0] * (len(self.buckets) + 3)
            for index, amount in pairs:
                state[index] += amount
            state[-2] += total
            state[-1] += count

    def _render_one(self, key, state) -> list:
        lines = []
        running = 0
        for bound, count in zip(self.buckets, state[: len(self.buckets)], strict=True):
            running += count
            le = f'le="{_format_number(bound)}"'
            lines.append(f"{self.name}_bucket{self._labels(key, le)} {running}")
        inf = 'le="+Inf"'
        lines.append(f"{self.name}_bucket{self._labels(key, inf)} {state[-1]}")
        lines.append(f"{self.name}_sum{self._labels(key)} {_format_number(state[-2])}")
        lines.append(f"{self.name}_count{self._labels(key)} {state[-1]}")
        return lines


class ServingMetrics:
    """All metrics the server records, plus the text exposition."""

    def __init__(self):
        self.known_models = None  # None: every name is a label (until models are configured)
        self._request_labels: dict = {}  # (model, version, api, entrypoint, status) -> labels
        self.request_count = Counter(":tensorflow:serving:request_count", ("model_name", "status"))
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            ("model_name", "API", "entrypoint"),
            _LATENCY_BUCKETS,
        )
        self.example_counts = Histogram(
            ":tensorflow:serving:request_example_counts", ("model",), _EXAMPLE_BUCKETS
        )
        self.example_count_total = Counter(
            ":tensorflow:serving:request_example_count_total", ("model",)
        )
        self.input_batch_size = Histogram(
            ":tensorflow:serving:batching_session:input_batch_size",
            ("model_name",),
            _EXAMPLE_BUCKETS,
        )
        self.processed_batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            ("model_name",),
            _EXAMPLE_BUCKETS,
        )
        self.load_attempts = Counter(
            ":tensorflow:cc:saved_model:load_attempt_count", ("model_path", "status")
        )
        self.warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency", ("model_path", "status"), _LATENCY_BUCKETS
        )
        self.request_log_count = Counter(
            ":tensorflow:serving:request_log_count", ("model_name", "status")
        )
        self.version_requests = Counter(
            ":serving:model_version_request_count",
            ("model_name", "version", "API", "entrypoint", "status"),
        )
        self.version_latency = Histogram(
            ":serving:model_version_request_latency", ("model_name", "version"), _LATENCY_BUCKETS
        )
        self.version_events = Counter(
            ":serving:model_version_events", ("model_name", "version", "event")
        )
        self.version_available = Gauge(
            ":serving:model_version_available", ("model_name", "version")
        )
        self.shadow_request_count = Counter(
            ":serving:shadow_request_count", ("model_name", "version", "status")
        )
        self.shadow_latency = Histogram(
            ":serving:shadow_latency", ("model_name", "version"), _LATENCY_BUCKETS
        )
        self.shadow_abs_diff = Histogram(
            ":serving:shadow_abs_diff", ("model_name", "version"), _DIFF_BUCKETS
        )
        self._all = [
            self.request_count,
            self.request_latency,
            self.example_counts,
            self.example_count_total,
            self.input_batch_size,
            self.processed_batch_size,
            self.load_attempts,
            self.warmup_latency,
            self.request_log_count,
            self.version_requests,
            self.version_latency,
            self.version_events,
            self.version_available,
            self.shadow_request_count,
            self.shadow_latency,
            self.shadow_abs_diff,
        ]

    def add_model_names(self, names) -> None:
        """Names that get their own request labels (configured models)."""
        self.known_models = frozenset(names) | (self.known_models or frozenset())
        self._request_labels = {}

    def record_request(
        self,
        model: str,
        version,
        api: str,
        entrypoint: str,
        status: str,
        latency_us: float = None,
        examples: int = 0,
    ) -> None:
        """Records one API call; latency only on success, like upstream."""
        key = (model, version, api, entrypoint, status)
        labels = self._request_labels.get(key)
        if labels is None:
            labels = self._request_label_sets(*key)
        count, per_version, latency, version_latency, per_model = labels
        self.request_count.inc(count)
        if per_version is not None:
            self.version_requests.inc(per_version)
        if latency_us is not None:
            self.request_latency.observe(latency, latency_us)
            if version_latency is not None:
                self.version_latency.observe(version_latency, latency_us)
        if examples:
            self.example_counts.observe(per_model, examples)
            self.example_count_total.inc(per_model, examples)

    def _request_label_sets(self, model, version, api, entrypoint, status) -> tuple:
        """The label tuples `record_request` updates for one kind of call (cached)."""
        shown = model
        if self.known_models is not None and model not in self.known_models:
            shown = UNKNOWN_MODEL
        labels = (
            (shown, status),
            None if version is None else (shown, str(version), api, entrypoint, status),
            (shown, api, entrypoint),
            None if version is None else (shown, str(version)),
            (shown,),
        )
        if len(self._request_labels) > 4096:  # e.g. clients naming many unknown models
            self._request_labels = {}
        self._request_labels[(model, version, api, entrypoint, status)] = labels
        return labels

    def record_batch(self, model: str, rows: int, padded: int) -> None:
        """Records one executed batch."""
        self.input_batch_size.observe((model,), rows)
        self.processed_batch_size.observe((model,), padded)

    def record_version_event(self, model: str, version: int, event: str) -> None:
        """Records load/unload transitions (`load_ok`, `load_error`, `unload`)."""
        self.version_events.inc((model, str(version), event))
        if event in ("load_ok", "unload"):
            self.version_available.set((model, str(version)), 1 if event == "load_ok" else 0)

    def render(self) -> bytes:
        """Returns the exposition text (TYPE lines, no HELP, trailing newline)."""
        lines = []
        for metric in self._all:
            if metric._values:
                lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode("utf-8")
