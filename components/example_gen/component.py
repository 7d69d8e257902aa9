"""``CsvExampleGen`` with the streaming executor (same node id, spec and outputs as TFX's)."""

from __future__ import annotations

from google.protobuf import struct_pb2
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.example_gen.executor import Executor


class CsvExampleGen(FileBasedExampleGen):
    """TFX's CsvExampleGen, ingesting through ``executor.Executor``.

    Same class name (so the same node id), parameters, driver (span and
    version resolution, input fingerprints) and output artifact as
    ``tfx.components.CsvExampleGen``, which is ``FileBasedExampleGen`` with
    its own executor. ``code_fingerprint`` (a digest of the executor's code,
    ``pipeline/code_digest.py``) goes into ``custom_config``, which the
    executor does not read: it is there so that an edit of the executor
    changes TFX's cache key.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str | None = None,
        input_config: example_gen_pb2.Input | None = None,
        output_config: example_gen_pb2.Output | None = None,
        range_config: range_config_pb2.RangeConfig | None = None,
        code_fingerprint: str = "",
    ):
        """Builds the component; the arguments are ``tfx.components.CsvExampleGen``'s."""
        custom_config = None
        if code_fingerprint:
            custom_config = example_gen_pb2.CustomConfig()
            custom_config.custom_config.Pack(
                struct_pb2.Struct(
                    fields={"code_fingerprint": struct_pb2.Value(string_value=code_fingerprint)}
                )
            )
        super().__init__(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            custom_config=custom_config,
            range_config=range_config,
        )
