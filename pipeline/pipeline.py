"""``create_pipeline``: the taxi TFX DAG, built from arguments only.

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
same records and splits, bounded memory.

``[Tuner]`` only with ``tune_trials > 0``; ``[ModelSelection]`` (k-fold CV of
the logistic baseline vs wide & deep on the train split, whose choice the
Trainer trains) unless ``cv_folds == 0``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Narrow imports on purpose: ``tfx.v1`` and ``tensorflow_model_analysis``
# pull in Google Cloud clients and TFMA's Beam code, seconds of start-up that
# a local run (and a cached re-run above all) does not need.
from tensorflow_model_analysis.proto import config_pb2 as tfma  # noqa: E402
from tfx.components import (  # noqa: E402
    Evaluator,
    ExampleValidator,
    SchemaGen,
    StatisticsGen,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen  # noqa: E402
from tfx.dsl.components.common.resolver import Resolver  # noqa: E402
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (  # noqa: E402
    LatestBlessedModelStrategy,
)
from tfx.orchestration import pipeline as tfx_pipeline  # noqa: E402
from tfx.proto import (  # noqa: E402
    example_gen_pb2,
    pusher_pb2,
    range_config_pb2,
    trainer_pb2,
    transform_pb2,
)
from tfx.types import Channel, standard_artifacts  # noqa: E402

from components.anomalies_gate import AnomaliesGate  # noqa: E402
from components.baseline import PreviousBlessedModelStrategy  # noqa: E402
from components.behavioral import BehavioralChecks  # noqa: E402
from components.example_gen import CsvExampleGen  # noqa: E402
from components.features import LABEL_KEY, SLICE_KEYS  # noqa: E402
from components.infra_canary import InfraCanary  # noqa: E402
from components.model_selection import ModelSelection  # noqa: E402
from components.pusher import AtomicPusher  # noqa: E402
from components.span_order import Trainer, Transform, Tuner  # noqa: E402
from components.spans import LatestValidatedSpansStrategy  # noqa: E402
from lineage import metadata_store  # noqa: E402
from pipeline import configs  # noqa: E402

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
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    schema_path: str,
    serving_dir: str,
    metadata_path: str,
    span: int | None = None,
    num_spans: int = configs.NUM_SPANS,
    train_steps: int = configs.TRAIN_STEPS,
    eval_steps: int = configs.EVAL_STEPS,
    train_epochs: float = configs.TRAIN_EPOCHS,
    seed: int = configs.SEED,
    code_fingerprints: dict[str, str] | None = None,
    beam_pipeline_args: list[str] | None = None,
    ingest_only: bool = False,
    canary: bool = True,
    analyzer_cache: bool = False,
    enable_cache: bool = True,
    min_auc: float = configs.MIN_AUC,
    max_auc_drop: float = configs.MAX_AUC_DROP,
    tune_trials: int = configs.TUNE_TRIALS,
    tune_steps: int = configs.TUNE_STEPS,
    tune_epochs: float = configs.TUNE_EPOCHS,
    cv_folds: int = configs.CV_FOLDS,
    cv_steps: int = configs.CV_STEPS,
    cv_epochs: float = configs.CV_EPOCHS,
    cv_max_rows: int = configs.CV_MAX_ROWS,
    cv_min_auc_gain: float = configs.CV_MIN_AUC_GAIN,
    cv_confidence: float = configs.CV_CONFIDENCE,
    portable: bool = False,
) -> tfx_pipeline.Pipeline:
    """Builds the taxi pipeline.

    Args:
      pipeline_name: MLMD pipeline context name; runs that share it share
        lineage and caching.
      pipeline_root: root for component outputs.
      data_root: folder holding ``span-<N>/*.csv`` spans.
      schema_path: folder holding the curated ``schema.pbtxt``.
      serving_dir: models are pushed to ``serving_dir/<version>``.
      metadata_path: ML Metadata: an SQLite file or a mysql:// URL (lineage/metadata_store.py).
      span: span to ingest; None means the newest span in ``data_root``.
      num_spans: train on the newest ``num_spans`` ingested spans; 0 means all.
      train_steps / eval_steps: Trainer steps (``train_steps`` at least).
      train_epochs: the Trainer also trains this many passes over the train
        split (``components.model.budget_steps``); 0 = ``train_steps`` only.
      seed: training seed.
      code_fingerprints: digests of the Transform and Trainer code, keyed
        "transform" and "trainer"; part of their exec properties so a code
        change invalidates their cache.
      beam_pipeline_args: Beam flags for Beam-powered components.
      ingest_only: build only the ingestion and validation nodes (used to
        backfill older spans).
      canary: serve the candidate on our TF-Serving-compatible server and
        probe it over REST and gRPC before pushing (InfraCanary); Pusher then
        needs both the model blessing and the infra blessing.
      analyzer_cache: keep Transform's per-span analyzer cache, so a new span
        is analyzed alone. It pays off for large spans; on the taxi sample it
        doubles Transform's time (one analyzer graph per span), so it is off
        by default.
      enable_cache: reuse results of executions whose inputs are unchanged.
      min_auc / max_auc_drop: blessing thresholds.
      tune_trials: KerasTuner RandomSearch trials of a Tuner node whose best
        hyperparameters feed the Trainer; 0 (the default) means no Tuner.
      tune_steps / tune_epochs: train steps per tuning trial: at least
        ``tune_steps``, and ``tune_epochs`` passes over the rows it fits on.
      cv_folds: k of the ModelSelection node (k-fold cross-validation of the
        logistic baseline and wide & deep on the train split); its choice
        feeds the Trainer. 0 means no selection: the Trainer trains wide &
        deep (with the Tuner's values if it runs).
      cv_steps / cv_epochs: train steps per fold and family: at least
        ``cv_steps``, and ``cv_epochs`` passes over the training folds.
      cv_max_rows: cross-validate on a seeded sample of at most this many
        train rows.
      cv_min_auc_gain / cv_confidence: the selection rule (see
        ``components.model_selection.cv.RULE``).
      portable: the variant for orchestrators whose compilers only know
        TFX's stock resolver strategies (Kubeflow Pipelines v2 / Vertex AI:
        LatestArtifact and LatestBlessedModel). It trains on the span this
        run ingested (no SpanResolver: ``num_spans`` is ignored), takes the
        newest blessed model as the baseline (TFX's LatestBlessedModelStrategy)
        and has no metadata connection (the orchestrator brings its own).
        Every component, its code and configuration are the same.

    Returns:
      A ``tfx_pipeline.Pipeline``.
    """
    range_config = None
    if span is not None:
        range_config = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span, end_span_number=span)
        )
    example_gen = CsvExampleGen(
        input_base=data_root,
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
    )
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    import_schema = ImportSchemaGen(schema_file=os.path.join(schema_path, "schema.pbtxt"))
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
            example_gen=example_gen,
            gate=gate,
            schema=import_schema.outputs["schema"],
            serving_dir=serving_dir,
            num_spans=num_spans,
            train_steps=train_steps,
            eval_steps=eval_steps,
            train_epochs=train_epochs,
            seed=seed,
            code_fingerprints=code_fingerprints or {},
            eval_cfg=eval_config(min_auc, max_auc_drop),
            test_eval_cfg=eval_config(thresholds=False),
            canary=canary,
            analyzer_cache=analyzer_cache,
            tune_trials=tune_trials,
            tune_steps=tune_steps,
            tune_epochs=tune_epochs,
            cv_folds=cv_folds,
            cv_steps=cv_steps,
            cv_epochs=cv_epochs,
            cv_max_rows=cv_max_rows,
            cv_min_auc_gain=cv_min_auc_gain,
            cv_confidence=cv_confidence,
            portable=portable,
        )

    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=None
        if portable
        else metadata_store.connection_config(metadata_path),
        beam_pipeline_args=list(beam_pipeline_args or configs.BEAM_ARGS_IN_MEMORY),
    )


def _training_nodes(
    *,
    example_gen,
    gate,
    schema,
    serving_dir: str,
    num_spans: int,
    train_steps: int,
    eval_steps: int,
    seed: int,
    code_fingerprints: dict[str, str],
    train_epochs: float = 0.0,
    eval_cfg: tfma.EvalConfig,
    test_eval_cfg: tfma.EvalConfig,
    canary: bool,
    analyzer_cache: bool,
    tune_trials: int = 0,
    tune_steps: int = configs.TUNE_STEPS,
    tune_epochs: float = 0.0,
    cv_folds: int = 0,
    cv_steps: int = configs.CV_STEPS,
    cv_epochs: float = 0.0,
    cv_max_rows: int = configs.CV_MAX_ROWS,
    cv_min_auc_gain: float = configs.CV_MIN_AUC_GAIN,
    cv_confidence: float = configs.CV_CONFIDENCE,
    portable: bool = False,
) -> list:
    """Span resolver, Transform, Trainer, baseline resolver, Evaluators, checks, Pusher."""
    span_resolver = None
    if portable:
        examples = example_gen.outputs["examples"]  # this run's span (gated below)
    else:
        span_resolver = Resolver(
            strategy_class=LatestValidatedSpansStrategy,
            config={"num_spans": num_spans},
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
        disable_analyzer_cache=not analyzer_cache,
    )
    transform.add_upstream_node(gate)
    tuner = None
    if tune_trials > 0:
        # Fits and scores on the train split (a fixed 10% validates, see
        # components/tuning.py): eval gates the blessing, test is held out.
        tuner = Tuner(
            tuner_fn=configs.TUNER_FN,
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema,
            train_args=trainer_pb2.TrainArgs(splits=["train"], num_steps=tune_steps),
            eval_args=trainer_pb2.EvalArgs(splits=["train"], num_steps=eval_steps),
            custom_config={
                "code_fingerprint": code_fingerprints.get("tuner", ""),
                "seed": seed,
                "max_trials": tune_trials,
                "tune_epochs": tune_epochs,
            },
        )
    hyperparameters = tuner.outputs["best_hyperparameters"] if tuner else None
    selection = None
    if cv_folds > 0:
        # k-fold CV on the train split only: eval gates the blessing, test is held out.
        selection = ModelSelection(
            examples=examples,
            transform_graph=transform.outputs["transform_graph"],
            hyperparameters=hyperparameters,
            folds=cv_folds,
            steps=cv_steps,
            epochs=cv_epochs,
            max_rows=cv_max_rows,
            seed=seed,
            min_auc_gain=cv_min_auc_gain,
            confidence=cv_confidence,
            code_fingerprint=code_fingerprints.get("selection", ""),
        )
        hyperparameters = selection.outputs["best_hyperparameters"]
    trainer = Trainer(
        run_fn=configs.RUN_FN,
        examples=examples,
        transform_graph=transform.outputs["transform_graph"],
        hyperparameters=hyperparameters,
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=["train"], num_steps=train_steps),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"], num_steps=eval_steps),
        custom_config={
            "code_fingerprint": code_fingerprints.get("trainer", ""),
            "seed": seed,
            "train_epochs": train_epochs,
        },
    )
    # Only the gating Evaluator blesses (TestEvaluator's blessing is never set).
    blessings = Channel(type=standard_artifacts.ModelBlessing, producer_component_id="Evaluator")
    if portable:
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
        eval_config=eval_cfg,
    )
    # The held-out test split: reported, never used to bless, tune or select.
    test_evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        example_splits=["test"],
        eval_config=test_eval_cfg,
    ).with_id("TestEvaluator")
    behavioral = BehavioralChecks(model=trainer.outputs["model"])
    nodes = [n for n in (span_resolver, transform, tuner, selection) if n] + [trainer]
    nodes.append(baseline_resolver)
    nodes += [evaluator, test_evaluator]
    nodes.append(behavioral)
    infra_blessing = None
    if canary:
        infra_canary = InfraCanary(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"]
        )
        infra_blessing = infra_canary.outputs["blessing"]
        nodes.append(infra_canary)
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_blessing,
        behavioral_blessing=behavioral.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    ).with_id("Pusher")
    return [*nodes, pusher]
