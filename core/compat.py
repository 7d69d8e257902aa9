"""Every use of TFX, Beam, TFT, tfx_bsl and KerasTuner internals, checked against the locked versions.

The project relies on a few things these libraries do not promise: a private
class, a module attribute inside a ``src`` package, a skipped constructor,
private fields. Each such touch lives here, as one function that names what
it touches and why, and each has a smoke test (tests/core/test_compat.py)
that fails if the internal changes.

Before a touch is applied, the library's installed version must be the one
``requirements/lock.txt`` pins (``require``), since that is the version the
touch was written and tested against: an upgrade then stops with an error
naming the library, instead of breaking silently. ``taxi-pipeline`` checks
all of them at start-up (``check_versions``). The lock file is read from the
source checkout; installed from a wheel (no checkout), the pins embedded
here (``LOCKED``, kept equal to the lock file by a test) apply.

Importing this module imports none of the libraries.

Over 400 lines: the touches are kept together on purpose (one place to
review on an upgrade), each short; splitting them by library would scatter
the version checks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

# The patched libraries and the versions (requirements/lock.txt) the patches are for.
LOCKED = {
    "apache-beam": "2.59.0",
    "keras-tuner": "1.4.8",
    "tensorflow-transform": "1.16.0",
    "tfx": "1.16.0",
    "tfx-bsl": "1.16.1",
}
LOCK_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements", "lock.txt"
)


class IncompatibleVersionError(RuntimeError):
    """An installed library is not the version this module's patches are for."""


def _normalize(name: str) -> str:
    """A distribution name as pip compares them (``tf_keras`` == ``tf-keras``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str) -> dict[str, str]:
    """``name==version`` pins of a requirements file (normalized names)."""
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[_normalize(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


@functools.cache
def locked_versions() -> dict[str, str]:
    """The lock file's pins of the patched libraries (``LOCKED`` without a checkout)."""
    if not os.path.isfile(LOCK_FILE):
        return dict(LOCKED)
    pins = read_lock(LOCK_FILE)
    return {name: pins.get(name, version) for name, version in LOCKED.items()}


_checked: set[str] = set()
_checked_lock = threading.Lock()


def require(library: str) -> None:
    """Raises unless ``library`` is installed at its locked version (checked once).

    Raises:
      IncompatibleVersionError: it is another version, or not installed.
    """
    if library in _checked:
        return
    expected = locked_versions()[library]
    try:
        installed = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        installed = "not installed"
    if installed != expected:
        raise IncompatibleVersionError(
            f"{library} {installed} is installed, but core/compat.py patches internals of "
            f"{library}=={expected} (requirements/lock.txt): install {library}=={expected}, "
            "or re-check each patch of core/compat.py against the new version (its smoke "
            "tests are tests/core/test_compat.py) and update the lock"
        )
    with _checked_lock:
        _checked.add(library)


def check_versions() -> None:
    """``require`` for every patched library (the runner's start-up check)."""
    for library in LOCKED:
        require(library)


# --- Apache Beam -----------------------------------------------------------------

BEAM_SPEEDUPS_FLAG = "TAXI_BEAM_SPEEDUPS"


