"""create_pipeline builds the expected nodes and edges from its settings only."""

import json

import pytest
import tensorflow_model_analysis as tfma
from tfx.proto import pusher_pb2, range_config_pb2, trainer_pb2
from tfx.utils import proto_utils

from pipeline.pipeline import INGEST_NODES, create_pipeline, eval_config
from pipeline.settings import PipelineSettings


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("p")
    return PipelineSettings(
        pipeline_name="t",
        pipeline_root=str(root / "root"),
        data_root=str(root / "data"),
        schema_path=str(root / "schema"),
        serving_dir=str(root / "serving"),
        metadata_path=str(root / "m.sqlite"),
    )


def _nodes(p):
    return {c.id: c for c in p.components}


def _upstream(component):
    return {c.id for c in component.upstream_nodes}


def test_full_pipeline_nodes_and_edges(settings):
    p = create_pipeline(settings.replace(train_steps=10), span=2016)
    nodes = _nodes(p)
    assert set(nodes) == set(INGEST_NODES) | {
        "SpanResolver",
        "Transform",
        "Tuner",
        "ModelSelection",
        "Trainer",
        "BaselineModelResolver",
        "Evaluator",
        "TestEvaluator",
        "BehavioralChecks",
        "InfraCanary",
        "Pusher",
    }
    assert _upstream(nodes["StatisticsGen"]) == {"CsvExampleGen"}
    assert _upstream(nodes["ExampleValidator"]) == {"StatisticsGen", "ImportSchemaGen"}
    assert _upstream(nodes["AnomaliesGate"]) == {"ExampleValidator", "CsvExampleGen"}
    # Nothing trains before the gate has passed.
    assert "AnomaliesGate" in _upstream(nodes["SpanResolver"])
    assert "AnomaliesGate" in _upstream(nodes["Transform"])
    assert {"SpanResolver", "ImportSchemaGen"} <= _upstream(nodes["Transform"])
    assert {"SpanResolver", "Transform"} <= _upstream(nodes["Trainer"])
    # Tuner -> ModelSelection (the tuned wide & deep candidate) -> Trainer.
    assert "Tuner" in _upstream(nodes["ModelSelection"])
    assert "ModelSelection" in _upstream(nodes["Trainer"])
    assert "Trainer" in _upstream(nodes["BaselineModelResolver"])
    assert {"Trainer", "BaselineModelResolver", "SpanResolver"} <= _upstream(nodes["Evaluator"])
    assert {"Trainer", "Evaluator", "InfraCanary", "BehavioralChecks"} <= _upstream(nodes["Pusher"])
    assert "behavioral_blessing" in nodes["Pusher"].inputs
    assert _upstream(nodes["BehavioralChecks"]) == {"Trainer"}
    # The held-out test report: no baseline, never gates the push.
    assert {"Trainer", "SpanResolver"} <= _upstream(nodes["TestEvaluator"])
    assert "TestEvaluator" not in _upstream(nodes["Pusher"])
    assert {"Trainer", "CsvExampleGen"} <= _upstream(nodes["InfraCanary"])
    assert p.metadata_connection_config.sqlite.filename_uri == settings.metadata_path
    assert "--direct_running_mode=in_memory" in p.beam_pipeline_args


def test_span_and_steps_are_wired(settings):
    nodes = _nodes(create_pipeline(settings.replace(train_steps=33, eval_steps=4), span=2015))
    range_config = proto_utils.json_to_proto(
        nodes["CsvExampleGen"].exec_properties["range_config"], range_config_pb2.RangeConfig()
    )
    assert range_config.static_range.start_span_number == 2015
    assert range_config.static_range.end_span_number == 2015
    train_args = proto_utils.json_to_proto(
        nodes["Trainer"].exec_properties["train_args"], trainer_pb2.TrainArgs()
    )
    assert train_args.num_steps == 33
    push = proto_utils.json_to_proto(
        nodes["Pusher"].exec_properties["push_destination"], pusher_pb2.PushDestination()
    )
    assert push.filesystem.base_directory == settings.serving_dir


def test_without_canary_pusher_needs_only_the_model_blessing(settings):
    nodes = _nodes(create_pipeline(settings.replace(canary=False)))
    assert "InfraCanary" not in nodes
    assert "infra_blessing" not in nodes["Pusher"].inputs


def test_ingest_only_has_no_training(settings):
    p = create_pipeline(settings, span=2013, ingest_only=True)
    assert set(_nodes(p)) == set(INGEST_NODES)


def _thresholds(config) -> dict:
    """class name -> the threshold on the overall slice."""
    return {
        m.class_name: m.per_slice_thresholds[0].threshold
        for m in config.metrics_specs[0].metrics
        if m.per_slice_thresholds
    }


