"""Transform, Trainer and Tuner that read their span artifacts in span order.

TFX hands a node the artifacts of an input channel in artifact-id order, not
in the order a resolver returned them. Artifact ids follow ingestion order,
which is not the span order when spans are ingested side by side (the
runner's backfill) or when an old span is re-ingested. The order matters:
the Trainer shuffles a stream of the spans' files with a fixed seed and TFT's
analyzers fold batches in order, so the same data in another order gives
another model. These subclasses sort ``examples`` newest span first (then
newest version) before running the stock executor; the components are the
stock ones otherwise (same class names, so the same node ids).

The Transform executor also reads its datasets in batches of records
(components/records.py through ``core.compat.batched_tf_example_tfxio``)
instead of Beam's record-at-a-time reader: same records, in file order.
"""

from __future__ import annotations

from tfx.components import Trainer as _Trainer
from tfx.components import Transform as _Transform
from tfx.components import Tuner as _Tuner
from tfx.components.trainer import executor as trainer_executor
from tfx.components.transform import executor as transform_executor
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec

from components import records
from components.spans import by_span
from core import compat

EXAMPLES_KEY = "examples"


def _sorted_inputs(input_dict: dict) -> dict:
    if EXAMPLES_KEY not in input_dict:
        return input_dict
    return {**input_dict, EXAMPLES_KEY: by_span(input_dict[EXAMPLES_KEY])}


class SpanOrderedTransformExecutor(transform_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        with compat.transform_reading_in_batches(records.matched_record_batches):
            return super().Do(_sorted_inputs(input_dict), output_dict, exec_properties)


class SpanOrderedTrainerExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        return super().Do(_sorted_inputs(input_dict), output_dict, exec_properties)


class SpanOrderedTunerExecutor(tuner_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX API
        return super().Do(_sorted_inputs(input_dict), output_dict, exec_properties)


class Transform(_Transform):
    """TFX Transform reading ``examples`` in span order."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(SpanOrderedTransformExecutor)


class Trainer(_Trainer):
    """TFX Trainer reading ``examples`` in span order."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SpanOrderedTrainerExecutor)


class Tuner(_Tuner):
    """TFX Tuner reading ``examples`` in span order."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SpanOrderedTunerExecutor)
