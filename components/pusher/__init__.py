"""Pusher whose filesystem push is atomic."""

from components.pusher.component import AtomicPusher
from components.pusher.executor import (
    AtomicPushExecutor,
    atomic_copy_dir,
    newest_version,
    next_version,
    tree_digest,
)

__all__ = [
    "AtomicPushExecutor",
    "AtomicPusher",
    "atomic_copy_dir",
    "newest_version",
    "next_version",
    "tree_digest",
]