def test_default_blessing_thresholds_in_config_flags_and_node(settings):
    from pipeline import configs, flags, local_runner

    assert configs.MIN_AUC == 0.75 and configs.MAX_AUC_DROP == 0.01
    assert configs.CALIBRATION_BOUNDS == (0.85, 1.15)
    training = flags.training_settings(local_runner.parse_args([]))
    assert training.min_auc == 0.75 and training.max_auc_drop == 0.01
    assert training == settings.training  # the flags' defaults are the settings' defaults
    node = _nodes(create_pipeline(settings, span=2016))["Evaluator"]
    config = proto_utils.json_to_proto(node.exec_properties["eval_config"], tfma.EvalConfig())
    thresholds = _thresholds(config)
    assert set(thresholds) == {"AUC", "Calibration"}
    assert thresholds["AUC"].value_threshold.lower_bound.value == 0.75
    assert thresholds["AUC"].change_threshold.absolute.value == -0.01
    assert thresholds["AUC"].change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    calibration = thresholds["Calibration"].value_threshold
    assert (calibration.lower_bound.value, calibration.upper_bound.value) == (0.85, 1.15)


def test_thresholds_gate_overall_slice_only():
    config = eval_config(min_auc=0.8, max_auc_drop=0.02)
    metrics = {m.class_name: m for m in config.metrics_specs[0].metrics}
    auc = metrics["AUC"].per_slice_thresholds[0]
    assert list(auc.slicing_specs[0].feature_keys) == []
    assert auc.threshold.value_threshold.lower_bound.value == 0.8
    assert auc.threshold.change_threshold.absolute.value == -0.02
    assert {tuple(s.feature_keys) for s in config.slicing_specs} == {
        (),
        ("trip_start_hour",),
        ("payment_type",),
    }
    assert "BinaryAccuracy" in metrics and not metrics["BinaryAccuracy"].HasField("threshold")


def test_tfma_computes_the_reported_metrics_and_gates_auc_and_calibration():
    # What TFMA itself makes of the config: its metric instances and its thresholds.
    from tensorflow_model_analysis.metrics import metric_specs

    from components.features import LABEL_KEY
    from pipeline import configs
    from reporting.model_analysis import HEADLINE_METRICS

    config = eval_config(min_auc=0.8, max_auc_drop=0.02, calibration_bounds=(0.9, 1.1))
    instances = {
        key.name: instance
        for key, _, instance in metric_specs.keys_and_metrics_from_specs(
            config, config.metrics_specs
        )
    }
    assert set(instances) == {*HEADLINE_METRICS, "calibration_plot"}
    assert instances["auc"].get_config()["num_thresholds"] == configs.AUC_THRESHOLDS == 1000
    gates = metric_specs.metric_thresholds_from_metrics_specs(config.metrics_specs, config)
    overall = tfma.SlicingSpec()
    assert {(key.name, key.is_diff): gate for key, gate in gates.items()} == {
        ("auc", False): [(overall, tfma.GenericValueThreshold(lower_bound={"value": 0.8}))],
        ("auc", True): [
            (
                overall,
                tfma.GenericChangeThreshold(
                    absolute={"value": -0.02}, direction=tfma.MetricDirection.HIGHER_IS_BETTER
                ),
            )
        ],
        ("calibration", False): [
            (
                overall,
                tfma.GenericValueThreshold(lower_bound={"value": 0.9}, upper_bound={"value": 1.1}),
            )
        ],
    }
    # The exported model's names (components/model.py): TFMA scores serving_examples'
    # probabilities on examples preprocessed by transform_features, against the label.
    [spec] = config.model_specs
    assert (spec.model_type, spec.signature_name, list(spec.preprocessing_function_names)) == (
        "tf_generic",
        "serving_examples",
        ["transform_features"],
    )
    assert (spec.label_key, spec.prediction_key) == (LABEL_KEY, "probabilities")


def test_test_evaluator_reports_test_split_without_thresholds(settings):
    nodes = _nodes(create_pipeline(settings, span=2016))
    assert json.loads(nodes["TestEvaluator"].exec_properties["example_splits"]) == ["test"]
    assert json.loads(nodes["Evaluator"].exec_properties["example_splits"]) == ["eval"]
    assert "baseline_model" not in nodes["TestEvaluator"].inputs
    config = eval_config(thresholds=False)
    assert not any(m.per_slice_thresholds for m in config.metrics_specs[0].metrics)
    assert [m.class_name for m in config.metrics_specs[0].metrics] == [
        m.class_name for m in eval_config().metrics_specs[0].metrics
    ]
    assert config.slicing_specs == eval_config().slicing_specs


