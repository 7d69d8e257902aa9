"""``create_pipeline``: the taxi TFX DAG, built from its settings only.

Ingestion (one span per run)::

    CsvExampleGen -> StatisticsGen -> ExampleValidator(curated schema) -> AnomaliesGate
                                   -> SchemaGen (inferred, for comparison)
    ImportSchemaGen (curated schema from data/)

Training (on the newest ``num_spans`` ingested spans, found by a resolver)::

    AnomaliesGate -> Transform -> [Tuner] -> [ModelSelection] -> Trainer -> ...
    Trainer -> Evaluator(eval split, vs previous blessed) -> Pusher
            -> InfraCanary (serves + probes it) ------------^
            -> BehavioralChecks (hand-written cases) -------^
            -> TestEvaluator (held-out test split, report only)

CsvExampleGen is TFX's, with a streaming executor (components/example_gen):
same records and splits, bounded memory. StatisticsGen is TFX's, reading the
records in batches (components/statistics_gen): same statistics.

``[Tuner]`` only with ``training.tune_trials > 0``; ``[ModelSelection]`` (k-fold
CV of the logistic baseline vs wide & deep on the train split, whose choice
the Trainer trains) unless ``training.cv_folds == 0`` (``pipeline.settings``).
"""

from __future__ import annotations

import os

# Narrow imports on purpose: ``tfx.v1`` and ``tensorflow_model_analysis``
# pull in Google Cloud clients and TFMA's Beam code, seconds of start-up that
# a local run (and a cached re-run above all) does not need.
from tensorflow_model_analysis.proto import config_pb2 as tfma
from tfx.components import (
    ExampleValidator,
    SchemaGen,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import (
    example_gen_pb2,
    pusher_pb2,
    range_config_pb2,
    trainer_pb2,
    transform_pb2,
)
from tfx.types import Channel, standard_artifacts

from components.anomalies_gate import AnomaliesGate
from components.baseline import PreviousBlessedModelStrategy
from components.behavioral import BehavioralChecks
from components.evaluator import Evaluator
from components.example_gen import CsvExampleGen
from components.features import LABEL_KEY, SLICE_KEYS
from components.infra_canary import InfraCanary
from components.model_selection import ModelSelection
from components.pusher import AtomicPusher
from components.span_order import Trainer, Transform, Tuner
from components.spans import LatestValidatedSpansStrategy
from components.statistics_gen import StatisticsGen
from lineage import metadata_store
from pipeline import configs
from pipeline.settings import PipelineSettings

INGEST_NODES = (
    "CsvExampleGen",
    "StatisticsGen",
    "ImportSchemaGen",
    "SchemaGen",
    "ExampleValidator",
    "AnomaliesGate",
)


def eval_config(
    min_auc: float = configs.MIN_AUC,
    max_auc_drop: float = configs.MAX_AUC_DROP,
    calibration_bounds: tuple[float, float] = configs.CALIBRATION_BOUNDS,
    thresholds: bool = True,
) -> tfma.EvalConfig:
    """TFMA config: metrics, slices and the blessing thresholds.

    Thresholds gate the overall slice only; per-slice metrics are reported.
    ``thresholds=False`` gives the same metrics and slices without any
    threshold (the held-out test report: it never blesses anything).
    """
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_auc_drop},
        ),
    )
    calibration_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": calibration_bounds[0]},
            upper_bound={"value": calibration_bounds[1]},
        )
    )

    def gated(
        class_name: str, threshold: tfma.MetricThreshold, config: str = ""
    ) -> tfma.MetricConfig:
        """``class_name`` with ``threshold`` on the overall slice (if thresholds are on)."""
        per_slice = [
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        ]
        return tfma.MetricConfig(
            class_name=class_name,
            config=config,
            per_slice_thresholds=per_slice if thresholds else [],
        )

    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        # 1,000 thresholds (TFMA's default is 10,000): the AUC moves by < 1e-3
        # on eval splits of this size, and every slice's histogram work shrinks 10x.
        gated("AUC", auc_threshold, config=f'"num_thresholds": {configs.AUC_THRESHOLDS}'),
        tfma.MetricConfig(class_name="BinaryAccuracy"),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
        gated("Calibration", calibration_threshold),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                # Said, not probed: without it TFMA tries tf.keras.models.load_model
                # on every model it is given just to find out (~1 s each).
                model_type="tf_generic",
                signature_name="serving_examples",
                preprocessing_function_names=["transform_features"],
                label_key=LABEL_KEY,
                prediction_key="probabilities",
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in SLICE_KEYS],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def create_pipeline(
    settings: PipelineSettings, *, span: int | None = None, ingest_only: bool = False
) -> tfx_pipeline.Pipeline:
    """Builds the taxi pipeline.

    Args:
      settings: paths, Beam flags, caching and training settings
        (``pipeline.settings.PipelineSettings``).
      span: span to ingest; None means the newest span in ``settings.data_root``.
      ingest_only: build only the ingestion and validation nodes (used to
        backfill older spans).

    Returns:
      A ``tfx_pipeline.Pipeline``.
    """
    range_config = None
    if span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
    example_gen = CsvExampleGen(
        input_base=settings.data_root,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=configs.SPAN_PATTERN)]
        ),
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
                    for name, buckets in configs.SPLIT_BUCKETS.items()
                ]
            )
        ),
        range_config=range_config,
        code_fingerprint=settings.code_fingerprints.get("example_gen", ""),
    )
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        code_fingerprint=settings.code_fingerprints.get("statistics_gen", ""),
    )
    import_schema = ImportSchemaGen(schema_file=os.path.join(settings.schema_path, "schema.pbtxt"))
    inferred_schema = SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=import_schema.outputs["schema"],
    )
    gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],
        code_fingerprint=settings.code_fingerprints.get("anomalies_gate", ""),
    )
    components = [
        example_gen,
        statistics_gen,
        import_schema,
        inferred_schema,
        example_validator,
        gate,
    ]

    if not ingest_only:
        components += _training_nodes(
            settings,
            example_gen=example_gen,
            gate=gate,
            schema=import_schema.outputs["schema"],
        )

    return tfx_pipeline.Pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=settings.pipeline_root,
        components=components,
        enable_cache=settings.enable_cache,
        metadata_connection_config=None
        if settings.portable
        else metadata_store.connection_config(settings.metadata_path),
        beam_pipeline_args=list(settings.beam_pipeline_args),
    )


