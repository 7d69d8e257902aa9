"""``AtomicPusher``: TFX's Pusher with the atomic filesystem executor."""

from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.pusher.executor import AtomicPushExecutor


class AtomicPusher(Pusher):
    """Same inputs, outputs and blessing checks as Pusher; atomic pushes."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
