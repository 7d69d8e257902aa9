"""ConcurrentLocalDagRunner on tiny real TFX pipelines (Python-function components)."""

import os
import threading
import time

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfx.dsl.component.experimental.annotations import OutputDict, Parameter  # noqa: E402
from tfx.dsl.component.experimental.decorators import component  # noqa: E402
from tfx.orchestration import metadata  # noqa: E402
from tfx.orchestration import pipeline as tfx_pipeline  # noqa: E402

from pipeline import concurrent_runner  # noqa: E402
from pipeline.concurrent_runner import ConcurrentLocalDagRunner, ready_nodes  # noqa: E402

SPANS: dict[str, tuple[float, float]] = {}  # node name -> (start, end), filled by the components
MEETING = {"barrier": threading.Barrier(2)}  # the nodes that must run at the same time


@component
def Sleep(name: Parameter[str], seconds: Parameter[float]) -> OutputDict(done=int):  # noqa: N802
    start = time.monotonic()
    time.sleep(seconds)
    SPANS[name] = (start, time.monotonic())
    return {"done": 1}


@component
def Meet(name: Parameter[str]) -> OutputDict(done=int):  # noqa: N802
    """Waits (up to 120 s) until the other Meet node is running too: proves overlap."""
    start = time.monotonic()
    MEETING["barrier"].wait(timeout=120)  # BrokenBarrierError if they ran one by one
    SPANS[name] = (start, time.monotonic())
    return {"done": 1}


@component
def After(name: Parameter[str], a: int, b: int) -> OutputDict(done=int):  # noqa: N802
    SPANS[name] = (time.monotonic(), time.monotonic())
    return {"done": a + b}


@component
def Fail(name: Parameter[str]) -> OutputDict(done=int):  # noqa: N802
    raise RuntimeError(f"{name} broke")


def _diamond(tmp_path, middle_b, middle_a=None):
    root = Sleep(name="root", seconds=0.0).with_id("root")
    a = (middle_a or Sleep(name="a", seconds=1.5)).with_id("a")
    a.add_upstream_node(root)
    b = middle_b.with_id("b")
    b.add_upstream_node(root)
    last = After(name="last", a=a.outputs["done"], b=b.outputs["done"]).with_id("last")
    return tfx_pipeline.Pipeline(
        pipeline_name="diamond",
        pipeline_root=str(tmp_path / "root"),
        components=[root, a, b, last],
        enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(tmp_path / "m.sqlite")
        ),
    )


def test_ready_nodes_respects_dependencies_and_order():
    upstream = {"r": set(), "a": {"r"}, "b": {"r"}, "c": {"a", "b"}}
    assert ready_nodes(upstream, done=set(), started=set()) == ["r"]
    assert ready_nodes(upstream, done={"r"}, started={"r"}) == ["a", "b"]
    assert ready_nodes(upstream, done={"r", "a"}, started={"r", "a", "b"}) == []
    assert ready_nodes(upstream, done={"r", "a", "b"}, started={"r", "a", "b"}) == ["c"]


@pytest.mark.slow
def test_independent_nodes_overlap_and_the_join_waits_for_both(tmp_path):
    SPANS.clear()
    MEETING["barrier"] = threading.Barrier(2)
    p = _diamond(tmp_path, Meet(name="b"), Meet(name="a"))
    ConcurrentLocalDagRunner(max_workers=2).run(p)  # a and b each wait for the other
    (a0, a1), (b0, b1), (last0, _) = SPANS["a"], SPANS["b"], SPANS["last"]
    assert last0 >= max(a1, b1)
    assert SPANS["root"][1] <= min(a0, b0)
    with metadata.Metadata(p.metadata_connection_config) as m:
        states = {e.last_known_state for e in m.store.get_executions()}
    assert states == {3}  # every execution COMPLETE