def test_tuner_runs_by_default_with_a_small_budget_and_can_be_disabled(settings):
    from pipeline import configs

    assert 0 < configs.TUNE_TRIALS <= 3
    assert "Tuner" in _nodes(create_pipeline(settings, span=2016))
    assert "Tuner" not in _nodes(create_pipeline(settings.replace(tune_trials=0), span=2016))


def test_tuner_feeds_the_trainer(settings):
    # Without model selection the Tuner's values go straight to the Trainer.
    nodes = _nodes(
        create_pipeline(settings.replace(tune_trials=3, tune_steps=20, cv_folds=0), span=2016)
    )
    tuner = nodes["Tuner"]
    assert {"SpanResolver", "Transform"} <= _upstream(tuner)
    assert "Tuner" in _upstream(nodes["Trainer"])
    assert "hyperparameters" in nodes["Trainer"].inputs
    assert json.loads(tuner.exec_properties["custom_config"])["max_trials"] == 3
    train_args = proto_utils.json_to_proto(
        tuner.exec_properties["train_args"], trainer_pb2.TrainArgs()
    )
    eval_args = proto_utils.json_to_proto(
        tuner.exec_properties["eval_args"], trainer_pb2.EvalArgs()
    )
    # Tuning fits and scores on train (a fixed 10% validates): eval gates the
    # blessing and test is held out, so neither is an input of the Tuner.
    assert list(train_args.splits) == ["train"] and train_args.num_steps == 20
    assert list(eval_args.splits) == ["train"]


def test_model_selection_feeds_the_trainer_and_can_be_disabled(settings):
    nodes = _nodes(
        create_pipeline(settings.replace(cv_folds=4, cv_steps=30, tune_trials=0), span=2016)
    )
    selection = nodes["ModelSelection"]
    assert {"SpanResolver", "Transform"} <= _upstream(selection)
    assert "Tuner" not in nodes and "hyperparameters" not in selection.inputs
    assert "ModelSelection" in _upstream(nodes["Trainer"])
    hparams = nodes["Trainer"].inputs["hyperparameters"]
    assert hparams.producer_component_id == "ModelSelection"
    props = selection.exec_properties
    assert props["folds"] == 4 and props["steps"] == 30
    assert props["min_auc_gain"] == 0.0 and props["confidence"] == 0.95

    off = _nodes(create_pipeline(settings.replace(cv_folds=0, tune_trials=0), span=2016))
    assert "ModelSelection" not in off
    assert "hyperparameters" not in off["Trainer"].inputs


def test_model_selection_is_on_by_default_and_fingerprinted(settings):
    nodes = _nodes(
        create_pipeline(settings.replace(code_fingerprints={"selection": "abc123"}), span=2016)
    )
    assert nodes["ModelSelection"].exec_properties["code_fingerprint"] == "abc123"
    assert nodes["ModelSelection"].exec_properties["folds"] == 3


def test_tuner_values_are_an_input_of_model_selection(settings):
    nodes = _nodes(create_pipeline(settings.replace(tune_trials=2), span=2016))
    assert "Tuner" in _upstream(nodes["ModelSelection"])
    assert nodes["ModelSelection"].inputs["hyperparameters"].producer_component_id == "Tuner"
    assert nodes["Trainer"].inputs["hyperparameters"].producer_component_id == "ModelSelection"


def test_each_code_running_node_carries_its_own_code_fingerprint(settings):
    # A changed fingerprint changes the node's exec properties, which is what makes
    # TFX's cache re-run it after an edit (pipeline/code_digest.py computes them).
    from pipeline import code_digest

    code = code_digest.node_fingerprints()
    assert len(set(code.values())) == 11
    nodes = _nodes(create_pipeline(settings.replace(code_fingerprints=code), span=2016))
    custom = {
        node: json.loads(nodes[name].exec_properties["custom_config"])["code_fingerprint"]
        for node, name in (("transform", "Transform"), ("trainer", "Trainer"))
    }
    assert custom == {"transform": code["transform"], "trainer": code["trainer"]}
    assert nodes["ModelSelection"].exec_properties["code_fingerprint"] == code["selection"]
    tuner_config = json.loads(nodes["Tuner"].exec_properties["custom_config"])
    assert tuner_config["code_fingerprint"] == code["tuner"]
    props = {
        node: nodes[name].exec_properties.get("code_fingerprint")
        for node, name in (
            ("anomalies_gate", "AnomaliesGate"),
            ("behavioral", "BehavioralChecks"),
            ("infra_canary", "InfraCanary"),
            ("pusher", "Pusher"),
        )
    }
    assert props == {node: code[node] for node in props}
    for name in ("Evaluator", "TestEvaluator"):
        assert nodes[name].exec_properties["code_fingerprint"] == code["evaluator"], name
    statistics_gen = nodes["StatisticsGen"].exec_properties["code_fingerprint"]
    assert statistics_gen == code["statistics_gen"]
    example_gen_config = json.loads(nodes["CsvExampleGen"].exec_properties["custom_config"])
    assert example_gen_config["custom_config"]["value"] == {"code_fingerprint": code["example_gen"]}


