"""Model/version lifecycle: discovery, version policies, labels and reloads.

Mirrors TF Serving's file-system source plus AvailabilityPreserving manager:

* Each poll lists `<base_path>/<int>` children (other names are ignored),
  applies the version policy (`latest {N}`, `all`, `specific`) and loads the
  aspired versions that are not loaded yet, newest first.
* A new version is loaded and warmed up before any old version is unloaded,
  and old versions are unloaded only once an aspired version is AVAILABLE.
  So a corrupt or half-written version ends in END (with its error) and never
  takes the served version down; failed loads are retried
  `max_num_load_retries` times, `load_retry_interval` apart, and again
  whenever the version's files change.
* Under a `latest` policy a version that failed to load does not count: the
  newest loadable versions stand in for it (also at startup, which then
  completes with the stand-in instead of waiting out the retries).
* Labels may only point at AVAILABLE versions (unless
  `allow_version_labels_for_unavailable_models` and the label is new).
* Version states are never forgotten, so status lists unloaded versions as END.

Over 400 lines: one lock-guarded state machine per model (version policy, load retries,
stand-ins for failed versions, label checks, unload order) and the policy functions only
it uses, kept together so the rules of TF Serving's AvailabilityPreserving manager read
in one place.
"""

import dataclasses
import gc
import logging
import os
import random
import re
import threading
import time

from serving.errors import Code, ServingError
from serving.servable import Servable
from serving.warmup import warmup

log = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"\d+")
_UNLOAD_GRACE_SECONDS = 0.2


@dataclasses.dataclass
class VersionState:
    """A version's state name (`AVAILABLE`, ...) and its last error, if any."""

    state: str
    error_code: Code = Code.OK
    error_message: str = ""


@dataclasses.dataclass
class ManagerOptions:
    """Loading behaviour (TF Serving flag equivalents)."""

    tags: tuple = ("serve",)
    session_config: object = None
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_version_labels_for_unavailable_models: bool = False
    # Canary routing (not in TF Serving; 0 = off): requests that name neither a
    # version nor a label go to the `canary` label's version with this
    # probability and to the `stable` label's version otherwise.
    canary_traffic_share: float = 0.0
    # Also ours: with a shadow (serving/shadow.py) the candidate is usually the
    # newest version, so unversioned requests go to the `stable` label's version.
    route_to_stable: bool = False
    random: object = random.random


class _Model:
    """Book-keeping for one configured model name."""

    def __init__(self, config):
        self.config = config
        self.loaded: dict = {}  # version -> Servable (copy-on-write)
        self.latest = None  # highest AVAILABLE Servable
        self.states: dict = {}  # version -> VersionState
        self.labels: dict = {}  # label -> version
        self.failures: dict = {}  # version -> (attempts, next_retry_time, file fingerprint)
        self.initial_target = None  # highest aspired version at first sight


def _compact_heap() -> None:
    """Collects garbage, then freezes the survivors (the loaded graphs).

    Frozen objects are skipped by later GC passes, which keeps collection
    pauses out of request latency. Unfreezing first lets the objects of an
    unloaded version be collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _with_stand_ins(model: "_Model", policy, on_disk: dict, aspired: set) -> set:
    """The aspired versions, with loadable stand-ins for broken ones.

    Under a `latest {N}` policy (the default), a version whose last load
    failed does not count towards N: the next older loadable versions are
    served instead, while the broken ones stay aspired (they are retried,
    and replace the stand-ins once they load). `all` and `specific`
    policies are applied as they are.
    """
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice not in (None, "latest"):
        return aspired
    broken = {v for v in on_disk if _failed(model, v)}
    healthy = [v for v in sorted(on_disk, reverse=True) if v not in broken][: len(aspired)]
    return set(healthy) | (aspired & broken)


def _failed(model: "_Model", version: int) -> bool:
    """The version's last load failed (END with an error) and it is not loaded."""
    state = model.states.get(version)
    return (
        state is not None
        and state.state == "END"
        and state.error_code != Code.OK
        and version not in model.loaded
    )


