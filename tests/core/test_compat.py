"""core/compat.py: the version check, and one smoke test per library internal it touches.

The smoke tests run against the installed libraries: each fails if the
internal a patch relies on changes (a name, a signature, what an attribute
holds), so an upgrade shows here instead of as a silently wrong run.
"""

import importlib.metadata
import inspect
import os

import pytest

from core import compat

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def fresh_checks(monkeypatch):
    """No library counts as checked yet (and none will after the test)."""
    monkeypatch.setattr(compat, "_checked", set())


def _installed_as(monkeypatch, library: str, version: str | None) -> None:
    """``importlib.metadata.version(library)`` says ``version`` (None: not installed)."""
    real = importlib.metadata.version

    def version_of(name):
        if name != library:
            return real(name)
        if version is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(compat.importlib.metadata, "version", version_of)


# --- the version check ------------------------------------------------------------


def test_embedded_pins_are_the_lock_files():
    pins = compat.read_lock(os.path.join(CHECKOUT, "requirements", "lock.txt"))
    assert compat.LOCKED == {name: pins[name] for name in compat.LOCKED}
    assert compat.locked_versions() == compat.LOCKED


def test_the_installed_libraries_are_the_locked_ones(fresh_checks):
    compat.check_versions()
    assert compat._checked == set(compat.LOCKED)


def test_another_version_is_an_error_naming_library_installed_and_expected(
    fresh_checks, monkeypatch
):
    _installed_as(monkeypatch, "keras-tuner", "1.5.0")
    with pytest.raises(compat.IncompatibleVersionError) as error:
        compat.check_versions()
    message = str(error.value)
    assert "keras-tuner 1.5.0 is installed" in message
    assert "keras-tuner==1.4.8" in message and "requirements/lock.txt" in message
    assert "keras-tuner" not in compat._checked  # checked again next time


def test_a_missing_library_is_named(fresh_checks, monkeypatch):
    _installed_as(monkeypatch, "tensorflow-transform", None)
    with pytest.raises(compat.IncompatibleVersionError, match="tensorflow-transform not installed"):
        compat.require("tensorflow-transform")


def test_without_a_checkout_the_embedded_pins_apply(monkeypatch, tmp_path):
    monkeypatch.setattr(compat, "LOCK_FILE", str(tmp_path / "no-lock.txt"))
    compat.locked_versions.cache_clear()
    try:
        assert compat.locked_versions() == compat.LOCKED
    finally:
        compat.locked_versions.cache_clear()


