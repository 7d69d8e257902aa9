"""``StatisticsGen``: TFX's StatisticsGen component with ``executor.Executor``."""

from __future__ import annotations

from tfx import types
from tfx.components.statistics_gen import component as tfx_statistics_gen
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.statistics_gen import executor


class StatisticsGenSpec(standard_component_specs.StatisticsGenSpec):
    """TFX's StatisticsGen spec plus ``code_fingerprint``."""

    PARAMETERS = {
        **standard_component_specs.StatisticsGenSpec.PARAMETERS,
        executor.CODE_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }


class StatisticsGen(tfx_statistics_gen.StatisticsGen):
    """``tfx.components.StatisticsGen`` reading the records in batches (``executor``).

    Same class name (so the same node id), inputs, outputs and options as
    TFX's. ``code_fingerprint`` (a digest of the executor's code,
    ``pipeline/code_digest.py``) is there so that an edit of the executor
    changes TFX's cache key.
    """

    SPEC_CLASS = StatisticsGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, *args, code_fingerprint: str = "", **kwargs):
        """Builds the component: TFX StatisticsGen's arguments, then ``code_fingerprint``."""
        stock = tfx_statistics_gen.StatisticsGen(*args, **kwargs).spec
        spec = StatisticsGenSpec(
            **stock.inputs,
            **{key: value for key, value in stock.exec_properties.items() if value is not None},
            statistics=types.Channel(type=standard_artifacts.ExampleStatistics),
            **{executor.CODE_FINGERPRINT_KEY: code_fingerprint},
        )
        base_component.BaseComponent.__init__(self, spec=spec)
