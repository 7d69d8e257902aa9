"""Pusher whose filesystem push is atomic."""

from components.pusher.executor import AtomicPushExecutor, atomic_copy_dir, next_version

__all__ = ["AtomicPushExecutor", "atomic_copy_dir", "next_version"]