def _fingerprint(path: str) -> tuple:
    """(name, size, mtime) of a version's SavedModel files, to notice a rewrite."""
    entries = []
    for directory in (path, os.path.join(path, "variables")):
        try:
            with os.scandir(directory) as items:
                for item in items:
                    if item.is_file():
                        stat = item.stat()
                        entries.append((item.path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            continue
    return tuple(sorted(entries))


def list_versions(base_path: str) -> dict:
    """Returns {version: directory} for the numeric children of `base_path`.

    Only direct children whose names are all digits count; `00012` is 12 (on
    duplicates the lexically first name wins). Files and dot-prefixed
    temporary directories are ignored.
    """
    try:
        names = sorted(os.listdir(base_path))
    except OSError:
        return {}
    versions: dict = {}
    for name in names:
        path = os.path.join(base_path, name)
        if _VERSION_DIR.fullmatch(name) and os.path.isdir(path):
            versions.setdefault(int(name), path)
    return versions


def aspired_versions(policy, on_disk: dict, model_name: str = "") -> set:
    """Applies a `ServableVersionPolicy` to the versions found on disk."""
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return set(on_disk)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        for version in sorted(wanted - set(on_disk)):
            log.warning(
                "Version %d of servable %s, which was requested to be served as a "
                "'specific' version in the servable's version policy, was not found "
                "in the file system",
                version,
                model_name,
            )
        return wanted & set(on_disk)
    count = max(1, policy.latest.num_versions) if choice == "latest" else 1
    return set(sorted(on_disk, reverse=True)[:count])


def validate_config(model_server_config) -> list:
    """Checks a `ModelServerConfig` and returns its `ModelConfig`s.

    Raises:
      ServingError: with TF Serving's validation messages.
    """
    if model_server_config.WhichOneof("config") != "model_config_list":
        raise ServingError(
            Code.INVALID_ARGUMENT,
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        )
    configs = list(model_server_config.model_config_list.config)
    seen = set()
    for config in configs:
        if config.name in seen:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Illegal to list model {config.name} multiple times in config list",
            )
        seen.add(config.name)
        if not config.model_platform and not config.model_type:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {config.name}",
            )
        if not os.path.isabs(config.base_path) and "://" not in config.base_path:
            raise ServingError(
                Code.INVALID_ARGUMENT,
                f"Expected model {config.name} to have an absolute path or URI; "
                f"got base_path()={config.base_path}",
            )
    return configs