def memoize_per_instance(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn(obj)`` computed once per live ``obj``; falls back to ``fn`` if ``obj`` can't be keyed."""
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(fn)
    def cached(obj):
        try:
            return cache[obj]
        except KeyError:
            pass
        except TypeError:  # unhashable or not weak-referenceable
            return fn(obj)
        result = fn(obj)
        try:
            cache[obj] = result
        except TypeError:
            pass
        return result

    cached.__wrapped_uncached__ = fn
    return cached


def memoize_beam_dofn_specs() -> bool:
    """Memoizes ``apache_beam.transforms.userstate.get_dofn_specs`` per DoFn instance.

    A cold run builds about a dozen Beam pipelines (ExampleGen and
    StatisticsGen per span, Transform, two Evaluators) over a few thousand
    rows each, so Beam's per-pipeline fixed costs matter more than the data.
    ``get_dofn_specs`` (the state and timer parameters of a DoFn, found by
    ``inspect.signature`` on every method) runs thousands of times per cold
    run on the same DoFn objects, several seconds in all. Its answer only
    depends on the instance's methods, which a DoFn does not change after
    construction, so it is cached per instance (weakly: nothing is kept
    alive). Unhashable or non-weak-referenceable DoFns pass through uncached.

    The module attribute is replaced process-wide (Beam's own callers look it
    up at call time). Idempotent; ``TAXI_BEAM_SPEEDUPS=0`` turns it off (the
    benchmark measures the gain that way).

    Returns:
      Whether the memoization is in place.
    """
    if os.environ.get(BEAM_SPEEDUPS_FLAG, "1") == "0":
        return False
    require("apache-beam")
    from apache_beam.transforms import userstate

    current = userstate.get_dofn_specs
    if not hasattr(current, "__wrapped_uncached__"):
        userstate.get_dofn_specs = memoize_per_instance(current)
    return True


# --- TensorFlow Transform --------------------------------------------------------


def load_transform_graph(transform_savedmodel_dir: str) -> tuple[Any, dict]:
    """TFT's loader of a Transform graph, and the state a ``tf.Module`` must track to save it.

    TFT's public ``TransformFeaturesLayer`` is a Keras layer, which makes
    saving re-trace every Keras layer of the model through autograph. Its
    internal ``saved_transform_io_v2.SavedModelLoader`` (what the layer uses)
    applies the graph in a plain ``tf.function``; attaching the loader's
    attributes (``__dict__``: the imported SavedModel with its tables and
    vocabulary assets) to the exported module makes ``tf.saved_model.save``
    export them.

    Returns:
      ``(loader, state)``: call ``loader.apply_transform_model(raw_features)``;
      assign ``state`` to an attribute of the module being saved.
    """
    require("tensorflow-transform")
    from tensorflow_transform.saved import saved_transform_io_v2

    loader = saved_transform_io_v2.SavedModelLoader(transform_savedmodel_dir)
    return loader, loader.__dict__


# --- TFX Transform and tfx_bsl ----------------------------------------------------

_transform_processor_lock = threading.Lock()


@contextlib.contextmanager
def transform_reading_in_batches(read_batches: Callable[..., Any]) -> Iterator[None]:
    """Within the block, TFX's Transform executor reads its datasets jointly, in batches of records.

    TFX's ``transform.executor.Executor.Do`` runs a module-level
    ``TransformProcessor``. Inside the block that name is a subclass that
    changes two of its hooks:

    * ``_MakeDatasetList``: without an analyzer cache to write (TFX's
      ``can_process_jointly``), the analyzed spans are one dataset reading
      every span's files in the order given, instead of one dataset per span.
      TFT flattens several datasets into one PCollection before analysis, and
      Beam's in-memory runner materializes every multi-input Flatten (its
      ``sink_flattens``): the whole analyzed split was held in memory, 8.7 GB
      for the 12M train rows at 1000x the sample. One dataset streams.
    * ``_CreateTFXIO``: the TFXIO of ExampleGen's tf.Examples reads whole
      batches of records (``batched_tf_example_tfxio``) instead of Beam's
      record-at-a-time reader followed by ``BatchElements``.

    The name is put back on exit. Blocks run one at a time (a lock), so two
    Transforms in one process never see each other's processor.
    """
    require("tfx")
    from tfx.components.transform import executor
    from tfx.proto import example_gen_pb2

    class BatchedTransformProcessor(executor.TransformProcessor):
        def _MakeDatasetList(  # noqa: N802 - TFX's hook
            self,
            file_patterns,
            file_formats,
            data_format,
            data_view_uri,
            can_process_jointly,
            stats_output_paths=None,
            materialize_output_paths=None,
        ):
            joinable = (
                can_process_jointly
                and len(file_patterns) > 1
                and data_format == example_gen_pb2.FORMAT_TF_EXAMPLE
                and not data_view_uri
                and not stats_output_paths
                and not materialize_output_paths
                and len(set(file_formats)) == 1
            )
            if not joinable:
                return super()._MakeDatasetList(
                    file_patterns,
                    file_formats,
                    data_format,
                    data_view_uri,
                    can_process_jointly,
                    stats_output_paths,
                    materialize_output_paths,
                )
            [joint] = super()._MakeDatasetList(
                file_patterns[:1], file_formats[:1], data_format, data_view_uri, True
            )
            joint.joint_file_patterns = list(file_patterns)
            return [joint]

        def _CreateTFXIO(self, dataset, schema):  # noqa: N802 - TFX's hook
            tfxio = super()._CreateTFXIO(dataset, schema)
            patterns = getattr(dataset, "joint_file_patterns", None)
            return batched_tf_example_tfxio(tfxio, read_batches, patterns)

    with _transform_processor_lock:
        stock = executor.TransformProcessor
        executor.TransformProcessor = BatchedTransformProcessor
        try:
            yield
        finally:
            executor.TransformProcessor = stock


def batched_tf_example_tfxio(
    tfxio: Any, read_batches: Callable[..., Any], file_patterns: list[str] | None = None
) -> Any:
    """``tfxio`` with a Beam source that reads and decodes whole batches of records.

    The returned TFXIO is a ``TFExampleRecord`` (same schema, projections,
    tensor adapter, Arrow schema) whose ``BeamSource`` is one Beam element
    per TFXIO (the list of its file patterns, so the records come in file
    order on every runner) expanded by ``read_batches(patterns, batch_size,
    serialized_schema)`` into Arrow record batches. It relies on
    ``TFExampleRecord``'s private ``_file_pattern``, ``_schema``,
    ``_GetSchemaForDecoding`` and ``_ProjectImpl``.

    ``file_patterns``, if given, replace the TFXIO's own patterns.

    Returns ``tfxio`` itself when it is not a plain ``TFExampleRecord`` or
    asks for a raw-record column (kept by TFXIO's own source).

    Raises:
      ValueError: ``file_patterns`` are given for a TFXIO this cannot replace
        (its own source would read only its own pattern).
    """
    require("tfx-bsl")
    from tfx_bsl.tfxio import tf_example_record

    if type(tfxio) is not tf_example_record.TFExampleRecord or tfxio.raw_record_column_name:
        if file_patterns:
            raise ValueError(f"cannot read {file_patterns} jointly with a {type(tfxio).__name__}")
        return tfxio
    return _batched_tf_example_record_class()(
        list(file_patterns or tfxio._file_pattern),
        tfxio._schema,
        tfxio.telemetry_descriptors,
        read_batches,
    )


@functools.cache
def _batched_tf_example_record_class() -> type:
    import apache_beam as beam
    from tfx_bsl.tfxio import tf_example_record

    class BatchedTFExampleRecord(tf_example_record.TFExampleRecord):
        def __init__(self, file_pattern, schema, telemetry_descriptors, read_batches):
            super().__init__(
                file_pattern=file_pattern,
                schema=schema,
                telemetry_descriptors=telemetry_descriptors,
            )
            self._read_batches = read_batches

        def _ProjectImpl(self, tensor_names):  # noqa: N802 - tfx_bsl's API
            projected = super()._ProjectImpl(tensor_names)
            return BatchedTFExampleRecord(
                projected._file_pattern,
                projected._schema,
                projected.telemetry_descriptors,
                self._read_batches,
            )

        def BeamSource(self, batch_size=None):  # noqa: N802 - tfx_bsl's API
            schema = self._GetSchemaForDecoding()
            serialized = schema.SerializeToString() if schema is not None else None
            patterns, read = list(self._file_pattern), self._read_batches

            @beam.ptransform_fn
            def source(pipeline):
                return (
                    pipeline
                    | "Files" >> beam.Create([patterns])
                    | "ReadAndDecode" >> beam.FlatMap(read, batch_size, serialized)
                )

            return source()

    return BatchedTFExampleRecord


# --- KerasTuner ------------------------------------------------------------------


def use_tf_keras_in_keras_tuner() -> None:
    """Points KerasTuner's engine at tf-keras (the Keras this project trains with).

    KerasTuner 1.4 binds to Keras 3 whenever it is installed (``keras_tuner``
    is imported, with Keras 3, as soon as ``tfx.components`` is), so it would
    reject tf-keras models ("Expected ... a valid Keras Model instance") and
    tf-keras ``History`` results. Its engine only uses ``keras`` at run time
    for those checks, ``clear_session`` and optimizer copies; rebinding the
    ``keras`` name of ``keras_tuner.src.engine.tuner`` and ``.tuner_utils``
    is enough. Idempotent.
    """
    require("keras-tuner")
    import tf_keras
    from keras_tuner.src.engine import tuner as tuner_module
    from keras_tuner.src.engine import tuner_utils

    tuner_module.keras = tf_keras
    tuner_utils.keras = tf_keras


# --- TFX -------------------------------------------------------------------------


def init_base_component(component: Any, spec: Any) -> None:
    """Initializes a subclass of a TFX component from ``spec`` alone, skipping its parent's ``__init__``.

    ``AtomicPusher`` extends TFX's ``Pusher`` (its inputs, driver and
    blessing checks) with one more input; ``Pusher.__init__`` only builds a
    ``PusherSpec`` from its fixed arguments and hands it to
    ``BaseComponent.__init__``, so the subclass builds its own spec and calls
    ``BaseComponent.__init__`` directly.
    """
    require("tfx")
    from tfx.dsl.components.base import base_component

    base_component.BaseComponent.__init__(component, spec=spec)


def wrap_metadata_store(connection: Any, wrap: Callable[[Any], Any]) -> None:
    """Makes an entered ``tfx.orchestration.metadata.Metadata`` use ``wrap(store)``.

    ``Metadata`` opens its ``ml_metadata.MetadataStore`` on ``__enter__``
    into the private ``_store`` (which its ``store`` property and all its
    methods use); replacing it there makes every MLMD call of the launcher
    go through the wrapper (e.g. one that repeats calls MySQL rolled back).
    Idempotent when ``wrap`` returns its argument for an already wrapped store.
    """
    require("tfx")
    connection._store = wrap(connection._store)