def test_the_lock_file_wins_over_the_embedded_pins(monkeypatch, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# pins\napache_beam==2.60.0 ; python_version >= '3.9'\ntfx==1.16.0\n")
    monkeypatch.setattr(compat, "LOCK_FILE", str(lock))
    compat.locked_versions.cache_clear()
    try:
        assert compat.locked_versions()["apache-beam"] == "2.60.0"
        assert compat.locked_versions()["keras-tuner"] == compat.LOCKED["keras-tuner"]
    finally:
        compat.locked_versions.cache_clear()


@pytest.mark.parametrize(
    "library, apply",
    [
        ("apache-beam", lambda: compat.memoize_beam_dofn_specs()),
        ("tensorflow-transform", lambda: compat.load_transform_graph("/nonexistent")),
        ("keras-tuner", lambda: compat.use_tf_keras_in_keras_tuner()),
        ("tfx", lambda: compat.init_base_component(object(), None)),
        ("tfx", lambda: compat.wrap_metadata_store(object(), lambda s: s)),
        ("tfx", lambda: compat.transform_reading_in_batches(print).__enter__()),
        ("tfx-bsl", lambda: compat.batched_tf_example_tfxio(object(), print)),
    ],
)
def test_every_patch_checks_its_library_before_touching_it(
    library, apply, fresh_checks, monkeypatch
):
    monkeypatch.delenv(compat.BEAM_SPEEDUPS_FLAG, raising=False)
    _installed_as(monkeypatch, library, "0.0.1")
    with pytest.raises(compat.IncompatibleVersionError, match=f"{library} 0.0.1"):
        apply()


# --- Apache Beam: userstate.get_dofn_specs ----------------------------------------


@pytest.fixture()
def beam_memoized(monkeypatch):
    from apache_beam.transforms import userstate

    monkeypatch.delenv(compat.BEAM_SPEEDUPS_FLAG, raising=False)
    original = userstate.get_dofn_specs
    monkeypatch.setattr(userstate, "get_dofn_specs", original)  # restored after the test
    assert compat.memoize_beam_dofn_specs()
    assert compat.memoize_beam_dofn_specs()  # idempotent: not wrapped twice
    assert userstate.get_dofn_specs.__wrapped_uncached__ is original
    return original


def _dofns():
    import apache_beam as beam
    from apache_beam.transforms.userstate import BagStateSpec

    class Plain(beam.DoFn):
        def process(self, x):
            yield x

    class Stateful(beam.DoFn):
        BAG = BagStateSpec("bag", beam.coders.VarIntCoder())

        def process(self, kv, bag=beam.DoFn.StateParam(BAG)):  # noqa: B008 - Beam's API
            bag.add(kv[1])
            yield kv

    return Plain, Stateful


def test_beam_get_dofn_specs_is_a_module_function_of_one_dofn():
    from apache_beam.transforms import userstate

    assert list(inspect.signature(userstate.get_dofn_specs).parameters) == ["dofn"]
    # Beam's callers look it up on the module at call time (so the memoized
    # function is the one they call).
    source = inspect.getsource(userstate.is_stateful_dofn)
    assert "get_dofn_specs(dofn)" in source


def test_memoized_answers_are_beams(beam_memoized):
    from apache_beam.transforms import userstate

    plain, stateful = _dofns()
    for dofn in (plain(), stateful()):
        assert userstate.get_dofn_specs(dofn) == beam_memoized(dofn)
    assert userstate.is_stateful_dofn(stateful())
    assert not userstate.is_stateful_dofn(plain())


def test_beam_callers_use_the_memoized_function(beam_memoized, monkeypatch):
    from apache_beam.transforms import userstate

    calls = []
    monkeypatch.setattr(
        userstate,
        "get_dofn_specs",
        compat.memoize_per_instance(lambda d: calls.append(d) or beam_memoized(d)),
    )
    _, stateful = _dofns()
    dofn = stateful()
    for _ in range(3):
        assert userstate.is_stateful_dofn(dofn)
    assert calls == [dofn]


def test_memoized_once_per_instance_and_unhashables_pass_through():
    import apache_beam as beam

    plain, _ = _dofns()
    calls = []
    cached = compat.memoize_per_instance(lambda d: calls.append(d) or len(calls))
    a, b = plain(), plain()
    assert [cached(a), cached(a), cached(b), cached(a)] == [1, 1, 2, 1]

    class Unhashable(beam.DoFn):
        __hash__ = None

        def process(self, x):
            yield x

    d = Unhashable()
    assert cached(d) == 3 and cached(d) == 4


def test_beam_memoization_can_be_turned_off(monkeypatch):
    from apache_beam.transforms import userstate

    monkeypatch.setenv(compat.BEAM_SPEEDUPS_FLAG, "0")
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)
    assert compat.memoize_beam_dofn_specs() is False
    assert not hasattr(userstate.get_dofn_specs, "__wrapped_uncached__")


@pytest.mark.slow
def test_a_stateful_pipeline_still_runs(beam_memoized):
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    _, stateful = _dofns()
    with beam.Pipeline() as p:
        result = (
            p
            | beam.Create([("k", 1), ("k", 2)])
            | beam.ParDo(stateful())
            | beam.combiners.Count.Globally()
        )
        assert_that(result, equal_to([2]))


# --- TensorFlow Transform: saved_transform_io_v2.SavedModelLoader -----------------