class ModelManager:
    """Owns every loaded servable and answers lookups.

    Args:
      options: loading behaviour.
      scheduler: the batching scheduler (queues are dropped on unload).
      metrics: a `ServingMetrics` (optional).
      on_config: optional `fn(name, ModelConfig)` called when a model's config
        is applied (used to set up request logging).
    """

    def __init__(
        self, options: ManagerOptions = None, scheduler=None, metrics=None, on_config=None
    ):
        self.options = options or ManagerOptions()
        self._scheduler = scheduler
        self._metrics = metrics
        self._on_config = on_config
        self._models: dict = {}
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list = []

    # -- configuration ------------------------------------------------------

    def apply_config(self, model_server_config) -> None:
        """Replaces the served model list (labels are applied first).

        Raises:
          ServingError: invalid config or a label on an unavailable version.
        """
        configs = validate_config(model_server_config)
        with self._lock:
            for config in configs:
                old = self._models.get(config.name)
                if (
                    old is not None
                    and old.config is not None
                    and old.config.model_platform
                    and config.model_platform != old.config.model_platform
                ):
                    raise ServingError(
                        Code.INVALID_ARGUMENT,
                        f"Illegal to change a model's platform. For model {config.name} "
                        f"platform was {old.config.model_platform} and new platform "
                        f"requested is {config.model_platform}",
                    )
            new_labels = {c.name: self._checked_labels(c) for c in configs}
            names = {c.name for c in configs}
            if self._metrics is not None:
                self._metrics.add_model_names(names)
            for name, model in self._models.items():
                if name not in names and model.config is not None:
                    model.config = None
                    model.labels = {}
            for config in configs:
                model = self._models.get(config.name)
                if model is None:
                    model = self._models[config.name] = _Model(config)
                model.config = config
                model.labels = new_labels[config.name]
                if self._on_config is not None:
                    self._on_config(config.name, config)

    def _checked_labels(self, config) -> dict:
        model = self._models.get(config.name)
        current = model.labels if model is not None else {}
        available = set(model.loaded) if model is not None else set()
        labels = {}
        for label, version in config.version_labels.items():
            if version not in available:
                allowed = self.options.allow_version_labels_for_unavailable_models and (
                    label not in current or current[label] == version
                )
                if not allowed:
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model "
                        f"{config.name}, which is not currently available for inference",
                    )
            labels[label] = version
        return labels

    # -- polling ------------------------------------------------------------

    def poll(self) -> None:
        """One file-system pass over every configured model."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.items())
            for name, model in models:
                self._reconcile(name, model)

    def _reconcile(self, name: str, model: _Model) -> None:
        config = model.config
        if config is None:
            wanted, on_disk = set(), {}
        else:
            on_disk = list_versions(config.base_path)
            if not on_disk:
                if not os.path.isdir(config.base_path):
                    log.warning(
                        "Could not find base path %s for servable %s", config.base_path, name
                    )
                else:
                    log.warning(
                        "No versions of servable %s found under base path %s. Did you "
                        "forget to name your leaf directory as a number (eg. '/1/')?",
                        name,
                        config.base_path,
                    )
            aspired = aspired_versions(config.model_version_policy, on_disk, name)
            if model.initial_target is None and aspired:
                model.initial_target = max(aspired)
            # Each pass may find a broken version and let an older one stand in.
            for _ in range(len(on_disk) + 1):
                wanted = _with_stand_ins(model, config.model_version_policy, on_disk, aspired)
                todo = [
                    v
                    for v in sorted(wanted - set(model.loaded), reverse=True)
                    if self._may_attempt(model, v, on_disk[v])
                ]
                if not todo:
                    break
                for version in todo:
                    if self._stop.is_set():
                        return
                    self._load(name, model, version, on_disk[version])
        if wanted & set(model.loaded) or not wanted:
            for version in sorted(set(model.loaded) - wanted):
                self._unload(name, model, version)

    def _may_attempt(self, model: _Model, version: int, path: str) -> bool:
        """A first load, a due retry, or a failed version whose files changed."""
        attempts, next_time, files = model.failures.get(version, (0, 0.0, None))
        if attempts == 0:
            return True
        if files != _fingerprint(path):
            log.info("Files of failed version %d under %s changed; loading it again", version, path)
            model.failures.pop(version)
            return True
        return attempts <= self.options.max_num_load_retries and time.monotonic() >= next_time

    def _load(self, name: str, model: _Model, version: int, path: str) -> None:
        model.states[version] = VersionState("LOADING")
        started = time.monotonic()
        try:
            servable = Servable(name, version, path, self.options.tags, self.options.session_config)
        except Exception as e:  # corrupt / half-written SavedModel
            self._load_failed(name, model, version, path, e)
            return
        try:
            if self.options.enable_model_warmup:
                records = warmup(servable, self.options.num_request_iterations_for_warmup)
                if records and self._metrics is not None:
                    self._metrics.warmup_latency.observe(
                        (path, "OK"), (time.monotonic() - started) * 1e6
                    )
        except Exception as e:
            servable.close(drain_timeout=0)
            self._load_failed(name, model, version, path, e)
            return
        with self._lock:
            loaded = dict(model.loaded)
            loaded[version] = servable
            model.loaded = loaded
            model.latest = loaded[max(loaded)]
            model.states[version] = VersionState("AVAILABLE")
            model.failures.pop(version, None)
        _compact_heap()
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        broken = sorted(v for v in model.states if v > version and _failed(model, v))
        if broken:
            log.warning(
                "Servable %s version %d stands in for version(s) %s, which failed to load "
                "(see the model status); they are loaded again when their files change",
                name,
                version,
                ",".join(map(str, broken)),
            )
        if self._metrics is not None:
            self._metrics.load_attempts.inc((path, "success"))
            self._metrics.record_version_event(name, version, "load_ok")

    def _load_failed(self, name, model, version, path, error) -> None:
        code = getattr(error, "code", None)
        if not isinstance(code, Code):
            tf_code = getattr(error, "error_code", None)
            code = Code(tf_code) if isinstance(tf_code, int) and 0 < tf_code < 17 else Code.UNKNOWN
        message = getattr(error, "message", None) or str(error)
        attempts = model.failures.get(version, (0, 0.0, None))[0] + 1
        model.failures[version] = (
            attempts,
            time.monotonic() + self.options.load_retry_interval_seconds,
            _fingerprint(path),
        )
        model.states[version] = VersionState("END", code, message)
        log.error(
            "Loading servable {name: %s version: %d} failed (attempt %d): %s",
            name,
            version,
            attempts,
            message,
        )
        if self._metrics is not None:
            self._metrics.load_attempts.inc((path, code.name))
            self._metrics.record_version_event(name, version, "load_error")

    def _unload(self, name: str, model: _Model, version: int) -> None:
        with self._lock:
            servable = model.loaded.get(version)
            if servable is None:
                return
            model.states[version] = VersionState("UNLOADING")
            loaded = dict(model.loaded)
            del loaded[version]
            model.loaded = loaded
            model.latest = loaded[max(loaded)] if loaded else None
        time.sleep(_UNLOAD_GRACE_SECONDS)  # lets a lookup that just won the race enqueue
        servable.close()
        if self._scheduler is not None:
            self._scheduler.forget(servable)
        model.states[version] = VersionState("END")
        _compact_heap()
        log.info("Unloaded servable version {name: %s version: %d}", name, version)
        if self._metrics is not None:
            self._metrics.record_version_event(name, version, "unload")

    def pending_initial_loads(self) -> list:
        """Models whose first aspired version is neither AVAILABLE nor failed for good.

        Returns:
          (name, failed_error_or_None) pairs; an entry with an error means that
          version ended in error after all retries.
        """
        pending = []
        for name, model in list(self._models.items()):
            target = model.initial_target
            if model.config is None:
                continue
            if target is None:
                pending.append((name, None))
                continue
            state = model.states.get(target)
            if state is not None and state.state == "AVAILABLE":
                continue
            if model.loaded and _failed(model, target):
                continue  # an older version stands in; the failure is in the status
            attempts = model.failures.get(target, (0, 0, None))[0]
            if (
                state is not None
                and state.state == "END"
                and attempts > self.options.max_num_load_retries
            ):
                pending.append(
                    (
                        name,
                        f"{{name: {name} version: {target}}} due to error: {state.error_message}",
                    )
                )
            else:
                pending.append((name, None))
        return pending

    def start(self, poll_seconds: float) -> None:
        """Starts the background poller (`poll_seconds` <= 0: no polling)."""
        if poll_seconds <= 0:
            return
        thread = threading.Thread(
            target=self._poll_loop, args=(poll_seconds,), name="fs-poll", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def add_periodic(self, seconds: float, fn, name: str) -> None:
        """Runs `fn()` every `seconds` until `stop()` (errors are logged)."""

        def loop():
            while not self._stop.wait(seconds):
                try:
                    fn()
                except Exception:
                    log.exception("%s failed", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll()
            except Exception:
                log.exception("File-system poll failed")

    def stop(self) -> None:
        """Stops polling and unloads everything."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._poll_lock:
            for name, model in list(self._models.items()):
                for version in list(model.loaded):
                    self._unload(name, model, version)

    # -- lookups ------------------------------------------------------------

    def resolve(self, name: str, version: int = None, label: str = None) -> Servable:
        """Finds the servable for a request.

        Raises:
          ServingError: NOT_FOUND for unknown models/versions, INVALID_ARGUMENT
            for unknown labels (TF Serving's messages).
        """
        model = self._models.get(name)
        if label is not None:
            if model is None or label not in model.labels:
                raise ServingError(
                    Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}"
                )
            version = model.labels[label]
        options = self.options
        if (
            version is None
            and model is not None
            and (options.canary_traffic_share > 0 or options.route_to_stable)
        ):
            routed = self._route(model)
            if routed is not None:
                return routed
        if version is None:
            servable = model.latest if model is not None else None
            if servable is None:
                raise ServingError(
                    Code.NOT_FOUND, f"Servable not found for request: Latest({name})"
                )
            return servable
        servable = model.loaded.get(version) if model is not None else None
        if servable is None:
            raise ServingError(
                Code.NOT_FOUND, f"Servable not found for request: Specific({name}, {version})"
            )
        return servable

    def _route(self, model: _Model):
        """Canary routing: the `canary` or the `stable` servable, None if unlabelled."""
        labels, loaded = model.labels, model.loaded
        stable = loaded.get(labels.get("stable"))
        if stable is None:
            return None
        canary = loaded.get(labels.get("canary"))
        if canary is not None and self.options.random() < self.options.canary_traffic_share:
            return canary
        return stable

    def version_states(self, name: str, version: int = None) -> list:
        """Returns [(version, VersionState)] in descending version order.

        Raises:
          ServingError: NOT_FOUND with the status API's messages.
        """
        model = self._models.get(name)
        states = dict(model.states) if model is not None else {}
        if version is not None:
            if version not in states:
                raise ServingError(
                    Code.NOT_FOUND, f"Could not find version {version} of model {name}"
                )
            return [(version, states[version])]
        if not states:
            raise ServingError(Code.NOT_FOUND, f"Could not find any versions of model {name}")
        return sorted(states.items(), reverse=True)

    def model_names(self) -> list:
        """Names of the currently configured models."""
        return [n for n, m in self._models.items() if m.config is not None]
