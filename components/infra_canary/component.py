"""InfraCanary component: the spec and channel wiring only."""

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.infra_canary import executor

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
BLESSING_KEY = "blessing"
SPLIT_KEY = "split"
NUM_REQUESTS_KEY = "num_requests"
TIMEOUT_SECONDS_KEY = "timeout_seconds"
PARITY_ROWS_KEY = "parity_rows"
PARITY_TOLERANCE_KEY = "parity_tolerance"
CODE_FINGERPRINT_KEY = "code_fingerprint"


class InfraCanarySpec(ComponentSpec):
    """Inputs, outputs and parameters of InfraCanary."""

    PARAMETERS = {
        SPLIT_KEY: ExecutionParameter(type=str),
        NUM_REQUESTS_KEY: ExecutionParameter(type=int),
        TIMEOUT_SECONDS_KEY: ExecutionParameter(type=int),
        PARITY_ROWS_KEY: ExecutionParameter(type=int),
        PARITY_TOLERANCE_KEY: ExecutionParameter(type=float),
        CODE_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing),
    }


class InfraCanary(base_component.BaseComponent):
    """Canaries a candidate model on our TF Serving-compatible server.

    Replaces InfraValidator (which needs Docker or Kubernetes): the executor
    serves the candidate SavedModel (`<model.uri>/Format-Serving`) with
    `serving.server` in a subprocess, sends REST predict/classify and gRPC
    Predict requests built from real examples, checks the answers and writes
    an InfraBlessing exactly like InfraValidator (`INFRA_BLESSED` or
    `INFRA_NOT_BLESSED` file, custom property `blessed` = 1/0), so Pusher's
    `infra_blessing` input works unchanged.

    It also checks training/serving parity: the first `parity_rows` examples
    of the split, sent through REST :predict and gRPC Predict as
    `serving-client` encodes them, must get the probability the model's own
    `serving_examples` signature (what the Evaluator scored) gives, within
    `parity_tolerance`; otherwise the model is not blessed. The blessing's
    `reason` property and `canary_report.json` say which check failed.

    Example:
        canary = InfraCanary(model=trainer.outputs["model"],
                             examples=example_gen.outputs["examples"])
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            infra_blessing=canary.outputs["blessing"], push_destination=...)
    """

    SPEC_CLASS = InfraCanarySpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        split: str = "eval",
        num_requests: int = 10,
        timeout_seconds: int = 180,
        parity_rows: int = 256,
        parity_tolerance: float = 1e-6,
        blessing: types.BaseChannel | None = None,
        code_fingerprint: str = "",
    ):
        """Builds the component.

        Args:
          model: channel of a `Model` (the Trainer's output).
          examples: channel of `Examples` with raw features (ExampleGen's output).
          split: split whose `Split-<split>` TFRecords feed the requests.
          num_requests: request rounds (each: REST predict, gRPC Predict, and
            REST classify when the model has a classification signature).
          timeout_seconds: how long the model may take to become AVAILABLE.
          parity_rows: examples of `split` checked for parity (REST and gRPC
            against `serving_examples`).
          parity_tolerance: largest allowed |served - offline| probability.
          blessing: optional output channel override.
          code_fingerprint: a digest of the executor's and the server's code
            (``pipeline/code_digest.py``), not read: an exec property so that
            an edit changes TFX's cache key.
        """
        spec = InfraCanarySpec(
            model=model,
            examples=examples,
            split=split,
            num_requests=num_requests,
            timeout_seconds=timeout_seconds,
            parity_rows=parity_rows,
            parity_tolerance=parity_tolerance,
            code_fingerprint=code_fingerprint,
            blessing=blessing or types.Channel(type=standard_artifacts.InfraBlessing),
        )
        super().__init__(spec=spec)
