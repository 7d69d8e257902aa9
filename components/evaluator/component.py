"""``Evaluator``: TFX's Evaluator component with ``executor.Executor`` and two more parameters."""

from __future__ import annotations

from tfx import types
from tfx.components.evaluator import component as tfx_evaluator
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.evaluator import executor


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    """TFX's Evaluator spec plus ``max_rows``, ``seed`` and ``code_fingerprint``."""

    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        executor.MAX_ROWS_KEY: ExecutionParameter(type=int, optional=True),
        executor.SEED_KEY: ExecutionParameter(type=int, optional=True),
        executor.CODE_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }


class Evaluator(tfx_evaluator.Evaluator):
    """``tfx.components.Evaluator`` that scores at most ``max_rows`` rows of each split.

    Same class name (so the same node id), inputs, outputs and TFMA config
    as TFX's. ``max_rows`` 0 or None scores every row; ``seed`` picks the
    sample; ``code_fingerprint`` (a digest of the executor's code,
    ``pipeline/code_digest.py``) is there so that an edit of the executor
    changes TFX's cache key.
    """

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        *args,
        max_rows: int | None = None,
        seed: int = 0,
        code_fingerprint: str = "",
        **kwargs,
    ):
        """Builds the component: TFX Evaluator's arguments, then ours (see the class docstring)."""
        # TFX's constructor checks and fills in its arguments into its own
        # spec; ours is that spec plus our parameters, with fresh outputs.
        stock = tfx_evaluator.Evaluator(*args, **kwargs).spec
        spec = EvaluatorSpec(
            **stock.inputs,
            **{key: value for key, value in stock.exec_properties.items() if value is not None},
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            **{
                executor.MAX_ROWS_KEY: max_rows or 0,
                executor.SEED_KEY: seed,
                executor.CODE_FINGERPRINT_KEY: code_fingerprint,
            },
        )
        base_component.BaseComponent.__init__(self, spec=spec)
