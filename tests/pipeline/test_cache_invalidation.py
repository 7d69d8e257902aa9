"""An edit to a module a node's code imports makes TFX's cache miss for that node only.

TFX reuses an execution whose cache key matches; the key hashes the node,
its input artifacts and its exec properties (``cache_utils.get_cache_context``,
what the launcher calls before deciding to re-run). With the same inputs, the
code fingerprints in the exec properties decide. These tests compile the
pipeline as the runner does, compute each node's key the way TFX's launcher
does, and edit a copy of the source tree.
"""

import os
import shutil

import pytest

from pipeline import code_digest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE_NODES = {"Transform", "Tuner", "ModelSelection", "Trainer"}
# The custom components whose executors are ours.
COMPONENT_NODES = {
    "CsvExampleGen",
    "StatisticsGen",
    "AnomaliesGate",
    "BehavioralChecks",
    "InfraCanary",
    "Pusher",
    "Evaluator",
    "TestEvaluator",
}


@pytest.fixture()
def tree(tmp_path):
    """A copy of the project's packages, to edit."""
    root = tmp_path / "tree"
    imported = {  # the packages the nodes' code imports (components, core, serving)
        dotted.split(".")[0]
        for entries in code_digest.NODE_ENTRY_MODULES.values()
        for dotted in code_digest.module_closure(CHECKOUT, entries)
    }
    imported.add("reporting")  # no node imports it: editing it must not miss any cache
    for package in sorted(imported):
        shutil.copytree(
            os.path.join(CHECKOUT, package),
            root / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return root


def _cache_keys(tmp_path, code: dict[str, str]) -> dict[str, str]:
    """Node id -> TFX's cache key for the same (no) inputs, with code fingerprints ``code``."""
    from tfx.dsl.compiler import compiler
    from tfx.orchestration import data_types_utils, metadata
    from tfx.orchestration.portable import cache_utils, inputs_utils

    from pipeline.pipeline import create_pipeline
    from pipeline.settings import PipelineSettings

    settings = PipelineSettings(
        pipeline_name="t",
        pipeline_root=str(tmp_path / "root"),
        data_root=str(tmp_path / "data"),
        schema_path=str(tmp_path / "schema"),
        serving_dir=str(tmp_path / "serving"),
        metadata_path=str(tmp_path / "m.sqlite"),
        code_fingerprints=code,
    )
    ir = compiler.Compiler().compile(create_pipeline(settings, span=2016))
    keys = {}
    with metadata.Metadata(metadata.sqlite_metadata_connection_config(settings.metadata_path)) as m:
        for node in ir.nodes:
            pipeline_node = node.pipeline_node
            parameters = data_types_utils.build_parsed_value_dict(
                inputs_utils.resolve_parameters_with_schema(
                    node_parameters=pipeline_node.parameters
                )
            )
            context = cache_utils.get_cache_context(
                metadata_handle=m,
                pipeline_node=pipeline_node,
                pipeline_info=ir.pipeline_info,
                parameters=parameters,
            )
            keys[pipeline_node.node_info.id] = context.name
    return keys


def _edit(path) -> None:
    with open(path, "a") as f:
        f.write("\n# an edit\n")


def _missed(tmp_path, tree, edited: str | None) -> set[str]:
    """Nodes whose cache key changes when ``edited`` (a path in ``tree``; None: nothing) is edited."""
    before = _cache_keys(tmp_path, code_digest.node_fingerprints(str(tree)))
    if edited is not None:
        _edit(tree / edited)
    after = _cache_keys(tmp_path, code_digest.node_fingerprints(str(tree)))
    assert before.keys() == after.keys()
    return {node for node in before if before[node] != after[node]}


@pytest.mark.slow
def test_the_runners_fingerprints_are_those_of_the_imported_tree(tmp_path, tree):
    assert code_digest.node_fingerprints(str(tree)) == code_digest.node_fingerprints()


@pytest.mark.slow
def test_editing_spans_py_misses_the_cache_of_every_node_that_reads_spans(tmp_path, tree):
    # components/spans.py orders the spans the model trains on; a hand-written
    # list of files once omitted it, and an edit was a stale cache hit.
    assert _missed(tmp_path, tree, "components/spans.py") == CODE_NODES


@pytest.mark.slow
def test_editing_the_model_misses_training_nodes_but_not_transform(tmp_path, tree):
    assert _missed(tmp_path, tree, "components/model.py") == CODE_NODES - {"Transform"}


@pytest.mark.slow
def test_editing_code_no_node_runs_keeps_every_cache_hit(tmp_path, tree):
    # The model card is written by the runner after the run, not by a node.
    assert _missed(tmp_path, tree, "reporting/model_card.py") == set()


@pytest.mark.slow
def test_a_rerun_of_unchanged_code_keeps_every_cache_key(tmp_path, tree):
    assert _missed(tmp_path, tree, None) == set()


# Module edited -> the nodes whose cache key it changes (and no other).
COMPONENT_EDITS = {
    # Our streaming CsvExampleGen executor.
    "components/example_gen/executor.py": {"CsvExampleGen"},
    "components/example_gen/wire.py": {"CsvExampleGen"},
    "components/statistics_gen/executor.py": {"StatisticsGen"},
    # StatisticsGen's and Transform's batched reader; Transform's executor module
    # (components/span_order.py) also holds the Trainer's and Tuner's.
    "components/records.py": {"StatisticsGen", "Transform", "Trainer", "Tuner"},
    # Both Evaluators sample large splits with it.
    "components/evaluator/sampling.py": {"Evaluator", "TestEvaluator"},
    # The Tuner and ModelSelection sample the train split with it; the
    # Evaluators' sampler keeps the smallest of the same record hashes.
    "components/sampling.py": {"Tuner", "ModelSelection", "Evaluator", "TestEvaluator"},
    "components/anomalies_gate/gate.py": {"AnomaliesGate"},
    # The Pusher imports components.behavioral.artifact, whose package
    # __init__ imports the checks: Python runs them when the Pusher starts.
    "components/behavioral/checks.py": {"BehavioralChecks", "Pusher"},
    "components/infra_canary/canary.py": {"InfraCanary"},
    "components/pusher/executor.py": {"Pusher"},
    "components/pusher/component.py": {"Pusher"},
    # The client encodes the canary's and the checks' requests.
    "serving/client.py": {"BehavioralChecks", "InfraCanary", "Pusher"},
    # The server InfraCanary starts as `python -m serving.server` (no import).
    "serving/server.py": {"InfraCanary"},
    "serving/model_manager.py": {"InfraCanary"},
    # Every node's code imports its top-level package, which imports core.env.
    "core/env.py": CODE_NODES | COMPONENT_NODES,
    # Code no node runs: a CLI, package data paths.
    "serving/client_cli.py": set(),
    "core/resources.py": set(),
}


@pytest.mark.slow
@pytest.mark.parametrize("edited", sorted(COMPONENT_EDITS))
def test_editing_a_custom_components_code_misses_exactly_its_nodes(tmp_path, tree, edited):
    assert _missed(tmp_path, tree, edited) == COMPONENT_EDITS[edited]
