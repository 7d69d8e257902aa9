"""``CsvExampleGen`` with the streaming executor (same node id, spec and outputs as TFX's)."""

from __future__ import annotations

from tfx.components import CsvExampleGen as _CsvExampleGen
from tfx.dsl.components.base import executor_spec

from components.example_gen.executor import Executor


class CsvExampleGen(_CsvExampleGen):
    """TFX's CsvExampleGen, ingesting through ``executor.Executor``.

    Same class name (so the same node id), parameters, driver (span and
    version resolution, input fingerprints) and output artifact.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