def _carried(component, code: dict[str, str]) -> list[str]:
    """The fingerprints of ``code`` (node -> digest) among ``component``'s exec properties."""
    text = " ".join(str(value) for value in component.exec_properties.values())
    return [node for node, digest in code.items() if digest in text]


def test_every_node_running_our_executor_carries_the_fingerprint_of_that_executor(settings):
    # The fingerprint table (pipeline/code_digest.py) must follow the executors
    # create_pipeline really uses: a new custom component, or a node whose
    # executor moved, without a covering fingerprint would be a stale cache hit.
    from pipeline import code_digest

    code = {node: f"digest-of-{node}" for node in code_digest.NODE_ENTRY_MODULES}
    nodes = _nodes(create_pipeline(settings.replace(code_fingerprints=code), span=2016))
    ours = {}
    for name, component in nodes.items():
        spec = getattr(component, "executor_spec", None)
        module = getattr(getattr(spec, "executor_class", None), "__module__", "")
        if module.split(".")[0] in code_digest.FIRST_PARTY:
            ours[name] = module
    assert set(ours) == {
        "CsvExampleGen",
        "StatisticsGen",
        "AnomaliesGate",
        "Transform",
        "Evaluator",
        "TestEvaluator",
        "Tuner",
        "ModelSelection",
        "Trainer",
        "BehavioralChecks",
        "InfraCanary",
        "Pusher",
    }
    for name, component in nodes.items():
        carried = _carried(component, code)
        if name not in ours:
            assert carried == [], name  # TFX's own executors: TFX's version is the code
            continue
        assert len(carried) == 1, (name, carried)
        closure = code_digest.module_closure(None, code_digest.NODE_ENTRY_MODULES[carried[0]])
        assert ours[name] in closure, (name, carried)


def test_epoch_budgets_and_cv_sample_are_wired(settings):
    nodes = _nodes(
        create_pipeline(
            settings.replace(
                tune_trials=2,
                train_epochs=2.0,
                train_patience=5,
                tune_epochs=0.5,
                cv_epochs=3.0,
                cv_max_rows=1234,
                tune_max_rows=4321,
            ),
            span=2016,
        )
    )
    trainer = json.loads(nodes["Trainer"].exec_properties["custom_config"])
    assert trainer["train_epochs"] == 2.0
    assert trainer["early_stopping"] == {"patience": 5, "every": 200}
    tuner = json.loads(nodes["Tuner"].exec_properties["custom_config"])
    assert tuner["tune_epochs"] == 0.5 and tuner["tune_max_rows"] == 4321
    props = nodes["ModelSelection"].exec_properties
    assert props["epochs"] == 3.0 and props["max_rows"] == 1234


def test_default_budgets_keep_the_bundled_data_on_its_fixed_steps():
    # One pass over the bundled train split (~12,000 rows, 128 per batch) is
    # fewer steps than each minimum, so the 1x run trains as many steps as before.
    from components.model import budget_steps
    from pipeline import configs

    train_rows = 12_100
    assert budget_steps(train_rows, configs.TRAIN_EPOCHS, 128, configs.TRAIN_STEPS) == 800
    fit_rows = train_rows - train_rows // 10
    assert budget_steps(fit_rows, configs.TUNE_EPOCHS, 128, configs.TUNE_STEPS) == 200
    fold_rows = train_rows * 2 // 3
    assert budget_steps(fold_rows, configs.CV_EPOCHS, 128, configs.CV_STEPS) == 150
    # 100x: the Trainer sees every train row once.
    assert budget_steps(100 * train_rows, configs.TRAIN_EPOCHS, 128, configs.TRAIN_STEPS) == 9454


def test_both_evaluators_score_a_seeded_sample_of_at_most_eval_max_rows(settings):
    from pipeline import configs

    assert configs.EVAL_MAX_ROWS == 30_000
    for max_rows in (30_000, 1234, 0):
        nodes = _nodes(create_pipeline(settings.replace(seed=7, eval_max_rows=max_rows), span=2016))
        for name in ("Evaluator", "TestEvaluator"):
            props = nodes[name].exec_properties
            assert (props["max_rows"], props["seed"]) == (max_rows, 7), name