@pytest.mark.slow
def test_one_worker_runs_one_node_at_a_time(tmp_path):
    SPANS.clear()
    ConcurrentLocalDagRunner(max_workers=1).run(_diamond(tmp_path, Sleep(name="b", seconds=0.2)))
    (a0, a1), (b0, b1) = SPANS["a"], SPANS["b"]
    assert a1 <= b0 or b1 <= a0


@pytest.mark.slow
def test_a_failure_is_raised_as_is_and_stops_downstream(tmp_path):
    SPANS.clear()
    with pytest.raises(RuntimeError, match="b broke"):
        ConcurrentLocalDagRunner(max_workers=2).run(_diamond(tmp_path, Fail(name="b")))
    assert "a" in SPANS  # the running sibling finished
    assert "last" not in SPANS


@pytest.mark.slow
def test_mlmd_sessions_never_overlap(tmp_path, monkeypatch):
    active, most = [0], [0]
    guard = threading.Lock()
    enter, exit_ = metadata.Metadata.__enter__, metadata.Metadata.__exit__

    def counting_enter(self):
        result = enter(self)
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        return result

    def counting_exit(self, *exc):
        with guard:
            active[0] -= 1
        return exit_(self, *exc)

    monkeypatch.setattr(metadata.Metadata, "__enter__", counting_enter)
    monkeypatch.setattr(metadata.Metadata, "__exit__", counting_exit)
    ConcurrentLocalDagRunner(max_workers=3).run(_diamond(tmp_path, Sleep(name="b", seconds=0.5)))
    assert most[0] == 1
    assert concurrent_runner._MLMD_LOCK.acquire(blocking=False)  # released at the end
    concurrent_runner._MLMD_LOCK.release()


def _chain(tmp_path, enable_cache: bool, middle=None):
    """root -> resolver of root's output -> b: one executor node, one system node, one more."""
    from tfx.dsl.components.common import resolver
    from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import (
        LatestArtifactStrategy,
    )

    root = Sleep(name="root", seconds=0.0).with_id("root")
    latest = resolver.Resolver(
        strategy_class=LatestArtifactStrategy, done=root.outputs["done"]
    ).with_id("latest")
    b = (middle or Sleep(name="b", seconds=0.0)).with_id("b")
    b.add_upstream_node(latest)
    return tfx_pipeline.Pipeline(
        pipeline_name="chain",
        pipeline_root=str(tmp_path / "root"),
        components=[root, latest, b],
        enable_cache=enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(tmp_path / "m.sqlite")
        ),
    )


@pytest.mark.slow
def test_the_listener_hears_each_node_start_and_how_it_ended(tmp_path):
    import io

    from pipeline.progress import Progress

    out = io.StringIO()
    first = Progress(out)
    ConcurrentLocalDagRunner(max_workers=2, listener=first).run(_chain(tmp_path, True))
    assert [(r.node_id, r.state) for r in first.runs] == [
        ("root", "COMPLETE"),
        ("latest", "RESOLVED"),
        ("b", "COMPLETE"),
    ]
    assert all(r.seconds >= 0 for r in first.runs)
    again = Progress(out)
    ConcurrentLocalDagRunner(max_workers=2, listener=again).run(_chain(tmp_path, True))
    assert [r.state for r in again.runs] == ["CACHED", "RESOLVED", "CACHED"]
    lines = out.getvalue().splitlines()
    assert len(lines) == 12  # a start and an end line per node and run
    assert lines[0].endswith("start root") and lines[-1].endswith("cached")


@pytest.mark.slow
def test_the_listener_hears_a_failure_before_it_is_raised(tmp_path):
    import io

    from pipeline.progress import Progress

    progress = Progress(io.StringIO())
    runner = ConcurrentLocalDagRunner(max_workers=2, listener=progress)
    with pytest.raises(RuntimeError, match="b broke"):
        runner.run(_chain(tmp_path, False, Fail(name="b")))
    assert [(r.node_id, r.state) for r in progress.runs][-1] == ("b", "FAILED")
