"""``AtomicPusher``: TFX's Pusher with the atomic filesystem executor.

It also takes an optional ``behavioral_blessing`` (``BehavioralChecks``'
output): with it, a model is pushed only if the model blessing, the infra
blessing and the behavioral blessing all say so.
"""

from __future__ import annotations

from tfx import types
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.behavioral.artifact import BehavioralBlessing
from components.pusher.executor import BEHAVIORAL_BLESSING_KEY, AtomicPushExecutor
from core import compat

CODE_FINGERPRINT_KEY = "code_fingerprint"


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    """PusherSpec plus the optional ``behavioral_blessing`` input and ``code_fingerprint``."""

    PARAMETERS = {
        **standard_component_specs.PusherSpec.PARAMETERS,
        CODE_FINGERPRINT_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        BEHAVIORAL_BLESSING_KEY: ChannelParameter(type=BehavioralBlessing, optional=True),
    }


class AtomicPusher(Pusher):
    """Pusher's inputs and blessing checks (plus the behavioral one); atomic pushes."""

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)

    def __init__(
        self,
        model: types.BaseChannel | None = None,
        model_blessing: types.BaseChannel | None = None,
        infra_blessing: types.BaseChannel | None = None,
        behavioral_blessing: types.BaseChannel | None = None,
        push_destination: pusher_pb2.PushDestination | None = None,
        code_fingerprint: str = "",
    ):
        """Builds the component (filesystem ``push_destination`` only).

        ``code_fingerprint`` is a digest of the executor's code
        (``pipeline/code_digest.py``), not read: an exec property so that an
        edit changes TFX's cache key.
        """
        spec = AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            infra_blessing=infra_blessing,
            behavioral_blessing=behavioral_blessing,
            push_destination=push_destination,
            code_fingerprint=code_fingerprint,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        compat.init_base_component(self, spec)  # Pusher.__init__ would build a PusherSpec
