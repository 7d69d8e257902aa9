"""Live progress lines for LocalDagRunner: start, end, duration, cache hits.

LocalDagRunner has no callbacks, so ``track`` wraps the launcher's ``launch``
for the duration of a run and records one ``NodeRun`` per component.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from ml_metadata.proto import metadata_store_pb2


@dataclasses.dataclass
class NodeRun:
    node_id: str
    started: float
    seconds: float = 0.0
    state: str = "RUNNING"  # COMPLETE, CACHED, FAILED or RESOLVED


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


@contextlib.contextmanager
def track(out: TextIO = sys.stdout) -> Iterator[list[NodeRun]]:
    """Patches ``Launcher.launch`` to print and record each component's run."""
    from tfx.orchestration.portable import launcher

    runs: list[NodeRun] = []
    original = launcher.Launcher.launch

    def launch(self):
        node_id = self._pipeline_node.node_info.id
        run = NodeRun(node_id, time.time())
        runs.append(run)
        _line(out, f"[{_clock(run.started)}] start {node_id}")
        try:
            info = original(self)
        except BaseException:
            run.seconds, run.state = time.time() - run.started, "FAILED"
            _line(out, f"[{_clock(time.time())}] FAILED {node_id} after {run.seconds:.1f}s")
            raise
        run.seconds = time.time() - run.started
        run.state = _state(self, info)
        _line(
            out, f"[{_clock(time.time())}] end   {node_id}  {run.seconds:.1f}s  {run.state.lower()}"
        )
        return info

    launcher.Launcher.launch = launch
    try:
        yield runs
    finally:
        launcher.Launcher.launch = original


def _line(out: TextIO, text: str) -> None:
    """One whole line per write: components may finish at the same time."""
    out.write(text + "\n")
    out.flush()


def _state(node_launcher, info) -> str:
    """COMPLETE or CACHED from MLMD; RESOLVED for resolver (system) nodes."""
    if node_launcher._system_node_handler or info is None or not info.execution_id:
        return "RESOLVED"
    with node_launcher._mlmd_connection as store:
        [execution] = store.store.get_executions_by_id([info.execution_id])
    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)
