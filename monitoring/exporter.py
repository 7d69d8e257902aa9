"""The monitor's gauges over HTTP for Prometheus (the `taxi-monitor exporter` command).

    taxi-monitor exporter --textfile-dir /var/lib/taxi-monitor --model-config models.config \
        --model-name taxi --baseline-accuracy 0.80 --listen 127.0.0.1:9108

Every scrape of `/metrics` serves, read fresh:

* the gauges the checks wrote with `--textfile` into `--textfile-dir`
  (`window`, `spans`, `quality`; `*.prom` files, see monitoring/gauges.py),
  with a `model_name` label added; a family present in several files is
  merged, and a file that does not parse is skipped and counted in
  `taxi_monitor_textfile_errors{file}` (its samples are not served half-read);
* `taxi_monitor_version_role{model_name, version, role}` = 1 for each version
  label (`stable`, `canary`) of the model in the server's model config file,
  which the canary alert rules join with the server's per-version series;
* `taxi_monitor_baseline_accuracy{model_name, version}`, the accuracy the
  live-accuracy-drop alert measures from: with `--metadata`, for each version
  the model config names (labels, `specific` versions; under `latest` the
  newest pushed version), the overall `binary_accuracy` of the Evaluator run
  that blessed it (found through MLMD lineage, read once per version; a
  scrape reads the MLMD graph at most once, and not at all when it knows
  every version's accuracy and the served versions are named); with
  `--baseline-accuracy`, version `all` (compared with the live accuracy of all
  versions together);
* `taxi_monitor_textfile_mtime_seconds{file}`.

The checks keep running from cron (or a Kubernetes CronJob) and writing
files; the exporter only reads them, so a slow check never blocks a scrape.
"""

from __future__ import annotations

import functools
import glob
import logging
import os

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from monitoring.gauges import PREFIX
from serving import config as serving_config

log = logging.getLogger(__name__)
ROLES = ("stable", "canary")


def read_textfile(path: str) -> list[Metric]:
    """The metric families of one exposition file (raises ValueError if malformed)."""
    with open(path) as f:
        text = f.read()
    return list(text_string_to_metric_families(text))


def version_roles(model_config_path: str, model_name: str) -> dict[str, str]:
    """{version: role} from the `stable`/`canary` version labels of `model_name`.

    Raises:
      ValueError: the file does not parse or has no entry for `model_name`.
      OSError: the file cannot be read.
    """
    entry = _entry(model_config_path, model_name)
    return {
        str(version): label for label, version in entry.version_labels.items() if label in ROLES
    }


def _entry(model_config_path: str, model_name: str):
    """The model's entry in the server's model config file (OSError, ValueError)."""
    with open(model_config_path) as f:
        server_config = serving_config.parse_model_config(f.read())
    for entry in server_config.model_config_list.config:
        if entry.name == model_name:
            return entry
    raise ValueError(f"model {model_name!r} is not in {model_config_path}")