def _training_nodes(settings: PipelineSettings, *, example_gen, gate, schema) -> list:
    """Span resolver, Transform, Trainer, baseline resolver, Evaluators, checks, Pusher."""
    training = settings.training
    code_fingerprints = settings.code_fingerprints
    span_resolver = None
    if settings.portable:
        examples = example_gen.outputs["examples"]  # this run's span (gated below)
    else:
        span_resolver = Resolver(
            strategy_class=LatestValidatedSpansStrategy,
            config={"num_spans": settings.num_spans},
            examples=Channel(
                type=standard_artifacts.Examples, producer_component_id=example_gen.id
            ),
        ).with_id("SpanResolver")
        span_resolver.add_upstream_node(gate)
        examples = span_resolver.outputs["examples"]

    transform = Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=configs.PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"]),
        # The Trainer applies the transform graph in its input pipeline, which
        # is much cheaper here than writing transformed copies of every split.
        materialize=False,
        custom_config={"code_fingerprint": code_fingerprints.get("transform", "")},
        # StatisticsGen already profiles the data; skip Transform's own stats.
        disable_statistics=True,
        disable_analyzer_cache=not settings.analyzer_cache,
    )
    transform.add_upstream_node(gate)
    tuner = None
    if training.tune_trials > 0:
        # Fits and scores on the train split (a fixed 10% validates; a sample
        # above tune_max_rows rows, see components/tuning.py): eval gates the
        # blessing, test is held out.
        tuner = Tuner(
            tuner_fn=configs.TUNER_FN,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            train_args=trainer_pb2.TrainArgs(splits=["train"], num_steps=training.tune_steps),
            eval_args=trainer_pb2.EvalArgs(splits=["train"], num_steps=training.eval_steps),
            custom_config={
                "code_fingerprint": code_fingerprints.get("tuner", ""),
                "seed": training.seed,
                "max_trials": training.tune_trials,
                "tune_epochs": training.tune_epochs,
                "tune_max_rows": training.tune_max_rows,
            },
        )
    hyperparameters = tuner.outputs["best_hyperparameters"] if tuner else None
    selection = None
    if training.cv_folds > 0:
        # k-fold CV on the train split only: eval gates the blessing, test is held out.
        selection = ModelSelection(
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            hyperparameters=hyperparameters,
            folds=training.cv_folds,
            steps=training.cv_steps,
            epochs=training.cv_epochs,
            max_rows=training.cv_max_rows,
            seed=training.seed,
            min_auc_gain=training.cv_min_auc_gain,
            confidence=training.cv_confidence,
            code_fingerprint=code_fingerprints.get("selection", ""),
        )
        hyperparameters = selection.outputs["best_hyperparameters"]
    trainer = Trainer(
        run_fn=configs.RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        hyperparameters=hyperparameters,
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=["train"], num_steps=training.train_steps),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"], num_steps=training.eval_steps),
        custom_config={
            "code_fingerprint": code_fingerprints.get("trainer", ""),
            "seed": training.seed,
            "train_epochs": training.train_epochs,
            "early_stopping": {
                "patience": training.train_patience,
                "every": configs.TRAIN_CHECK_EVERY,
            },
        },
    )
    # Only the gating Evaluator blesses (TestEvaluator's blessing is never set).
    blessings = Channel(type=standard_artifacts.ModelBlessing, producer_component_id="Evaluator")
    if settings.portable:
        baseline_resolver = Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=blessings,
        ).with_id("BaselineModelResolver")
    else:
        baseline_resolver = Resolver(
            strategy_class=PreviousBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=blessings,
            candidate=trainer.outputs["model"],
        ).with_id("BaselineModelResolver")
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        example_splits=["eval"],
        eval_config=eval_config(training.min_auc, training.max_auc_drop),
        max_rows=training.eval_max_rows,
        seed=training.seed,
        code_fingerprint=code_fingerprints.get("evaluator", ""),
    )
    # The held-out test split: reported, never used to bless, tune or select.
    test_evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        example_splits=["test"],
        eval_config=eval_config(thresholds=False),
        max_rows=training.eval_max_rows,
        seed=training.seed,
        code_fingerprint=code_fingerprints.get("evaluator", ""),
    ).with_id("TestEvaluator")
    behavioral = BehavioralChecks(
        model=trainer.outputs["model"],
        code_fingerprint=code_fingerprints.get("behavioral", ""),
    )
    nodes = [n for n in (span_resolver, transform, tuner, selection) if n] + [trainer]
    nodes.append(baseline_resolver)
    nodes += [evaluator, test_evaluator]
    nodes.append(behavioral)
    infra_blessing = None
    if training.canary:
        infra_canary = InfraCanary(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            code_fingerprint=code_fingerprints.get("infra_canary", ""),
        )
        infra_blessing = infra_canary.outputs["blessing"]
        nodes.append(infra_canary)
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_blessing,
        behavioral_blessing=behavioral.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=settings.serving_dir)
        ),
        code_fingerprint=code_fingerprints.get("pusher", ""),
    ).with_id("Pusher")
    return [*nodes, pusher]