@pytest.mark.slow
def test_transform_loader_state_saves_the_graph_with_its_vocabulary(tmp_path):
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.saved import saved_transform_io_v2
    from tensorflow_transform.tf_metadata import schema_utils

    assert list(inspect.signature(saved_transform_io_v2.SavedModelLoader).parameters) == [
        "saved_model_dir"
    ]

    def preprocessing_fn(inputs):
        return {"word_id": tft.compute_and_apply_vocabulary(inputs["word"])}

    spec = {"word": tf.io.FixedLenFeature([], tf.string)}
    metadata = schema_utils.schema_from_feature_spec(spec)
    rows = [{"word": w} for w in (b"b", b"a", b"b", b"c", b"b", b"a")]
    from tensorflow_transform.tf_metadata import dataset_metadata

    with tft_beam.Context(temp_dir=str(tmp_path / "tmp"), force_tf_compat_v1=False):
        transform_fn = (
            rows,
            dataset_metadata.DatasetMetadata(metadata),
        ) | tft_beam.AnalyzeDataset(preprocessing_fn)
    graph_dir = str(tmp_path / "transform")
    _ = transform_fn | tft_beam.WriteTransformFn(graph_dir)
    output = tft.TFTransformOutput(graph_dir)

    loader, state = compat.load_transform_graph(output.transform_savedmodel_dir)
    assert callable(loader.apply_transform_model)

    # What components/model.py relies on: a module that tracks only ``state``
    # (not the loader) exports the graph with its vocabulary table.
    module = tf.Module()
    module.transform_state = state

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def word_ids(words):
        return loader.apply_transform_model({"word": words})["word_id"]

    module.word_ids = word_ids
    words = tf.constant([b"b", b"a", b"c", b"z"])
    expected = word_ids(words).numpy().tolist()
    assert expected == [0, 1, 2, -1]  # by frequency; out of vocabulary -> -1
    tf.saved_model.save(module, str(tmp_path / "exported"))
    del module
    reloaded = tf.saved_model.load(str(tmp_path / "exported"))
    assert reloaded.word_ids(words).numpy().tolist() == expected


# --- KerasTuner: the ``keras`` name of keras_tuner.src.engine -----------------------


def test_keras_tuner_engine_modules_use_a_module_level_keras_name():
    from keras_tuner.src.engine import tuner as tuner_module
    from keras_tuner.src.engine import tuner_utils

    for module, uses in (
        (tuner_module, ("keras.backend.clear_session", "keras.models.Model")),
        (tuner_utils, ("keras.callbacks.History",)),
    ):
        assert hasattr(module, "keras"), module.__name__
        source = inspect.getsource(module)
        for use in uses:
            assert use in source, (module.__name__, use)


@pytest.mark.slow
def test_keras_tuner_searches_tf_keras_models(tmp_path, monkeypatch):
    import keras_tuner
    import numpy as np
    import tf_keras
    from keras_tuner.src.engine import tuner as tuner_module
    from keras_tuner.src.engine import tuner_utils

    for module in (tuner_module, tuner_utils):  # restored after the test
        monkeypatch.setattr(module, "keras", module.keras)
    compat.use_tf_keras_in_keras_tuner()
    assert tuner_module.keras is tf_keras and tuner_utils.keras is tf_keras

    class HyperModel(keras_tuner.HyperModel):
        # As components/tuning.py's: fits itself (KerasTuner's own callbacks
        # still subclass Keras 3's Callback) and returns a number.
        def build(self, hp):
            model = tf_keras.Sequential(
                [tf_keras.layers.Dense(hp.Choice("units", [1, 2]), input_shape=(2,))]
            )
            model.compile(optimizer="sgd", loss="mse")
            return model

        def fit(self, hp, model, x, y, **kwargs):
            # A score without Keras' traced fit loop (autograph: a minute here).
            return float(np.mean((model(x).numpy() - y) ** 2))

    tuner = keras_tuner.RandomSearch(
        HyperModel(), objective="loss", max_trials=1, directory=str(tmp_path), seed=0
    )
    x = np.zeros((8, 2), dtype="float32")
    tuner.search(x, x[:, :1])
    assert tuner.oracle.get_best_trials()[0].score is not None


# --- TFX: BaseComponent.__init__ (AtomicPusher) and Metadata._store -----------------


def test_a_pusher_built_from_its_spec_alone_is_the_stock_pusher():
    from tfx import types
    from tfx.components import Pusher
    from tfx.dsl.components.base import base_component
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts, standard_component_specs

    assert Pusher.__mro__[1] is base_component.BaseComponent
    assert "spec" in inspect.signature(base_component.BaseComponent.__init__).parameters

    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory="/srv")
    )
    model = types.Channel(type=standard_artifacts.Model)

    class SpecOnly(Pusher):
        def __init__(self):
            spec = standard_component_specs.PusherSpec(
                model=model,
                push_destination=destination,
                custom_config="null",  # what Pusher.__init__ passes for None
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            )
            compat.init_base_component(self, spec)

    ours = SpecOnly()
    stock = Pusher(model=model, push_destination=destination)
    # Pusher.__init__ sets nothing that the spec-only path misses.
    assert set(vars(ours)) == set(vars(stock))
    assert ours.exec_properties == stock.exec_properties
    assert set(ours.inputs) == set(stock.inputs) and set(ours.outputs) == set(stock.outputs)
    assert ours.executor_spec.executor_class is stock.executor_spec.executor_class