class MonitorCollector(Collector):
    """Collects the textfiles, version roles and baseline at each scrape."""

    def __init__(
        self,
        textfile_dir: str,
        model_name: str,
        model_config: str | None = None,
        baseline_accuracy: float | None = None,
        metadata: str | None = None,
    ):
        self.textfile_dir = textfile_dir
        self.model_name = model_name
        self.model_config = model_config
        self.baseline_accuracy = baseline_accuracy
        self.metadata = metadata
        self._evaluated: dict[str, float | None] = {}  # version -> accuracy (immutable)

    def _labelled(self, family: Metric) -> Metric:
        family.samples = [
            s._replace(labels={"model_name": self.model_name, **s.labels}) for s in family.samples
        ]
        return family

    def collect(self):
        merged: dict[str, Metric] = {}
        errors = GaugeMetricFamily(
            f"{PREFIX}_textfile_errors", "1 if the textfile does not parse", labels=["file"]
        )
        mtimes = GaugeMetricFamily(
            f"{PREFIX}_textfile_mtime_seconds", "Modification time of the textfile", labels=["file"]
        )
        # Oldest first: for a series present in two files the newest file wins.
        paths = sorted(glob.glob(os.path.join(self.textfile_dir, "*.prom")), key=_mtime_or_zero)
        for path in paths:
            name = os.path.basename(path)
            try:
                families = read_textfile(path)
                mtime = os.path.getmtime(path)
            except (OSError, ValueError) as e:
                log.warning("textfile %s skipped: %s", path, e)
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            mtimes.add_metric([name], mtime)
            for family in families:
                family = self._labelled(family)
                known = merged.get(family.name)
                if known is None:
                    merged[family.name] = family
                    continue
                if known.type != family.type:
                    log.warning("textfile %s: %s is a %s elsewhere", path, family.name, known.type)
                    continue
                keep = {_key(s): s for s in known.samples}
                keep.update({_key(s): s for s in family.samples})
                known.samples = list(keep.values())
        yield from merged.values()
        yield errors
        yield mtimes
        if self.model_config:
            role = GaugeMetricFamily(
                f"{PREFIX}_version_role",
                "1 for the version holding this label (stable/canary) in the model config",
                labels=["model_name", "version", "role"],
            )
            try:
                for version, label in sorted(
                    version_roles(self.model_config, self.model_name).items()
                ):
                    role.add_metric([self.model_name, version, label], 1)
            except (OSError, ValueError) as e:
                log.warning("model config %s: %s", self.model_config, e)
            yield role
        baseline = GaugeMetricFamily(
            f"{PREFIX}_baseline_accuracy",
            "Accuracy the live accuracy drop is measured from (version all: --baseline-accuracy)",
            labels=["model_name", "version"],
        )
        if self.baseline_accuracy is not None:
            baseline.add_metric([self.model_name, "all"], self.baseline_accuracy)
        if self.metadata and self.model_config:
            graph = _graph_loader(self.metadata)
            for version in self._configured_versions(graph):
                accuracy = self._evaluation_accuracy(version, graph)
                if accuracy is not None:
                    baseline.add_metric([self.model_name, version], accuracy)
        yield baseline

    def _configured_versions(self, graph) -> list[str]:
        """Versions the model config makes the server serve (see the module docstring);
        `graph()` is this scrape's MLMD graph."""
        try:
            entry = _entry(self.model_config, self.model_name)
            versions = {str(v) for v in entry.version_labels.values()}
            policy = entry.model_version_policy
            if policy.WhichOneof("policy_choice") == "specific":
                versions |= {str(v) for v in policy.specific.versions}
            elif not versions:
                import lineage

                pushed = lineage.pushed_versions(graph())
                versions = {max(pushed, key=int)} if pushed else set()
            return sorted(versions, key=int)
        except Exception as e:  # noqa: BLE001 - a scrape must not fail on a bad config/store
            log.warning("served versions of %s: %s", self.model_name, e)
            return []

    def _evaluation_accuracy(self, version: str, graph) -> float | None:
        """Overall binary_accuracy of the evaluation that blessed `version` (cached);
        `graph()` is this scrape's MLMD graph."""
        if version not in self._evaluated:
            self._evaluated[version] = None
            try:
                import lineage
                from monitoring import evaluation

                info = lineage.version_lineage(graph(), version)
                self._evaluated[version] = evaluation.overall_metric(
                    info["evaluation"][0], "binary_accuracy"
                )
            except Exception as e:  # noqa: BLE001 - logged; the other gauges are still served
                log.warning("evaluation accuracy of version %s: %s", version, e)
        return self._evaluated[version]


def _graph_loader(metadata: str):
    """A function that returns the MLMD graph of `metadata`, read at its first call only."""

    @functools.cache
    def graph():
        import lineage

        return lineage.Graph.load(lineage.open_store(metadata))

    return graph


def _mtime_or_zero(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _key(sample) -> tuple:
    return sample.name, tuple(sorted(sample.labels.items()))


def serve(collector: Collector, host: str, port: int):
    """Starts the HTTP server in a daemon thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, host, registry)
