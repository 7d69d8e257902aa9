"""Live progress lines for a pipeline run: start, end, duration, cache hits.

``Progress`` is the ``listener`` of ``ConcurrentLocalDagRunner``: it prints
a line when a node starts and when it ends, and records one ``NodeRun`` per
node (``runs``, in start order) for the run summary.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import TextIO


@dataclasses.dataclass
class NodeRun:
    node_id: str
    started: float
    seconds: float = 0.0
    state: str = "RUNNING"  # COMPLETE, CACHED, FAILED or RESOLVED


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


class Progress:
    """Prints and records each node's run; safe to share between runner threads."""

    def __init__(self, out: TextIO = sys.stdout):
        self.runs: list[NodeRun] = []
        self._out = out
        self._lock = threading.Lock()

    def node_started(self, node_id: str) -> NodeRun:
        run = NodeRun(node_id, time.time())
        with self._lock:
            self.runs.append(run)
        self._line(f"[{_clock(run.started)}] start {node_id}")
        return run

    def node_finished(self, run: NodeRun, state: str) -> None:
        run.seconds, run.state = time.time() - run.started, state
        self._line(
            f"[{_clock(time.time())}] end   {run.node_id}  {run.seconds:.1f}s  {state.lower()}"
        )

    def node_failed(self, run: NodeRun) -> None:
        run.seconds, run.state = time.time() - run.started, "FAILED"
        self._line(f"[{_clock(time.time())}] FAILED {run.node_id} after {run.seconds:.1f}s")

    def _line(self, text: str) -> None:
        """One whole line per write: components may finish at the same time."""
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()