def test_metadata_store_is_replaced_where_tfx_reads_it(tmp_path):
    import ml_metadata as mlmd
    from tfx.orchestration import metadata

    class Counting:
        def __init__(self, store):
            self.wrapped, self.calls = store, []

        def __getattr__(self, name):
            self.calls.append(name)
            return getattr(self.wrapped, name)

    config = metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite"))
    with metadata.Metadata(config) as m:
        assert isinstance(m._store, mlmd.MetadataStore)
        compat.wrap_metadata_store(m, Counting)
        assert isinstance(m.store, Counting)
        # TFX's own methods go through the replacement.
        assert m.get_artifacts_by_uri("/nowhere") == []
        assert m.store.calls == ["get_artifacts_by_uri"]


# --- TFX Transform and tfx_bsl: the TFXIO and dataset hooks -----------------------


def _tfxio(pattern="/data/Split-train/*"):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.tfxio import tf_example_record

    schema = schema_pb2.Schema()
    schema.feature.add(name="fare", type=schema_pb2.FLOAT)
    schema.feature.add(name="company", type=schema_pb2.BYTES)
    return tf_example_record.TFExampleRecord(pattern, schema=schema, telemetry_descriptors=["t"])


def _read(patterns, batch_size=None, schema=None):
    yield (tuple(patterns), batch_size, schema)


def test_the_batched_tfxio_is_the_stock_one_but_for_its_beam_source():
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to
    from tensorflow_metadata.proto.v0 import schema_pb2

    stock = _tfxio()
    ours = compat.batched_tf_example_tfxio(stock, _read)
    assert ours.ArrowSchema().equals(stock.ArrowSchema())
    assert ours.TensorRepresentations() == stock.TensorRepresentations()
    projected = ours.Project(["fare"])
    assert projected.ArrowSchema().names == ["fare"]
    with beam.Pipeline() as p:
        out = p | projected.BeamSource(64)
        named = out | beam.MapTuple(
            lambda patterns, size, schema: (
                patterns,
                size,
                [f.name for f in schema_pb2.Schema.FromString(schema).feature],
            )
        )
        # The projection's schema (its features only) decodes; the batch size goes through.
        assert_that(named, equal_to([(("/data/Split-train/*",), 64, ["fare"])]))


def test_joint_patterns_replace_the_tfxios_own_and_other_tfxios_are_kept():
    joint = compat.batched_tf_example_tfxio(_tfxio(), _read, ["/a/*", "/b/*"])
    assert joint._file_pattern == ["/a/*", "/b/*"]
    raw = _tfxio()
    raw._raw_record_column_name = "raw"
    assert compat.batched_tf_example_tfxio(raw, _read) is raw
    with pytest.raises(ValueError, match=r"cannot read \['/a/\*'\] jointly"):
        compat.batched_tf_example_tfxio(raw, _read, ["/a/*"])


def test_transform_datasets_are_joined_only_without_an_analyzer_cache():
    from tfx.components.transform import executor
    from tfx.proto import example_gen_pb2

    stock = executor.TransformProcessor
    patterns = ["/s2/Split-train/*", "/s1/Split-train/*"]
    tf_example = example_gen_pb2.FORMAT_TF_EXAMPLE
    with compat.transform_reading_in_batches(_read):
        processor = executor.TransformProcessor()
        assert isinstance(processor, stock) and type(processor) is not stock
        [joint] = processor._MakeDatasetList(
            patterns, ["tfrecords_gzip"] * 2, tf_example, None, True
        )
        assert joint.joint_file_patterns == patterns
        tfxio = processor._CreateTFXIO(joint, _schema())
        assert tfxio._file_pattern == patterns
        # An analyzer cache is written per span: one dataset each.
        apart = processor._MakeDatasetList(
            patterns, ["tfrecords_gzip"] * 2, tf_example, None, False
        )
        assert sorted(d.file_pattern for d in apart) == sorted(patterns)
        assert not any(hasattr(d, "joint_file_patterns") for d in apart)
        other = processor._MakeDatasetList(
            patterns, ["tfrecords_gzip"] * 2, example_gen_pb2.FORMAT_PROTO, None, True
        )
        assert len(other) == 2
    assert executor.TransformProcessor is stock


def _schema():
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    schema.feature.add(name="fare", type=schema_pb2.FLOAT)
    return schema
